"""Links built from the request the caller made: forwarded headers, public URL, Host."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from mep_kubeedge_adapter.api.links import base_url, parse_forwarded, websocket_url
from tests.api.conftest import ApiHarness, HarnessFactory

THERMO = "/kubeedge_devices/v1/devices/default/thermo-1"
GW_NAME = "kubeedge-devices-edge-18d025f7b745b211eba564"


def _base(headers: dict[str, str], public_url: str | None = None) -> str:
    request = make_mocked_request(
        "GET", THERMO, headers=CIMultiDict({"Host": "10.0.0.5:8080", **headers})
    )
    return base_url(request, public_url)


@pytest.mark.parametrize(
    ("headers", "public_url", "expected"),
    [
        ({}, None, "http://10.0.0.5:8080"),
        ({}, "https://adapter.example:9443", "https://adapter.example:9443"),
        ({}, "http://adapter.example/edge/", "http://adapter.example/edge"),
        (
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "mep-api-gw.mep",
                "X-Forwarded-Port": "8443",
                "X-Forwarded-Prefix": f"/{GW_NAME}",
            },
            "http://ignored.example",
            f"https://mep-api-gw.mep:8443/{GW_NAME}",
        ),
        (
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw", "X-Forwarded-Port": "443"},
            None,
            "https://gw",
        ),
        (
            {"X-Forwarded-Host": "gw:8000, inner:1", "X-Forwarded-Proto": "http, https"},
            None,
            "http://gw:8000",
        ),
        ({"X-Forwarded-Prefix": GW_NAME}, None, f"http://10.0.0.5:8080/{GW_NAME}"),
        (
            {"Forwarded": 'for=192.0.2.60;proto=https;host="mep-api-gw.mep:8443", for=10.0.0.1'},
            None,
            "https://mep-api-gw.mep:8443",
        ),
        (
            {
                "Forwarded": "proto=https;host=gw.example",
                "X-Forwarded-Proto": "http",
                "X-Forwarded-Prefix": f"/{GW_NAME}/",
            },
            None,
            f"https://gw.example/{GW_NAME}",
        ),
        ({"Forwarded": "host=[2001:db8::1]:8443;proto=https"}, None, "https://[2001:db8::1]:8443"),
        ({"X-Forwarded-Host": "evil.example/path?x"}, None, "http://10.0.0.5:8080"),
        ({"X-Forwarded-Proto": "javascript"}, None, "http://10.0.0.5:8080"),
        ({"X-Forwarded-Prefix": "/a b"}, None, "http://10.0.0.5:8080"),
        ({"X-Forwarded-Prefix": "//evil.example"}, None, "http://10.0.0.5:8080"),
        ({"X-Forwarded-Host": "gw", "X-Forwarded-Port": "x"}, None, "http://gw"),
    ],
)
def test_base_url(headers: dict[str, str], public_url: str | None, expected: str) -> None:
    assert _base(headers, public_url) == expected


def test_parse_forwarded_first_element_with_quotes() -> None:
    assert parse_forwarded('For="[2001:db8::1]:4711";Proto=HTTPS;host="a,b", for=x') == {
        "for": "[2001:db8::1]:4711",
        "proto": "HTTPS",
        "host": "a,b",
    }
    assert parse_forwarded("") == {}
    assert parse_forwarded("garbage") == {}


def test_websocket_url() -> None:
    assert websocket_url("https://gw/x") == "wss://gw/x"
    assert websocket_url("http://gw/x") == "ws://gw/x"


async def test_device_links_follow_x_forwarded_headers(harness: ApiHarness) -> None:
    reply = await harness.call(
        "GET",
        "/kubeedge_devices/v1/devices",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "mep-api-gw.mep",
            "X-Forwarded-Port": "8443",
            "X-Forwarded-Prefix": f"/{GW_NAME}",
        },
    )
    thermo = next(d for d in reply.json() if d["name"] == "thermo-1")
    # Kong forwards /<gwName>/x to <registered URI>/x: the gateway name stands for the
    # registered /kubeedge_devices/v1, so links drop it after the prefix.
    gateway = f"https://mep-api-gw.mep:8443/{GW_NAME}"
    assert thermo["_links"]["self"]["href"] == f"{gateway}/devices/default/thermo-1"
    assert thermo["_links"]["twin"]["href"] == f"{gateway}/devices/default/thermo-1/twin"


async def test_a_plain_proxy_prefix_is_kept_in_front_of_the_whole_path(harness: ApiHarness) -> None:
    reply = await harness.call(
        "GET",
        "/kubeedge_devices/v1/devices",
        headers={"X-Forwarded-Host": "proxy.example", "X-Forwarded-Prefix": "/adapter"},
    )
    thermo = next(d for d in reply.json() if d["name"] == "thermo-1")
    assert thermo["_links"]["self"]["href"] == f"http://proxy.example/adapter{THERMO}"


def test_links_through_a_per_device_gateway_route() -> None:
    from mep_kubeedge_adapter.api.links import Links

    route = Links(
        "https://gw/kubeedge-device-edge-1-default-thermo-1" + "0" * 20,
        "/kubeedge_devices/v1/devices/default/thermo-1",
        "http://10.0.0.5:8080",
    )
    assert route.url("/kubeedge_devices/v1/devices/default/thermo-1/twin") == (
        "https://gw/kubeedge-device-edge-1-default-thermo-1" + "0" * 20 + "/twin"
    )
    # A subscription is not under that route: its link points at the adapter directly.
    assert route.url("/kubeedge_devices/v1/subscriptions/s1") == (
        "http://10.0.0.5:8080/kubeedge_devices/v1/subscriptions/s1"
    )


async def test_device_links_follow_forwarded(harness: ApiHarness) -> None:
    reply = await harness.call(
        "GET", THERMO, headers={"Forwarded": "for=192.0.2.43;proto=https;host=gw.example"}
    )
    assert reply.json()["_links"]["self"]["href"] == f"https://gw.example{THERMO}"


async def test_links_fall_back_to_the_public_url(make_harness: HarnessFactory) -> None:
    harness = await make_harness(api={"public_url": "http://192.0.2.7:8080"})
    reply = await harness.call("GET", THERMO)
    assert reply.json()["_links"]["self"]["href"] == f"http://192.0.2.7:8080{THERMO}"
    models = await harness.call("GET", "/kubeedge_devices/v1/device_models")
    assert models.json()[0]["_links"]["self"]["href"].startswith("http://192.0.2.7:8080/")


async def test_the_document_points_callers_at_the_gateway(harness: ApiHarness) -> None:
    reply = await harness.call(
        "GET",
        "/openapi.json",
        headers={
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "gw",
            "X-Forwarded-Prefix": "/p",
        },
    )
    assert reply.json()["servers"] == [{"url": "https://gw/p"}]
