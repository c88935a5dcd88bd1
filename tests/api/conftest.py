"""The API over real HTTP on loopback, with every response checked against ``/openapi.json``.

``ApiHarness`` serves ``create_app`` on 127.0.0.1 (aiohttp's ``TestServer``) with a real
``DeviceRegistry``; ``harness.call`` sends a request and validates the response against
the OpenAPI document the same server serves (openapi-core), or, for routes the document
cannot know (an unknown path), against its ``Problem`` schema. A test that receives a
response the document does not describe fails, whatever it asserts itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS31Validator

from mep_kubeedge_adapter.api.app import ApiDeps, create_app
from mep_kubeedge_adapter.api.deps import SubscriptionApi
from mep_kubeedge_adapter.domain import (
    AdapterError,
    DeviceId,
    DeviceModel,
    ErrorKind,
    ModelId,
    PropertySpec,
    TwinState,
    TwinValue,
)
from mep_kubeedge_adapter.notify.callbacks import DeliverySettings
from mep_kubeedge_adapter.notify.models import Caller, Subscription, SubscriptionRequest
from mep_kubeedge_adapter.notify.subscriptions import SubscriptionLimits, SubscriptionService
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry, DeviceSpec
from mep_kubeedge_adapter.settings import ApiSettings, Settings
from mep_kubeedge_adapter.store import SubscriptionStore
from mep_kubeedge_adapter.usecases import DesiredWriter

ISSUER = "mepauth"
NOW_MS = 1_795_641_101_256

# --------------------------------------------------------------- device data

THERMO = DeviceId("default", "thermo-1")
SWITCH = DeviceId("plant", "switch-1")
LEGACY = DeviceId("default", "legacy-2")


def fill_registry(registry: DeviceRegistry) -> None:
    """Three devices and two models, through the registry's own event methods."""
    registry.upsert_model(
        DeviceModel(
            id=ModelId("default", "thermometer"),
            protocol="modbus",
            properties={
                "temperature": PropertySpec(
                    "temperature", "INT", "ReadOnly", "current temperature", "Celsius"
                ),
                "setpoint": PropertySpec(
                    "setpoint", "INT", "ReadWrite", "target", "Celsius", "5", "30"
                ),
            },
        )
    )
    registry.upsert_model(
        DeviceModel(
            id=ModelId("plant", "switch"),
            properties={"power": PropertySpec("power", "BOOLEAN", "ReadWrite")},
        )
    )
    registry.upsert_spec(
        DeviceSpec(
            id=THERMO,
            model="thermometer",
            node="edge-1",
            labels={"room": "lab", "floor": "1"},
            declared_properties=("temperature", "setpoint"),
        )
    )
    registry.add_member(THERMO)
    registry.sync_twin(
        THERMO,
        {
            "temperature": TwinState(actual=TwinValue("23", NOW_MS - 1000), twin_type="string"),
            "setpoint": TwinState(
                expected=TwinValue("21", NOW_MS - 5000),
                actual=TwinValue("21", NOW_MS - 4000),
                twin_type="string",
            ),
        },
    )
    registry.apply_state(THERMO, "online", "2026-11-24T10:11:41Z")
    registry.upsert_spec(
        DeviceSpec(
            id=SWITCH,
            model="switch",
            node="edge-1",
            labels={"room": "hall"},
            declared_properties=("power",),
        )
    )
    registry.add_member(SWITCH)
    registry.sync_twin(SWITCH, {"power": TwinState(expected=TwinValue("false", NOW_MS))})
    registry.apply_state(SWITCH, "offline", None)
    registry.add_member(LEGACY)
    registry.sync_twin(LEGACY, {"level": TwinState(actual=TwinValue("7"), twin_type="int")})


class RecordingWriter:
    """Stands in for EdgeCore's EventBus: records writes and applies them as EdgeCore would
    (the desired values show up in the twin), or fails the way the EventBus client fails."""

    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry
        self.writes: list[tuple[DeviceId, dict[str, tuple[str, str]]]] = []
        self.failure: AdapterError | None = None

    async def write_desired(
        self, device_id: DeviceId, values: Mapping[str, tuple[str, str]]
    ) -> None:
        self.writes.append((device_id, dict(values)))
        if self.failure is not None:
            raise self.failure
        self.registry.apply_twin_states(
            device_id,
            {
                name: TwinState(expected=TwinValue(value, NOW_MS + 1), twin_type=twin_type)
                for name, (value, twin_type) in values.items()
            },
        )

    def fail_with(self, kind: ErrorKind, detail: str) -> None:
        self.failure = AdapterError(kind, detail)


class InMemorySubscriptions:
    """A subscription engine without a store, delivery or name resolution.

    For fuzzing: the real engine resolves callback host names, and generated names must
    not leave this machine as DNS queries.
    """

    def __init__(self) -> None:
        self._items: dict[str, Subscription] = {}

    async def create(
        self, request: SubscriptionRequest, *, base_url: str, caller: Caller
    ) -> Subscription:
        subscription = Subscription.from_request(
            uuid.uuid4().hex, request, created=NOW_MS, base_url=base_url, owner=caller.subject
        )
        self._items[subscription.id] = subscription
        return subscription

    async def get(self, subscription_id: str, *, caller: Caller) -> Subscription:
        subscription = self._items.get(subscription_id)
        if subscription is None or not caller.owns(subscription):
            raise AdapterError(ErrorKind.NOT_FOUND, f"no subscription {subscription_id!r}")
        return subscription

    async def list(self, *, caller: Caller) -> list[Subscription]:
        return [s for s in self._items.values() if caller.owns(s)]

    async def delete(self, subscription_id: str, *, caller: Caller) -> None:
        await self.get(subscription_id, caller=caller)
        del self._items[subscription_id]

    async def serve_websocket(
        self, subscription_id: str, ws: web.WebSocketResponse, *, caller: Caller
    ) -> None:
        await ws.close()


# --------------------------------------------------------------- keys, tokens


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes

    def token(self, **claims: Any) -> str:
        """A token shaped like mepauth's: RS512, fractional exp one hour ahead, iss mepauth."""
        body: dict[str, Any] = {
            "exp": time.time() + 3600.25,
            "iss": ISSUER,
            "sub": "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f",
            "clientip": "127.0.0.1",
        }
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, self.private_pem, algorithm="RS512")


def make_key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    return make_key_pair()


@pytest.fixture(scope="session")
def other_key_pair() -> KeyPair:
    return make_key_pair()


# --------------------------------------------------------------- the harness


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip()


@dataclass
class ApiHarness:
    client: TestClient[web.Request, web.Application]
    deps: ApiDeps
    token: str | None = None
    document: dict[str, Any] = field(default_factory=dict)
    validated: int = 0
    _spec: OpenAPI | None = None

    @property
    def base(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def load_document(self) -> None:
        reply = await self.call("GET", "/openapi.json", validate=False)
        assert reply.status == 200, reply.body
        self.document = reply.json()
        config = Config(
            spec_validator_cls=None,
            extra_media_type_deserializers={
                "application/problem+json": json_loads,
                "application/merge-patch+json": json_loads,
            },
        )
        self._spec = OpenAPI.from_dict(self.document, config=config)

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        params: Iterable[tuple[str, str]] | None = None,
        authorize: bool = True,
        validate: bool = True,
    ) -> Reply:
        """One request; the response is checked against the served OpenAPI document."""
        sent: dict[str, str] = {}
        if authorize and self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            content_type = content_type or "application/json"
        if content_type is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        query = list(params or [])
        response: ClientResponse = await self.client.request(
            method, path, headers=sent, data=data, params=query
        )
        async with response:
            body = await response.read()
            reply = Reply(response.status, CIMultiDict(response.headers), body)
        if validate:
            self.check(method, path, query, sent, data, reply)
        return reply

    def check(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
        data: bytes | None,
        reply: Reply,
    ) -> None:
        """Validate ``reply`` against the document; every error is a problem (but the
        ``/readyz`` 503, whose body is the readiness report)."""
        assert self._spec is not None, "load_document() first"
        assert "X-Request-Id" in reply.headers
        if reply.status >= 400 and path != "/readyz":
            assert reply.content_type == "application/problem+json", reply.body
            problem_schema = self.document["components"]["schemas"]["Problem"]
            OAS31Validator(problem_schema).validate(reply.json())
            assert reply.json()["status"] == reply.status
        request = MockRequest(
            self.document["servers"][0]["url"],
            method,
            path,
            args=dict(query),
            headers=dict(headers),
            data=data,
            content_type=headers.get("Content-Type", "application/json"),
        )
        response = MockResponse(
            reply.body,
            status_code=reply.status,
            headers=dict(reply.headers),
            content_type=reply.headers.get("Content-Type", ""),
        )
        try:
            self._spec.validate_response(request, response)
        except PathError:
            assert reply.status >= 400, f"{method} {path} is not documented"
        except OpenAPIError as exc:
            raise AssertionError(
                f"{method} {path} → {reply.status} does not match /openapi.json: {exc!r} "
                f"{getattr(exc, '__cause__', None)!r}\n{reply.body[:2000]!r}"
            ) from exc
        self.validated += 1


HarnessFactory = Callable[..., Awaitable[ApiHarness]]


@pytest.fixture
def registry() -> DeviceRegistry:
    registry = DeviceRegistry(clock=lambda: NOW_MS)
    fill_registry(registry)
    return registry


@pytest.fixture
def writer(registry: DeviceRegistry) -> RecordingWriter:
    return RecordingWriter(registry)


@pytest.fixture
async def make_harness(
    registry: DeviceRegistry,
    writer: RecordingWriter,
    tmp_path: Path,
    key_pair: KeyPair,
) -> AsyncIterator[HarnessFactory]:
    """Start a harness with settings overrides (``api={...}``) and optional parts."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(
        *,
        api: Mapping[str, Any] | None = None,
        desired_writer: DesiredWriter | None = None,
        subscriptions: SubscriptionApi | None = None,
        readiness: tuple[bool, dict[str, Any]] = (True, {"eventbus": {"mqtt": "connected"}}),
    ) -> ApiHarness:
        api_settings = dict(api or {})
        token = None
        if api_settings.get("auth") == "jwt":
            key_file = tmp_path / "mepauth-public.pem"
            key_file.write_bytes(key_pair.public_pem)
            api_settings.setdefault("jwt_public_key_file", key_file)
            token = key_pair.token()
        settings = Settings(node_name="edge-1", api=ApiSettings(**api_settings))
        deps = ApiDeps(
            settings=settings,
            registry=registry,
            metrics=Metrics(),
            readiness=lambda: readiness,
            writer=desired_writer or writer,
            subscriptions=subscriptions,
        )
        client: TestClient[web.Request, web.Application] = TestClient(
            TestServer(create_app(deps), host="127.0.0.1")
        )
        await client.start_server()
        clients.append(client)
        harness = ApiHarness(client=client, deps=deps, token=token)
        await harness.load_document()
        return harness

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> ApiHarness:
    return await make_harness()


EngineFactory = Callable[..., Awaitable[SubscriptionService]]


@pytest.fixture
async def make_engine(registry: DeviceRegistry, tmp_path: Path) -> AsyncIterator[EngineFactory]:
    """Started subscription engines on one store (``limits=`` to bound them)."""
    store = SubscriptionStore(tmp_path / "state.sqlite3")
    await store.open()
    started: list[SubscriptionService] = []

    async def make(limits: SubscriptionLimits | None = None) -> SubscriptionService:
        service = SubscriptionService(
            store,
            registry,
            Metrics(),
            ApiSettings(),
            delivery=DeliverySettings(heartbeat=5.0, shutdown_grace=0.1),
            local_addresses=lambda: ["127.0.0.1"],
            limits=limits,
        )
        await service.start()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()
    await store.close()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> SubscriptionService:
    return await make_engine()
