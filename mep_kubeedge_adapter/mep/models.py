"""Typed MP1 wire models as EdgeGallery's MEP accepts and returns them, plus body builders.

Everything that crosses the MP1 boundary is decoded here by pure functions
(:func:`decode_service_info`, :func:`decode_service_list`, :func:`decode_token_response`,
:func:`decode_liveness`, :func:`decode_error_body`) that raise :class:`Mp1DecodeError` with a
message naming the reply, so the client never passes raw JSON on.

EdgeGallery quirks the models absorb (reference: EdgeGallery MEP notes §4):

* ``consumedLocalOnly`` / ``isLocal`` are **omitted when false** in replies, so a missing
  value decodes as ``False`` (not the ETSI default ``True``).
* ``transportInfo.endpoint`` always carries all three members, unused ones ``null``;
  ``alternative`` is always ``null`` on read.
* ``security.oAuth2Info.grantTypes`` is stored joined with a full-width comma but split on an
  ASCII one: two or more grant types come back as one string, none as ``[""]``.
  :class:`OAuth2Info` normalises both back to a clean list.
* ``_links`` is ``{"self": {"liveness": "<path>"}, "appInstanceId": "<id>"}`` (``liveness``
  only when liveness is on; ``appInstanceId`` is non-standard).
* ``state`` may read ``SUSPENDED`` (heartbeats missed), a value MEC 011 v2.1.1 lacks.
* Error bodies are ProblemDetails whose ``status`` is an *internal* code and whose
  Content-Type is ``text/plain``; mepauth errors are bare JSON strings; Kong's are
  ``{"message": ...}``.

Body builders produce what we register: ``serName`` mapped to EdgeGallery's NAME rule
(:func:`to_ser_name`), the serCategory of the product contract, a REST_HTTP/HTTP/1.1 transport
with ``endpoint.uris``, ``livenessInterval`` 60, and :func:`encode_service_info` refuses bodies
of 4096 bytes or more (EdgeGallery answers 400 "request body too large").
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "IOTS_CATEGORY",
    "KUBEEDGE_CATEGORY",
    "MAX_BODY_BYTES",
    "NAME_PATTERN",
    "BodyTooLarge",
    "CategoryRef",
    "EndPointAddress",
    "EndPointInfo",
    "LinkType",
    "LivenessInfo",
    "Mp1DecodeError",
    "OAuth2Info",
    "ProblemDetails",
    "SecurityInfo",
    "SelfLinks",
    "SerializerType",
    "ServiceInfo",
    "ServiceLinks",
    "ServiceState",
    "TimeStamp",
    "TokenResponse",
    "TransportInfo",
    "decode_error_body",
    "decode_liveness",
    "decode_service_info",
    "decode_service_list",
    "decode_token_response",
    "encode_service_info",
    "iots_service_info",
    "node_service_info",
    "rest_service_info",
    "to_ser_name",
]

MAX_BODY_BYTES = 4096
"""EdgeGallery rejects MP1 bodies larger than this; we stay strictly below it."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9]*$|^[A-Za-z0-9][A-Za-z0-9_-]*[A-Za-z0-9]$")
"""EdgeGallery's NAME rule (serName, CategoryRef.name, TransportInfo.name)."""

_SER_NAME_MAX = 128
_HASH_LEN = 8


class Mp1DecodeError(ValueError):
    """A reply from the MEP that is not what MP1 (as EdgeGallery speaks it) promises."""


class BodyTooLarge(ValueError):
    """An encoded MP1 body would reach EdgeGallery's 4096-byte limit."""


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class ServiceState(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    SUSPENDED = "SUSPENDED"
    """Read-only: set by the MEP after missed heartbeats; never sent."""


class SerializerType(StrEnum):
    JSON = "JSON"
    XML = "XML"
    PROTOBUF3 = "PROTOBUF3"


class CategoryRef(_Model):
    """MEC 011 CategoryRef; EdgeGallery treats all four fields as optional."""

    href: str = ""
    id: str = ""
    name: str = ""
    version: str = ""


class EndPointAddress(_Model):
    host: str
    port: int


class EndPointInfo(_Model):
    """Exactly one member is meaningful; EdgeGallery returns the others as ``null``."""

    uris: list[str] | None = None
    addresses: list[EndPointAddress] | None = None
    alternative: dict[str, Any] | None = None


class OAuth2Info(_Model):
    grantTypes: list[str] = Field(default_factory=list)
    tokenEndpoint: str = ""

    @field_validator("grantTypes", mode="before")
    @classmethod
    def _split_grant_types(cls, value: object) -> object:
        """Undo EdgeGallery's join-with-U+FF0C / split-on-',' round trip."""
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        out: list[object] = []
        for item in items:
            if isinstance(item, str):
                out.extend(p.strip() for p in re.split("[,\uff0c]", item) if p.strip())
            else:
                out.append(item)
        return out


class SecurityInfo(_Model):
    oAuth2Info: OAuth2Info | None = None


class TransportInfo(_Model):
    id: str
    name: str
    description: str | None = None
    type: str
    protocol: str
    version: str
    endpoint: EndPointInfo
    security: SecurityInfo = Field(default_factory=SecurityInfo)
    implSpecificInfo: dict[str, Any] | None = None


class SelfLinks(_Model):
    href: str | None = None
    liveness: str | None = None


class ServiceLinks(_Model):
    self_: SelfLinks = Field(default_factory=SelfLinks, alias="self")
    appInstanceId: str | None = None


class ServiceInfo(_Model):
    """MEC 011 ServiceInfo with EdgeGallery's additions (``livenessInterval``, ``_links``)."""

    serInstanceId: str | None = None
    serName: str
    serCategory: CategoryRef | None = None
    version: str
    state: ServiceState
    transportId: str | None = None
    transportInfo: TransportInfo | None = None
    serializer: SerializerType
    scopeOfLocality: str | None = None
    consumedLocalOnly: bool = False
    isLocal: bool = False
    livenessInterval: int | None = None
    links: ServiceLinks | None = Field(default=None, alias="_links")

    @property
    def liveness_path(self) -> str | None:
        """Path for heartbeats as the MEP announced it (includes ``/mep``), if liveness is on."""
        if self.links is None:
            return None
        return self.links.self_.liveness or None

    @property
    def endpoint_uris(self) -> list[str]:
        """The advertised URIs (gateway URIs on GET; provider URIs in the 201 echo)."""
        if self.transportInfo is None or not self.transportInfo.endpoint.uris:
            return []
        return list(self.transportInfo.endpoint.uris)

    def to_request(self) -> dict[str, Any]:
        """The JSON object to POST/PUT: no read-only fields, no ``null`` members."""
        body = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"serInstanceId", "links"}
        )
        if self.state is ServiceState.SUSPENDED:
            raise ValueError("SUSPENDED is set by the MEP and cannot be sent")
        return body


class TokenResponse(_Model):
    access_token: str = Field(min_length=1)
    token_type: str
    expires_in: int = Field(gt=0)


class TimeStamp(_Model):
    seconds: int
    nanoSeconds: int = 0


class LivenessInfo(_Model):
    state: ServiceState
    timeStamp: TimeStamp
    interval: int


class ProblemDetails(_Model):
    """RFC 7807 body. On EdgeGallery ``status`` is an internal code, not the HTTP status."""

    type: str | None = None
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None


class LinkType(_Model):
    href: str


# --- decoding ---------------------------------------------------------------------------


def _load(raw: bytes | str | object, what: str) -> object:
    if isinstance(raw, bytes | str):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Mp1DecodeError(f"{what}: reply is not JSON: {exc}") from exc
    return raw


def decode_service_info(raw: bytes | str | object) -> ServiceInfo:
    """Decode one ServiceInfo reply (POST 201, GET, PUT 200)."""
    data = _load(raw, "ServiceInfo")
    try:
        return ServiceInfo.model_validate(data)
    except ValidationError as exc:
        raise Mp1DecodeError(f"ServiceInfo: invalid reply: {exc}") from exc


def decode_service_list(raw: bytes | str | object) -> list[ServiceInfo]:
    """Decode a ServiceInfo list (GET services, discovery); ``null`` reads as ``[]``."""
    data = _load(raw, "ServiceInfo list")
    if data is None:
        return []
    if not isinstance(data, list):
        raise Mp1DecodeError(f"ServiceInfo list: expected a JSON array, got {type(data).__name__}")
    return [decode_service_info(item) for item in data]


def decode_token_response(raw: bytes | str | object) -> TokenResponse:
    """Decode mepauth's 200 reply to ``POST /mep/token``."""
    data = _load(raw, "token")
    try:
        token = TokenResponse.model_validate(data)
    except ValidationError as exc:
        raise Mp1DecodeError(f"token: invalid reply: {exc}") from exc
    if token.token_type.lower() != "bearer":
        raise Mp1DecodeError(f"token: unexpected token_type {token.token_type!r}")
    return token


def decode_liveness(raw: bytes | str | object) -> LivenessInfo:
    """Decode ``GET …/liveness``."""
    data = _load(raw, "liveness")
    try:
        return LivenessInfo.model_validate(data)
    except ValidationError as exc:
        raise Mp1DecodeError(f"liveness: invalid reply: {exc}") from exc


def decode_error_body(raw: bytes) -> tuple[ProblemDetails | None, str]:
    """Best-effort reading of an error reply of any of the three MEP flavours.

    Returns the ProblemDetails when the body is one (mepserver, whatever its Content-Type)
    and a human-readable message in every case (mepauth's JSON string, Kong's ``message``,
    service-center's ``errorMessage``, or the raw text).
    """
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None, text
    if isinstance(data, str):
        return None, data
    if isinstance(data, dict):
        if "message" in data and isinstance(data["message"], str):
            return None, data["message"]
        if "errorMessage" in data:
            return None, f"{data.get('errorMessage')} ({data.get('errorCode')})"
        try:
            problem = ProblemDetails.model_validate(data)
        except ValidationError:
            return None, text
        return problem, problem.detail or problem.title or text
    return None, text


# --- body builders ----------------------------------------------------------------------

KUBEEDGE_CATEGORY = CategoryRef(
    href="/kubeedge_devices/v1",
    id="kubeedge-device-management",
    name="KubeEdge-Device-Management",
    version="v1",
)
IOTS_CATEGORY = CategoryRef(href="/iots/v1", id="iots", name="IoT", version="v1")


def to_ser_name(*parts: str) -> str:
    """Join ``parts`` with ``-`` into a name that satisfies EdgeGallery's NAME rule.

    Characters outside ``[A-Za-z0-9_-]`` (dots of node names, ``/`` of device ids, spaces)
    become ``-``, runs of ``-`` collapse and ``_``/``-`` are trimmed from both ends. When that
    mapping lost information (something was replaced, collapsed, trimmed or truncated to 128),
    an 8-hex SHA-256 digest of the original parts is appended, so ``node.a`` and ``node-a``
    never share a serName while names that were already valid stay readable and unchanged.
    The result depends only on the input: restarts and other replicas compute the same name.
    """
    original = "-".join(parts)
    mapped = re.sub(r"[^A-Za-z0-9_-]", "-", original)
    mapped = re.sub(r"-{2,}", "-", mapped).strip("-_")
    lossy = mapped != original
    if len(mapped) > _SER_NAME_MAX:
        lossy = True
    if lossy:
        digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:_HASH_LEN]
        head = mapped[: _SER_NAME_MAX - _HASH_LEN - 1].rstrip("-_")
        mapped = f"{head}-{digest}" if head else digest
    if not NAME_PATTERN.match(mapped):  # pragma: no cover - guarded by construction
        raise ValueError(f"cannot map {original!r} to a serName")
    return mapped


def rest_service_info(
    ser_name: str,
    uri: str,
    *,
    category: CategoryRef | None,
    version: str = "1.0",
    transport_id: str = "rest",
    transport_name: str = "REST",
    liveness_interval: int = 60,
    token_endpoint: str | None = None,
    state: ServiceState = ServiceState.ACTIVE,
) -> ServiceInfo:
    """A REST_HTTP service as we register it: one ``endpoint.uris`` entry, heartbeats on.

    ``token_endpoint`` (the MEP's ``/mep/token`` URL) is advertised as
    ``OAUTH2_CLIENT_CREDENTIALS`` so consumers know the gateway wants a mepauth bearer token;
    without it ``security`` is ``{}``, which MEC 011 requires and EdgeGallery accepts.
    """
    if not NAME_PATTERN.match(ser_name) or len(ser_name) > _SER_NAME_MAX:
        raise ValueError(f"serName {ser_name!r} violates EdgeGallery's NAME rule")
    security = SecurityInfo(
        oAuth2Info=OAuth2Info(
            grantTypes=["OAUTH2_CLIENT_CREDENTIALS"], tokenEndpoint=token_endpoint
        )
        if token_endpoint
        else None
    )
    return ServiceInfo(
        serName=ser_name,
        serCategory=category,
        version=version,
        state=state,
        transportInfo=TransportInfo(
            id=transport_id,
            name=transport_name,
            type="REST_HTTP",
            protocol="HTTP",
            version="1.1",
            endpoint=EndPointInfo(uris=[uri]),
            security=security,
        ),
        serializer=SerializerType.JSON,
        scopeOfLocality="MEC_HOST",
        consumedLocalOnly=True,
        isLocal=True,
        livenessInterval=liveness_interval,
    )


def node_service_info(node: str, public_url: str, **kwargs: Any) -> ServiceInfo:
    """The node-wide device-management service: ``kubeedge-devices-<node>``."""
    base = public_url.rstrip("/")
    return rest_service_info(
        to_ser_name("kubeedge-devices", node),
        f"{base}/kubeedge_devices/v1",
        category=KUBEEDGE_CATEGORY,
        **kwargs,
    )


def iots_service_info(node: str, public_url: str, **kwargs: Any) -> ServiceInfo:
    """The MEC 033 IoT API of this node: ``iots-<node>``."""
    base = public_url.rstrip("/")
    return rest_service_info(
        to_ser_name("iots", node), f"{base}/iots/v1", category=IOTS_CATEGORY, **kwargs
    )


def encode_service_info(info: ServiceInfo) -> bytes:
    """Encode ``info`` for POST/PUT, refusing bodies EdgeGallery would reject as too large."""
    body = json.dumps(info.to_request(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) >= MAX_BODY_BYTES:
        raise BodyTooLarge(
            f"ServiceInfo for {info.serName!r} is {len(body)} bytes; "
            f"EdgeGallery accepts less than {MAX_BODY_BYTES}"
        )
    return body
