"""Who may call which RPC: the ``accessToken`` JWT of EdgeGallery's user-mgmt, verified for real.

lcmcontroller forwards the user's token in every request. user-mgmt signs it with RSA
(RS256); its claims that matter here are ``authorities`` (a list of role names), ``userId``,
``user_name`` and ``exp``. The roles follow lcmcontroller's table:

* ``ROLE_MECM_TENANT`` or ``ROLE_MECM_ADMIN``: every RPC;
* ``ROLE_MECM_GUEST``: the reads only (``query``, ``queryKPI``, ``workloadEvents``,
  ``queryPackageStatus``).

Unlike k8splugin, an empty token, a bad signature or an expired token is refused. As
lcmcontroller does, a tenant's token acts only for its own ``tenantId`` (the token's
``userId``); an admin may act for any tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = [
    "ADMIN",
    "GUEST",
    "TENANT",
    "AllowAnyone",
    "Caller",
    "CallerCheck",
    "TokenVerifier",
]

TENANT: Final = "ROLE_MECM_TENANT"
ADMIN: Final = "ROLE_MECM_ADMIN"
GUEST: Final = "ROLE_MECM_GUEST"
WRITE_ROLES: Final = frozenset({TENANT, ADMIN})
READ_ROLES: Final = frozenset({TENANT, ADMIN, GUEST})
ALGORITHMS: Final = ("RS256", "RS384", "RS512")


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified caller of one RPC."""

    user_id: str | None
    user_name: str | None
    roles: frozenset[str]

    @property
    def admin(self) -> bool:
        return ADMIN in self.roles


ANONYMOUS: Final = Caller(user_id=None, user_name=None, roles=frozenset({ADMIN}))


class CallerCheck:
    """The interface the servicer uses: who is calling, and may they do this?"""

    def check(self, token: str, *, write: bool, tenant_id: str) -> Caller:
        raise NotImplementedError


class AllowAnyone(CallerCheck):
    """``MKA_MECM__AUTH=none``: every caller is an admin (for labs and lcmcontroller without user-mgmt)."""

    def check(self, token: str, *, write: bool, tenant_id: str) -> Caller:
        return ANONYMOUS


class TokenVerifier(CallerCheck):
    """Verifies tokens against user-mgmt's RSA public key (PEM key or certificate)."""

    def __init__(self, public_key_pem: bytes) -> None:
        self._key = _load_public_key(public_key_pem)

    @classmethod
    def from_file(cls, path: Path) -> TokenVerifier:
        """Read the key now, so that a missing or bad key stops the plugin at start."""
        try:
            return cls(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load the JWT public key {path}: {exc}") from exc

    def check(self, token: str, *, write: bool, tenant_id: str) -> Caller:
        """The caller, or AdapterError UNAUTHORIZED (bad token) / FORBIDDEN (role, tenant)."""
        if not token:
            raise AdapterError(ErrorKind.UNAUTHORIZED, "accessToken is required")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=list(ALGORITHMS), options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise AdapterError(ErrorKind.UNAUTHORIZED, "accessToken has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AdapterError(ErrorKind.UNAUTHORIZED, f"accessToken is invalid: {exc}") from None
        caller = _caller(claims)
        allowed = WRITE_ROLES if write else READ_ROLES
        if not caller.roles & allowed:
            raise AdapterError(
                ErrorKind.FORBIDDEN,
                "accessToken lacks the role for this call (needs "
                + " or ".join(sorted(allowed))
                + ")",
            )
        if tenant_id and not caller.admin and caller.user_id not in (None, tenant_id):
            raise AdapterError(ErrorKind.FORBIDDEN, "illegal tenantId for this accessToken")
        return caller


def _caller(claims: dict[str, Any]) -> Caller:
    authorities = claims.get("authorities")
    if not isinstance(authorities, list):
        raise AdapterError(ErrorKind.UNAUTHORIZED, "accessToken has no authorities")
    user_id = claims.get("userId")
    user_name = claims.get("user_name")
    return Caller(
        user_id=user_id if isinstance(user_id, str) else None,
        user_name=user_name if isinstance(user_name, str) else None,
        roles=frozenset(a for a in authorities if isinstance(a, str)),
    )


def _load_public_key(pem: bytes) -> Any:
    if b"BEGIN CERTIFICATE" in pem:
        return x509.load_pem_x509_certificate(pem).public_key()
    return serialization.load_pem_public_key(pem)
