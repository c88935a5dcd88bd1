"""Request bodies as JSON: one decoder for every route that takes one.

``json.loads`` raises ``RecursionError`` on deeply nested input, which a body well under
``MKA_API__MAX_BODY`` can reach (``[`` ten thousand times); that is the caller's mistake,
so it is an INVALID error (400) like any other body that is not usable JSON.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["decode_json", "read_json"]


def decode_json(raw: bytes | str) -> Any:
    """The JSON value in ``raw``; ``AdapterError(INVALID)`` if it is not JSON or nests too deeply."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise AdapterError(ErrorKind.INVALID, "the body nests too deeply to be decoded") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdapterError(ErrorKind.INVALID, f"the body is not JSON: {exc}") from exc


async def read_json(request: web.Request) -> Any:
    """The request's body decoded by ``decode_json`` (the size limit already applies)."""
    return decode_json(await request.read())
