"""The ETSI MEC 011 v2.1.1 OpenAPI (3.0 file) as a validator of MP1 requests and replies.

Request bodies (and the emulator's own replies) are validated with openapi-core; a request
that fails gets 400 with the schema error. This is stricter than EdgeGallery, which for example
accepts a ``transportInfo`` without ``security``: an app that passes here is ETSI-conformant
*and* EdgeGallery-proof. Relaxed in the loaded copy (the file itself is unchanged):
``serInstanceId`` and ``_links`` are not read-only (MEC 011 wants ``serInstanceId`` in PUT);
a subscription request need not carry ``_links`` (it is response-only in the spec text);
``state`` may be ``SUSPENDED`` (liveness, MEC 011 v2.2.1+); in replies ``grantTypes`` items
are free strings and ``endpoint`` is ``anyOf`` with a nullable ``alternative`` (EdgeGallery's
``null`` members and its lost ``alternative``). Liveness and token bodies are not in v2.1.1
and are checked by hand.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["SpecValidator", "spec_validator"]

SPEC_HOST = "http://127.0.0.1:8081"


def _load_spec() -> dict[str, Any]:
    path = Path(__file__).with_name("mep_openapi") / "MecServiceMgmtApi.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _relax_common(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    schemas["ServiceInfo.SerInstanceId"].pop("readOnly", None)
    schemas["Self"].pop("readOnly", None)
    sub = schemas["SerAvailabilityNotificationSubscription"]
    sub["required"] = [r for r in sub["required"] if r != "_links"]
    schemas["ServiceState"]["enum"] = ["ACTIVE", "INACTIVE", "SUSPENDED"]
    return spec


def _relax_responses(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    schemas["SecurityInfo.OAuth2Info.GrantType"].pop("enum", None)
    endpoint = schemas["TransportInfo"]["properties"]["endpoint"]
    endpoint["anyOf"] = endpoint.pop("oneOf")
    schemas["EndPointInfo.Alternative"]["properties"]["alternative"]["nullable"] = True
    return spec


class SpecValidator:
    """Validates MP1 requests and replies against the relaxed ETSI MEC 011 v2.1.1 document."""

    def __init__(self) -> None:
        from openapi_core import OpenAPI

        base = _load_spec()
        self._requests = OpenAPI.from_dict(_relax_common(copy.deepcopy(base)))
        self._responses = OpenAPI.from_dict(_relax_responses(_relax_common(copy.deepcopy(base))))

    @staticmethod
    def _mock_request(request: web.Request, body: bytes | None) -> Any:
        from openapi_core.testing import MockRequest

        args: dict[str, Any] = {}
        for key in request.query:
            values = request.query.getall(key)
            args[key] = values if key in ("ser_name", "ser_instance_id") else values[0]
        return MockRequest(
            SPEC_HOST,
            request.method.lower(),
            request.path.removeprefix("/mep"),
            args=args,
            data=body or None,
            content_type=request.content_type if body else "application/json",
        )

    def check_request(self, request: web.Request, body: bytes | None) -> str | None:
        from openapi_core.exceptions import OpenAPIError

        try:
            self._requests.validate_request(self._mock_request(request, body))
        except OpenAPIError as exc:
            return _schema_message(exc)
        return None

    def check_response(
        self, request: web.Request, body: bytes | None, response: web.Response
    ) -> str | None:
        from openapi_core.exceptions import OpenAPIError
        from openapi_core.testing import MockResponse

        data = response.body if isinstance(response.body, bytes) else b""
        mock = MockResponse(
            data,
            status_code=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            content_type=response.content_type,
        )
        try:
            self._responses.validate_response(self._mock_request(request, body), mock)
        except OpenAPIError as exc:
            return _schema_message(exc)
        return None


def _schema_message(exc: Exception) -> str:
    cause = exc.__cause__
    errors = getattr(cause, "schema_errors", None)
    if errors:
        return "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(body)'}: {e.message}" for e in errors
        )
    return f"{type(exc).__name__}: {exc}"


@lru_cache(maxsize=1)
def spec_validator() -> SpecValidator:
    """The one validator (loading the document takes a while)."""
    return SpecValidator()
