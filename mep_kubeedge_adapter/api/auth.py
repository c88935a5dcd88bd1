"""Bearer-token checks for ``MKA_API__AUTH=jwt``: the tokens EdgeGallery's mepauth issues.

mepauth signs RS512 JWTs with ``iss`` = ``mepauth`` (configurable as ``jwt_issuer``), ``sub``
= the calling app's instance id and a *fractional* ``exp`` one hour ahead. Kong's jwt plugin
already checks them on the gateway route; the adapter checks again so that a caller on the
node network cannot bypass the gateway.

Where the token may come from:

* ``Authorization: Bearer <token>`` on every route;
* for the websocket route only, because browsers cannot set headers on a websocket:
  a ``Sec-WebSocket-Protocol`` offer of ``bearer, <token>`` (the server then selects
  ``bearer``), or an ``access_token`` query parameter (RFC 6750 §2.3; it ends up in proxy
  logs, so prefer the subprotocol).

``/healthz``, ``/readyz`` and ``/metrics`` stay open for kubelet probes and Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mep_kubeedge_adapter.console import is_console_path
from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

ALGORITHMS = ("RS512",)
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
WEBSOCKET_BEARER_PROTOCOL = "bearer"
"""The subprotocol a websocket client offers, followed by its token, to authenticate."""

CLAIMS = web.RequestKey("claims", dict[str, Any])
"""The verified claims of the caller's token (``sub`` is the app instance id)."""


class BearerVerifier:
    """Checks mepauth tokens against one RSA public key and issuer."""

    def __init__(self, public_key_pem: bytes, issuer: str, *, leeway: float = 0.0) -> None:
        self._key = _load_public_key(public_key_pem)
        self._issuer = issuer
        self._leeway = leeway

    @classmethod
    def from_file(cls, path: Path, issuer: str) -> BearerVerifier:
        """Read the key now, so a missing or unreadable key stops the service at start."""
        return cls(path.read_bytes(), issuer)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; AdapterError UNAUTHORIZED if it is not a valid mepauth token."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=list(ALGORITHMS),
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AdapterError(ErrorKind.UNAUTHORIZED, "the bearer token has expired") from None
        except jwt.InvalidIssuerError:
            raise AdapterError(
                ErrorKind.UNAUTHORIZED, "the bearer token was not issued by mepauth"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AdapterError(
                ErrorKind.UNAUTHORIZED, f"the bearer token is not valid: {exc}"
            ) from None
        return claims


def _load_public_key(pem: bytes) -> Any:
    """An RSA public key from a PEM public key or certificate; ValueError if it is neither."""
    if b"BEGIN CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)


def bearer_token(
    headers: Mapping[str, str], query: Mapping[str, str], *, websocket: bool
) -> str | None:
    """The token the caller sent, from the places this caller is allowed to use."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    if not websocket:
        return None
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if WEBSOCKET_BEARER_PROTOCOL in offered:
        index = offered.index(WEBSOCKET_BEARER_PROTOCOL)
        if index + 1 < len(offered) and offered[index + 1]:
            return offered[index + 1]
    return query.get("access_token") or None


def auth_middleware(verifier: BearerVerifier, websocket_routes: frozenset[str]) -> Any:
    """Require a valid token on every path but the operations ones.

    ``websocket_routes`` are the route templates that may carry the token outside the
    ``Authorization`` header.
    """

    @web.middleware
    async def check_bearer(request: web.Request, handler: Any) -> web.StreamResponse:
        # The console's static files hold no data; the page's API calls carry the token.
        if request.path in EXEMPT_PATHS or is_console_path(request.path):
            response: web.StreamResponse = await handler(request)
            return response
        resource = request.match_info.route.resource
        websocket = resource is not None and resource.canonical in websocket_routes
        token = bearer_token(request.headers, request.query, websocket=websocket)
        if token is None:
            raise AdapterError(
                ErrorKind.UNAUTHORIZED, "this API needs 'Authorization: Bearer <mepauth token>'"
            )
        request[CLAIMS] = verifier.verify(token)
        response = await handler(request)
        return response

    return check_bearer
