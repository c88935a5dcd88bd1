"""Body builders and decoders: NAME rule, 4 KiB guard, EdgeGallery reply quirks."""

from __future__ import annotations

import json

import pytest

from mep_kubeedge_adapter.mep import models
from mep_kubeedge_adapter.mep.models import (
    BodyTooLarge,
    Mp1DecodeError,
    ServiceState,
    decode_error_body,
    decode_service_info,
    node_service_info,
    to_ser_name,
)


def test_ser_name_keeps_valid_names_and_maps_dots() -> None:
    assert to_ser_name("kubeedge-devices", "edge-1") == "kubeedge-devices-edge-1"
    dotted = to_ser_name("kubeedge-devices", "edge.a")
    assert dotted.startswith("kubeedge-devices-edge-a-")
    assert dotted != to_ser_name("kubeedge-devices", "edge-a")
    assert dotted == to_ser_name("kubeedge-devices", "edge.a")


@pytest.mark.parametrize(
    "node", ["a.b.c", "-x-", "_y_", "..", "ü", "n" * 200, "x y", "a/b", "UPPER.case"]
)
def test_ser_name_always_satisfies_name_rule(node: str) -> None:
    name = to_ser_name("kubeedge-devices", node)
    assert models.NAME_PATTERN.match(name)
    assert len(name) <= 128


def test_node_service_info_matches_contract() -> None:
    info = node_service_info("edge-1", "http://10.0.0.5:8080/")
    body = json.loads(models.encode_service_info(info))
    assert body["serName"] == "kubeedge-devices-edge-1"
    assert body["serCategory"] == {
        "href": "/kubeedge_devices/v1",
        "id": "kubeedge-device-management",
        "name": "KubeEdge-Device-Management",
        "version": "v1",
    }
    assert body["transportInfo"]["type"] == "REST_HTTP"
    assert body["transportInfo"]["protocol"] == "HTTP"
    assert body["transportInfo"]["version"] == "1.1"
    assert body["transportInfo"]["endpoint"] == {
        "uris": ["http://10.0.0.5:8080/kubeedge_devices/v1"]
    }
    assert body["livenessInterval"] == 60
    assert body["state"] == "ACTIVE"
    assert body["scopeOfLocality"] == "MEC_HOST"
    assert "serInstanceId" not in body
    assert "_links" not in body


def test_body_guard_refuses_4096_bytes() -> None:
    info = node_service_info("edge-1", "http://h:1/" + "p" * 4000)
    with pytest.raises(BodyTooLarge):
        models.encode_service_info(info)


def test_decode_edgegallery_reply_quirks() -> None:
    raw = {
        "serInstanceId": "0bc92b06cc213d2ad8beda71bd0e1460",
        "serName": "x",
        "version": "1",
        "state": "SUSPENDED",
        "serializer": "JSON",
        "scopeOfLocality": "MEC_HOST",
        "transportInfo": {
            "id": "r",
            "name": "REST",
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "version": "1.1",
            "endpoint": {"uris": ["https://gw/x123"], "addresses": None, "alternative": None},
            "security": {
                "oAuth2Info": {
                    "grantTypes": ["OAUTH2_CLIENT_CREDENTIALS\uff0cOAUTH2_RESOURCE_OWNER"],
                    "tokenEndpoint": "",
                }
            },
        },
        "livenessInterval": 60,
        "_links": {"self": {"liveness": "/mep/x/liveness"}, "appInstanceId": "a"},
    }
    info = decode_service_info(json.dumps(raw).encode())
    assert info.state is ServiceState.SUSPENDED
    assert info.consumedLocalOnly is False
    assert info.isLocal is False
    assert info.liveness_path == "/mep/x/liveness"
    assert info.endpoint_uris == ["https://gw/x123"]
    assert info.transportInfo is not None
    oauth = info.transportInfo.security.oAuth2Info
    assert oauth is not None
    assert oauth.grantTypes == ["OAUTH2_CLIENT_CREDENTIALS", "OAUTH2_RESOURCE_OWNER"]
    raw["transportInfo"]["security"]["oAuth2Info"]["grantTypes"] = [""]  # type: ignore[index]
    info = decode_service_info(raw)
    assert info.transportInfo is not None
    assert info.transportInfo.security.oAuth2Info is not None
    assert info.transportInfo.security.oAuth2Info.grantTypes == []


def test_decode_rejects_bad_replies() -> None:
    with pytest.raises(Mp1DecodeError, match="not JSON"):
        decode_service_info(b"<html>")
    with pytest.raises(Mp1DecodeError, match="ServiceInfo"):
        decode_service_info(b'{"serName": "x"}')
    with pytest.raises(Mp1DecodeError):
        models.decode_service_list(b'{"a": 1}')
    with pytest.raises(Mp1DecodeError):
        models.decode_token_response(
            b'{"access_token": "t", "token_type": "Basic", "expires_in": 1}'
        )


def test_decode_error_body_flavours() -> None:
    problem, msg = decode_error_body(b'{"title":"Bad Request","status":14,"detail":"too large"}')
    assert problem is not None
    assert problem.status == 14
    assert msg == "too large"
    assert decode_error_body(b'"Access is locked."') == (None, "Access is locked.")
    assert decode_error_body(b'{"message":"Unauthorized"}') == (None, "Unauthorized")
    assert decode_error_body(b"plain") == (None, "plain")
