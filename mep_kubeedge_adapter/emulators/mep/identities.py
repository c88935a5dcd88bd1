"""App identities as MECM provisions them: appInstanceId, AK/SK and ``requiredServices``."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["DEMO_AK", "DEMO_APP_INSTANCE_ID", "DEMO_SK", "UUID_RE", "AppIdentity"]

DEMO_APP_INSTANCE_ID = "5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f"
DEMO_AK = "QVUJMSUMgS0VZLS0tLS0"
DEMO_SK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_AK_RE = re.compile(r"^[\w+/=]{20}$")
_SK_RE = re.compile(r"^[\w+/=]{64}$")


@dataclass
class AppIdentity:
    """An app's mepauth credentials and APPD ``requiredServices`` (``*`` = discover all)."""

    app_instance_id: str
    ak: str
    sk: str
    required_services: list[str] = field(default_factory=list)
    app_name: str = ""

    def __post_init__(self) -> None:
        if not UUID_RE.match(self.app_instance_id):
            raise ValueError(f"appInstanceId must be a UUID: {self.app_instance_id!r}")
        if not _AK_RE.match(self.ak):
            raise ValueError("AK must be 20 characters of [A-Za-z0-9_+/=]")
        if not _SK_RE.match(self.sk):
            raise ValueError("SK must be 64 characters of [A-Za-z0-9_+/=]")

    @classmethod
    def generate(cls, required_services: Iterable[str] = ("*",), app_name: str = "") -> Self:
        """A fresh identity as MECM's lcmcontroller makes one (base64 of 14 and 48 bytes)."""
        return cls(
            app_instance_id=str(uuid.uuid4()),
            ak=base64.b64encode(secrets.token_bytes(14)).decode(),
            sk=base64.b64encode(secrets.token_bytes(48)).decode(),
            required_services=list(required_services),
            app_name=app_name,
        )

    @classmethod
    def demo(cls, required_services: Iterable[str] = ("*",)) -> Self:
        """EdgeGallery's public demo identity (its chart gives it no requiredServices)."""
        return cls(DEMO_APP_INSTANCE_ID, DEMO_AK, DEMO_SK, list(required_services), "demo")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            app_instance_id=str(data["appInstanceId"]),
            ak=str(data["ak"]),
            sk=str(data["sk"]),
            required_services=[str(s) for s in data.get("requiredServices", [])],
            app_name=str(data.get("appName", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "appInstanceId": self.app_instance_id,
            "ak": self.ak,
            "sk": self.sk,
            "requiredServices": list(self.required_services),
            "appName": self.app_name,
        }

    def may_discover(self, ser_name: str) -> bool:
        rs = self.required_services
        return "*" in rs or "service-discovery" in rs or ser_name in rs
