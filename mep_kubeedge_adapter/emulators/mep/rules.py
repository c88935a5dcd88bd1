"""mepserver's own input rules (go-playground/validator tags plus its regexes), first failure
first, and its merge-on-PUT. The ETSI schema check is separate (``spec``)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

__all__ = ["check_service", "check_subscription", "merge"]

_NAME_RE = re.compile(r"^[A-Za-z0-9]*$|^[A-Za-z0-9][A-Za-z0-9_-]*[A-Za-z0-9]$")
_ID_RE = re.compile(r"^[A-Za-z0-9]*$|^[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]$")
_PROTO_RE = re.compile(r"^[A-Za-z0-9.]*$|^[A-Za-z0-9.][A-Za-z0-9_.-]*[A-Za-z0-9.]$")
_TRANSPORT_TYPES = {
    "REST_HTTP",
    "MB_TOPIC_BASED",
    "MB_ROUTING",
    "MB_PUBSUB",
    "RPC",
    "RPC_STREAMING",
    "WEBSOCKET",
}
_GRANT_TYPES = {
    "OAUTH2_AUTHORIZATION_CODE",
    "OAUTH2_IMPLICIT_GRANT",
    "OAUTH2_RESOURCE_OWNER",
    "OAUTH2_CLIENT_CREDENTIALS",
}
_SERIALIZERS = {"JSON", "XML", "PROTOBUF3"}
_LOCALITIES = {"MEC_SYSTEM", "MEC_HOST", "NFVI_POP", "ZONE", "ZONE_GROUP", "NFVI_NODE"}
_STATES = {"ACTIVE", "INACTIVE", "SUSPENDED"}
_SUB_TYPES = {"SerAvailabilityNotificationSubscription", "AppTerminationNotificationSubscription"}


def _is_uri(value: object) -> bool:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path)) or value.startswith("/")


def _is_abs_uri(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def _check_len(
    value: object,
    limit: int,
    what: str,
    regex: re.Pattern[str] | None = None,
    required: bool = False,
) -> str | None:
    if value is None or value == "":
        return f"{what} is required" if required else None
    if not isinstance(value, str):
        return f"{what} must be a string"
    if len(value) > limit:
        return f"{what} longer than {limit}"
    if regex is not None and not regex.match(value):
        return f"{what} {value!r} has invalid characters"
    return None


def check_service(body: dict[str, Any]) -> str | None:
    """mepserver's own rules (go-playground/validator plus its regexes), first failure."""
    checks: list[str | None] = [
        _check_len(body.get("serName"), 128, "serName", _NAME_RE, required=True),
        _check_len(body.get("version"), 32, "version", required=True),
        _check_len(body.get("transportId"), 64, "transportId", _ID_RE),
    ]
    cat = body.get("serCategory")
    if isinstance(cat, dict):
        href = cat.get("href")
        checks += [
            None if not href or _is_uri(href) else "serCategory.href must be a URI",
            _check_len(cat.get("id"), 64, "serCategory.id", _ID_RE),
            _check_len(cat.get("name"), 128, "serCategory.name", _NAME_RE),
            _check_len(cat.get("version"), 32, "serCategory.version"),
        ]
    if body.get("state") not in ("ACTIVE", "INACTIVE"):
        checks.append("state must be ACTIVE or INACTIVE")
    if body.get("serializer") not in _SERIALIZERS:
        checks.append("serializer must be JSON, XML or PROTOBUF3")
    scope = body.get("scopeOfLocality")
    if scope not in (None, "") and scope not in _LOCALITIES:
        checks.append("scopeOfLocality is invalid")
    interval = body.get("livenessInterval", 0)
    if interval is not None and (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not 0 <= interval <= 2147483646
    ):
        checks.append("livenessInterval must be an integer 0..2147483646")
    ti = body.get("transportInfo")
    if isinstance(ti, dict):
        checks += [
            _check_len(ti.get("id"), 64, "transportInfo.id", _ID_RE),
            _check_len(ti.get("name"), 128, "transportInfo.name", _NAME_RE),
            _check_len(ti.get("description"), 128, "transportInfo.description"),
            _check_len(ti.get("protocol"), 32, "transportInfo.protocol", _PROTO_RE),
            _check_len(ti.get("version"), 32, "transportInfo.version"),
            None if ti.get("type") in _TRANSPORT_TYPES else "transportInfo.type is invalid",
        ]
        ep = ti.get("endpoint") or {}
        for uri in ep.get("uris") or []:
            if not _is_uri(uri):
                checks.append(f"endpoint uri {uri!r} is invalid")
        for addr in ep.get("addresses") or []:
            port = addr.get("port") if isinstance(addr, dict) else None
            if (
                not isinstance(addr, dict)
                or not addr.get("host")
                or not (isinstance(port, int) and 1 <= port <= 65535)
            ):
                checks.append("endpoint address needs host and port 1..65535")
        oauth = (ti.get("security") or {}).get("oAuth2Info")
        if isinstance(oauth, dict) and oauth:
            grants = oauth.get("grantTypes") or []
            if not 1 <= len(grants) <= 4 or any(g not in _GRANT_TYPES for g in grants):
                checks.append("oAuth2Info.grantTypes must hold 1..4 known grant types")
            te = oauth.get("tokenEndpoint")
            if te and not _is_uri(te):
                checks.append("oAuth2Info.tokenEndpoint must be a URI")
    return next((c for c in checks if c), None)


def check_subscription(body: dict[str, Any]) -> str | None:
    """mepserver's rules for a subscription request, first failure."""
    if body.get("subscriptionType") not in _SUB_TYPES:
        return "subscriptionType is invalid"
    if not _is_abs_uri(body.get("callbackReference")):
        return "callbackReference must be a URI"
    crit = body.get("filteringCriteria") or {}
    problems = [
        *(_check_len(i, 32, "serInstanceIds", _ID_RE) for i in crit.get("serInstanceIds") or []),
        *(_check_len(n, 128, "serNames", _NAME_RE) for n in crit.get("serNames") or []),
        *(
            None if s in _STATES else "states has an invalid value"
            for s in crit.get("states") or []
        ),
    ]
    return next((p for p in problems if p), None)


def merge(stored: Any, update: Any) -> Any:
    """EdgeGallery's PUT: values that are missing, empty or null do not clear stored ones."""
    if isinstance(stored, dict) and isinstance(update, dict):
        out = dict(stored)
        for key, value in update.items():
            if value in (None, "", [], {}):
                continue
            out[key] = merge(stored.get(key), value)
        return out
    return update
