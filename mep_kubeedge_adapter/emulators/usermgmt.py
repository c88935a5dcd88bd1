"""EdgeGallery's user-mgmt as an AppLCM plugin meets it: the accessTokens it signs.

user-mgmt signs an RS256 JWT for every MECM user; lcmcontroller passes it on as
``accessToken`` in each AppLCM call, and a plugin verifies it with user-mgmt's public key
(``JWT_PUBLIC_KEY``, the ``mecm-mepm-jwt-public-secret`` in EdgeGallery's charts). The claims
are the ones k8splugin reads (reference: mecm-applcm.md §1.3): ``authorities`` (roles such
as ``ROLE_MECM_TENANT``), ``userId``, ``user_name`` and ``exp``.
"""

from __future__ import annotations

import time
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["TENANT_ROLE", "UserMgmt"]

TENANT_ROLE: Final = "ROLE_MECM_TENANT"


class UserMgmt:
    """A user-mgmt with its own fresh RSA signing key."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> bytes:
        """The public key a plugin verifies tokens with (PEM, SubjectPublicKeyInfo)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(
        self,
        *roles: str,
        user_id: str = "tenant-1",
        user_name: str = "tester",
        expires_in: float = 3600,
        key: Any = None,
    ) -> str:
        """An accessToken for ``user_id`` with ``roles`` (default: a tenant's), signed with
        this user-mgmt's key unless another ``key`` is given (to forge one)."""
        claims = {
            "authorities": list(roles or (TENANT_ROLE,)),
            "userId": user_id,
            "user_name": user_name,
            "exp": int(time.time() + expires_in),
        }
        return jwt.encode(claims, key or self._key, algorithm="RS256")

    @staticmethod
    def stranger_key() -> Any:
        """A key user-mgmt does not have: tokens signed with it must be refused."""
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
