"""Every API error as ``application/problem+json`` (RFC 7807), decided in one place.

Three kinds of failure reach a caller, and all leave here in the same shape:

* ``AdapterError`` from the use cases and the EventBus: its ``ErrorKind`` picks the status
  from ``STATUS_BY_KIND``, the only table that maps kinds to HTTP statuses;
* aiohttp's own HTTP errors (unknown route 404, 405 with ``Allow``, 413 from the body size
  limit, 415 raised by a handler): their status is kept, the body becomes a problem;
* anything unexpected: 500 with a generic detail; the exception is logged with the request
  id (bound in the log context by the request-id middleware), never shown to the caller.

Problem ``type`` values are URNs, ``urn:mka:problem:<kind>``, so clients can branch on them
without parsing ``title``; ``instance`` is the request path and ``requestId`` the id echoed
in ``X-Request-Id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import structlog
from aiohttp import web
from pydantic import ValidationError

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:mka:problem:"

STATUS_BY_KIND: Mapping[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.QUOTA_EXCEEDED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PRECONDITION_FAILED: 412,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.NOT_IMPLEMENTED: 501,
    ErrorKind.UPSTREAM_REJECTED: 502,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.UPSTREAM_TIMEOUT: 504,
}
"""The one mapping from error kinds to HTTP statuses."""

_KIND_BY_STATUS: Mapping[int, str] = {
    **{status: kind.value for kind, status in list(STATUS_BY_KIND.items())[::-1]},
    405: "method-not-allowed",
    406: "not-acceptable",
    415: "unsupported-media-type",
    500: "internal",
}

INTERNAL_DETAIL = "the adapter failed unexpectedly; the log has the details under this request id"

_PATH_SAFE = "/:@!$&'()*+,;=-._~"

REQUEST_ID = web.RequestKey("request_id", str)
"""Set by the request-id middleware; problems carry it so callers can quote it."""

REQUEST_ID_HEADER = "X-Request-Id"


def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Put the request's id on ``response``; the front middleware does it for every response
    a handler returns, a handler that prepares its own (a websocket) calls it first."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


def problem_type(status: int, kind: ErrorKind | None = None) -> str:
    """The ``type`` URI: the error kind's value, else the first kind mapped to the status."""
    if kind is not None:
        return PROBLEM_TYPE_PREFIX + kind.value
    return PROBLEM_TYPE_PREFIX + _KIND_BY_STATUS.get(status, str(status))


def problem_response(
    request: web.Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    kind: ErrorKind | None = None,
) -> web.Response:
    """A problem+json response for ``request``."""
    body: dict[str, Any] = {
        "type": problem_type(status, kind),
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
        "instance": _instance(request),
    }
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        body["requestId"] = request_id
    response = web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )
    return response


def _instance(request: web.Request) -> str:
    """The request path as a URI reference: percent-encoded, whatever the caller sent."""
    return quote(request.path.encode("utf-8", "surrogatepass"), safe=_PATH_SAFE)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def validation_detail(error: ValidationError) -> str:
    """A pydantic error as one line a caller can act on: ``field.path: message; ...``."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Upgrade")


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure below this middleware into a problem+json response."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except AdapterError as exc:
        status = STATUS_BY_KIND.get(exc.kind, 500)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status >= 500:
            log.warning("request_failed_upstream", kind=exc.kind.value, detail=exc.detail)
        return problem_response(
            request, status, exc.detail, title=exc.title, headers=headers, kind=exc.kind
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        return problem_response(request, exc.status, _http_detail(exc), headers=kept)
    except ValidationError as exc:
        return problem_response(request, 400, validation_detail(exc))
    except Exception:
        log.exception("request_crashed", method=request.method, path=request.path)
        return problem_response(request, 500, INTERNAL_DETAIL)


def _http_detail(exc: web.HTTPException) -> str:
    """aiohttp's text for its own errors, or a sentence that says what to do."""
    if exc.status == 404:
        return "no such resource; GET /openapi.json lists the routes"
    if exc.status == 405:
        return f"method not allowed; allowed: {exc.headers.get('Allow', '')}"
    text = exc.text or ""
    if text.startswith(f"{exc.status}:"):
        text = text.split(":", 1)[1].strip()
    return text or exc.reason
