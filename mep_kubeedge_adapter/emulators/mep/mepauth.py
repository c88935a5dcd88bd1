"""mepauth: app identities, AK/SK-signed token requests with lock-out, and the token check.

``POST /mep/token`` takes an empty body and ``Authorization: SDK-HMAC-SHA256 Access=<AK>,
SignedHeaders=content-type;host;x-sdk-date, Signature=<hex>`` with ``x-sdk-date``
``YYYYMMDDTHHMMSSZ``. It answers 400 on a malformed header or date, 401 ``"Invalid access or
signature."`` for an unknown AK or bad signature, and 3 bad signatures in 300 s lock the AK for
900 s (403 ``"Access is locked."`` even for good ones). Errors are JSON strings. The 200 body
is ``{"access_token", "token_type": "Bearer", "expires_in": 3600}``; the token is an RS512 JWT
with ``exp`` (fractional), ``iss`` ``mepauth``, ``sub`` appInstanceId and ``clientip``.

EdgeGallery's own unauthenticated provisioning call ``PUT|GET|DELETE
/mep/appMng/v1/applications/{appInstanceId}/confs`` adds, shows and removes identities.
:meth:`Mepauth.bearer_claims` is the token check the gateway and mepserver share.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mep_kubeedge_adapter.emulators.mep.identities import AppIdentity
from mep_kubeedge_adapter.emulators.mep.replies import json_reply, mepauth_error

__all__ = ["Mepauth"]

_AUTH_RE = re.compile(
    r"^SDK-HMAC-SHA256 Access=([\w=+/]{20}), SignedHeaders=([^, ]{28}), Signature=([^, ]{64})$"
)
_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")


class Mepauth:
    """Identities, tokens and lock-outs (see the module docstring for the behaviour).

    ``identities`` maps appInstanceId to :class:`AppIdentity`; tests may change it directly.
    The lock-out is ``lockout_threshold`` bad signatures within ``lockout_window`` seconds
    locking the AK for ``lockout_seconds``.
    """

    def __init__(
        self,
        identities: Iterable[AppIdentity],
        *,
        token_ttl: int,
        lockout_threshold: int,
        lockout_window: float,
        lockout_seconds: float,
    ) -> None:
        self.identities: dict[str, AppIdentity] = {}
        for ident in identities:
            self.provision(ident)
        self.token_ttl = token_ttl
        self.lockout_threshold = lockout_threshold
        self.lockout_window = lockout_window
        self.lockout_seconds = lockout_seconds
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwt_public_key_pem: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/mep/token", self._token)
        confs = "/mep/appMng/v1/applications/{appInstanceId}/confs"
        router.add_put(confs, self._put_confs)
        router.add_get(confs, self._get_confs)
        router.add_delete(confs, self._delete_confs)

    def provision(self, identity: AppIdentity) -> AppIdentity:
        """Add or replace an app identity (what MECM's confs PUT does)."""
        for existing in list(self.identities.values()):
            if existing.ak == identity.ak and existing.app_instance_id != identity.app_instance_id:
                raise ValueError("AK already belongs to another app")
        self.identities[identity.app_instance_id] = identity
        return identity

    def remove_identity(self, app_instance_id: str) -> None:
        self.identities.pop(app_instance_id, None)

    def set_required_services(self, app_instance_id: str, names: Iterable[str]) -> None:
        self.identities[app_instance_id].required_services = list(names)

    def reset_lockouts(self) -> None:
        self._failures.clear()
        self._locked_until.clear()

    def issue_token(self, app_instance_id: str, client_ip: str = "127.0.0.1") -> str:
        """A mepauth JWT for ``app_instance_id`` without the signing dance."""
        claims = {
            "exp": time.time() + self.token_ttl,
            "iss": "mepauth",
            "sub": app_instance_id,
            "clientip": client_ip,
        }
        return jwt.encode(claims, self._key, algorithm="RS512")

    def bearer_claims(self, request: web.Request) -> dict[str, Any] | None:
        """The claims of a valid mepauth bearer token in ``Authorization``, else ``None``."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                header[7:].strip(),
                self._key.public_key(),
                algorithms=["RS512"],
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    async def _token(self, request: web.Request) -> web.Response:
        if not request.remote:
            return mepauth_error(400, "Bad X-Real-Ip")
        match = _AUTH_RE.match(request.headers.get("Authorization", ""))
        if match is None:
            return mepauth_error(400, "Bad auth header format")
        ak, signed_headers, sig = match.groups()
        date = request.headers.get("x-sdk-date", "")
        try:
            if not _DATE_RE.match(date):
                raise ValueError(date)
            datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return mepauth_error(400, "Bad x-sdk-time format")
        now = asyncio.get_running_loop().time()
        if self._locked_until.get(ak, 0.0) > now:
            return mepauth_error(403, "Access is locked.")
        ident = next((i for i in self.identities.values() if i.ak == ak), None)
        if ident is None:
            return mepauth_error(401, "Invalid access or signature.")
        expected = _expected_signature(request, signed_headers, ident.sk, date)
        if not hmac.compare_digest(expected, sig):
            recent = [t for t in self._failures.get(ak, []) if now - t < self.lockout_window]
            recent.append(now)
            self._failures[ak] = recent
            if len(recent) >= self.lockout_threshold:
                self._locked_until[ak] = now + self.lockout_seconds
                self._failures[ak] = []
            return mepauth_error(401, "Invalid access or signature.")
        token = self.issue_token(ident.app_instance_id, request.remote)
        return json_reply(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        )

    async def _put_confs(self, request: web.Request) -> web.Response:
        app_id = request.match_info["appInstanceId"]
        try:
            data = json.loads(await request.read())
            creds = data["authInfo"]["credentials"]
            info = data.get("appInfo") or {}
            ident = AppIdentity(
                app_id,
                creds["accessKeyId"],
                creds["secretKey"],
                list(info.get("requiredServices") or []),
                str(info.get("appName", "")),
            )
            self.provision(ident)
        except (ValueError, KeyError, TypeError) as exc:
            return mepauth_error(400, f"Bad request: {exc}")
        return json_reply(data)

    async def _get_confs(self, request: web.Request) -> web.Response:
        ident = self.identities.get(request.match_info["appInstanceId"])
        if ident is None:
            return mepauth_error(404, "not found")
        return json_reply(
            {
                "authInfo": {"credentials": {"accessKeyId": ident.ak}},
                "appInfo": {"appName": ident.app_name, "requiredServices": ident.required_services},
            }
        )

    async def _delete_confs(self, request: web.Request) -> web.Response:
        self.remove_identity(request.match_info["appInstanceId"])
        return web.Response(status=200)


def _go_query_escape(value: str) -> str:
    return quote_plus(value, safe="")


def _expected_signature(request: web.Request, signed_headers: str, sk: str, date: str) -> str:
    """mepauth's side of the signature: rebuilt from the request as received."""
    segments = [s for s in request.path.split("/") if s not in ("", ".", "..")]
    uri = "/" + "/".join(_go_query_escape(s) for s in segments) + ("/" if segments else "")
    query = "&".join(
        sorted(f"{_go_query_escape(k)}={_go_query_escape(v)}" for k, v in request.query.items())
    )
    lines = []
    names = sorted(signed_headers.lower().split(";"))
    for name in names:
        if name == "host":
            values = [request.host]
        else:
            values = [v.strip() for v in request.headers.getall(name, [])]
        lines.append(f"{name}:{','.join(sorted(values))}")
    header_block = "".join(f"{line}\n" for line in sorted(lines))
    body_hash = hashlib.sha256(b"").hexdigest()
    canonical = "\n".join(["POST", uri, query, header_block, ";".join(names), body_hash])
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["SDK-HMAC-SHA256", date, digest])
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
