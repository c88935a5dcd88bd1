"""How EdgeGallery's MEP components answer, errors included, so every part of the emulator
answers as the component it plays: mepserver's ProblemDetails sent as ``text/plain`` with an
internal code as ``status``, mepauth's JSON strings, Kong's ``{"message": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "C_APP_ID",
    "C_INACTIVE",
    "C_NOT_FOUND",
    "C_NO_LIVENESS",
    "C_PARAM",
    "C_PARSE",
    "C_REGISTER",
    "C_SUB",
    "C_SUB_NOT_FOUND",
    "json_reply",
    "kong_bad_gateway",
    "kong_unauthorized",
    "mepauth_error",
    "problem",
]

# mepserver internal error codes (the ProblemDetails ``status``)
C_PARSE, C_NOT_FOUND, C_SUB_NOT_FOUND, C_APP_ID = 4, 3, 5, 11
C_REGISTER, C_PARAM, C_SUB, C_NO_LIVENESS, C_INACTIVE = 12, 14, 15, 17, 18


def problem(http: int, code: int, detail: str, title: str | None = None) -> web.Response:
    """mepserver's error reply: a ProblemDetails sent as text/plain, internal code as status."""
    default = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
    }.get(http, "Error")
    body = {"title": title or default, "status": code, "detail": detail}
    return web.Response(status=http, text=json.dumps(body), content_type="text/plain")


def mepauth_error(http: int, message: str) -> web.Response:
    """mepauth's error reply: a JSON string."""
    return web.json_response(message, status=http)


def kong_unauthorized() -> web.Response:
    return web.json_response({"message": "Unauthorized"}, status=401)


def kong_bad_gateway(exc: BaseException) -> web.Response:
    return web.json_response(
        {"message": f"An invalid response was received from the upstream server: {exc}"},
        status=502,
    )


def json_reply(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False).encode(),
        content_type="application/json",
        headers={"X-Response-Status": str(status), **(headers or {})},
    )
