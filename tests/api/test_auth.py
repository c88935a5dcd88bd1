"""``MKA_API__AUTH=jwt``: mepauth bearer tokens, checked on every route but the operational ones."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.api.conftest import ApiHarness, HarnessFactory, KeyPair

DEVICES = "/kubeedge_devices/v1/devices"


@pytest.fixture
async def guarded(make_harness: HarnessFactory) -> ApiHarness:
    return await make_harness(api={"auth": "jwt"})


async def test_a_mepauth_token_is_accepted(guarded: ApiHarness, key_pair: KeyPair) -> None:
    token = key_pair.token(exp=time.time() + 3599.123456)
    reply = await guarded.call(
        "GET", DEVICES, headers={"Authorization": f"Bearer {token}"}, authorize=False
    )
    assert reply.status == 200
    lower = await guarded.call(
        "GET", DEVICES, headers={"Authorization": f"bearer {token}"}, authorize=False
    )
    assert lower.status == 200


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"exp": time.time() - 10.5}, "expired"),
        ({"iss": "someone-else"}, "not issued by mepauth"),
    ],
)
async def test_bad_claims_are_refused(
    guarded: ApiHarness, key_pair: KeyPair, claims: dict[str, object], detail: str
) -> None:
    token = key_pair.token(**claims)
    reply = await guarded.call(
        "GET", DEVICES, headers={"Authorization": f"Bearer {token}"}, authorize=False
    )
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert detail in reply.json()["detail"]
    assert reply.json()["type"] == "urn:mka:problem:unauthorized"


async def test_a_token_signed_by_another_key_is_refused(
    guarded: ApiHarness, other_key_pair: KeyPair
) -> None:
    reply = await guarded.call(
        "GET",
        DEVICES,
        headers={"Authorization": f"Bearer {other_key_pair.token()}"},
        authorize=False,
    )
    assert reply.status == 401
    assert "Signature verification failed" in reply.json()["detail"]


async def test_a_token_without_exp_is_refused(guarded: ApiHarness, key_pair: KeyPair) -> None:
    token = jwt.encode({"iss": "mepauth"}, key_pair.private_pem, algorithm="RS512")
    reply = await guarded.call(
        "GET", DEVICES, headers={"Authorization": f"Bearer {token}"}, authorize=False
    )
    assert reply.status == 401


async def test_an_hmac_token_is_refused(guarded: ApiHarness, key_pair: KeyPair) -> None:
    """The public key must never work as an HMAC secret (algorithm confusion)."""
    token = jwt.encode({"iss": "mepauth", "exp": time.time() + 60}, "h" * 64, "HS512")
    reply = await guarded.call(
        "GET", DEVICES, headers={"Authorization": f"Bearer {token}"}, authorize=False
    )
    assert reply.status == 401


@pytest.mark.parametrize(
    "authorization", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.token"]
)
async def test_missing_or_malformed_credentials_are_refused(
    guarded: ApiHarness, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = await guarded.call("GET", DEVICES, headers=headers, authorize=False)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operational_routes_need_no_token(guarded: ApiHarness, path: str) -> None:
    reply = await guarded.call("GET", path, authorize=False)
    assert reply.status == 200


async def test_every_api_route_is_guarded(guarded: ApiHarness) -> None:
    for path in [
        DEVICES,
        f"{DEVICES}/default/thermo-1",
        f"{DEVICES}/default/thermo-1/twin",
        "/kubeedge_devices/v1/device_models",
        "/kubeedge_devices/v1/subscriptions",
        "/openapi.json",
        "/no/such/route",
    ]:
        reply = await guarded.call("GET", path, authorize=False)
        assert reply.status == 401, path
    patch = await guarded.call(
        "PATCH",
        f"{DEVICES}/default/thermo-1/twin",
        json_body={"desired": {"setpoint": "22"}},
        authorize=False,
    )
    assert patch.status == 401


async def test_the_document_declares_the_bearer_scheme(guarded: ApiHarness) -> None:
    document = guarded.document
    scheme = document["components"]["securitySchemes"]["mepauth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert document["security"] == [{"mepauth": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
