"""The JSON shapes the API answers with, as pydantic models.

Each model both encodes its responses (:func:`encode`) and is a component of
``/openapi.json`` (``openapi.py`` generates the schemas from them), so the document cannot
drift from what is served. Attributes that a response may leave out are typed
``X | Omitted`` with a ``None`` default: :func:`encode` drops what was not given, and the
schema shows them as optional without a ``null``. Attributes that are always present but may
be empty are plainly nullable (``str | None``).

Notifications are rendered into bytes by ``notify.render`` for many subscribers at once;
the notification models here describe them (a contract test checks the renderer against
them) but are not on the delivery path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from mep_kubeedge_adapter.api.problems import PROBLEM_TYPE_PREFIX
from mep_kubeedge_adapter.domain import ALLOWED_DEVICE_STATES
from mep_kubeedge_adapter.notify.models import (
    FilteringCriteria,
    SubscriptionRequest,
    SubscriptionType,
    TimeStamp,
)

__all__ = ["RESPONSE_MODELS", "Json", "encode"]

Json = dict[str, Any]

Omitted = SkipJsonSchema[None]
"""Absent from a response rather than ``null`` (see the module docstring)."""

_URI: JsonDict = {"format": "uri"}


class Shape(BaseModel):
    """A response body: closed (``additionalProperties: false``), ``_links`` by its alias."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, serialize_by_alias=True, validate_by_name=True
    )


def encode(shape: BaseModel) -> Json:
    """The JSON data of ``shape``, without the optional attributes it was not given."""
    return shape.model_dump(mode="json", exclude_unset=True, by_alias=True)


# ------------------------------------------------------------------ device API


class Link(Shape):
    href: str = Field(json_schema_extra=_URI)


class SelfLinks(Shape):
    self_: Link = Field(alias="self")


class TwinValue(Shape):
    """One side of a twin property. Values are strings, as in KubeEdge."""

    value: str
    timestamp: str | Omitted = Field(None, json_schema_extra={"format": "date-time"})


class TwinPropertyInfo(Shape):
    type: str = Field(
        description="The DeviceModel's type as KubeEdge spells it (INT, FLOAT, DOUBLE, "
        "STRING, BOOLEAN, BYTES, STREAM) when the model names the property, "
        "else the twin's type (int, float, boolean, string)."
    )
    reported: TwinValue | Omitted = None
    desired: TwinValue | Omitted = None


class TwinInfo(Shape):
    properties: dict[str, TwinPropertyInfo]


class DeviceLinks(Shape):
    self_: Link = Field(alias="self")
    twin: Link


class DeviceInfo(Shape):
    namespace: str
    name: str
    model: str | None
    node: str | None
    labels: dict[str, str]
    state: str | None = Field(description=", ".join(sorted(ALLOWED_DEVICE_STATES)))
    lastOnlineTime: str | None = Field(description="RFC 3339")
    twin: TwinInfo
    links: DeviceLinks = Field(alias="_links")


class DevicePropertySpec(Shape):
    name: str
    type: str = Field(description="INT, FLOAT, DOUBLE, STRING, BOOLEAN...")
    accessMode: str | None = Field(description="ReadWrite or ReadOnly")
    unit: str | None
    description: str | None
    minimum: str | None
    maximum: str | None


class DeviceModelInfo(Shape):
    namespace: str
    name: str
    protocol: str | None
    properties: list[DevicePropertySpec]
    links: SelfLinks = Field(alias="_links")


class SubscriptionInfo(Shape):
    """A subscription as created: the request's fields, its id and its links."""

    id: str
    subscriptionType: SubscriptionType
    callbackReference: str | Omitted = None
    requestWebsocketUri: bool
    filteringCriteria: FilteringCriteria | Omitted = None
    expiryDeadline: TimeStamp | Omitted = None
    websocketUri: str | Omitted = Field(
        None,
        description="ws:// or wss:// URL of this subscription's websocket "
        "(when requestWebsocketUri was true)",
        json_schema_extra=_URI,
    )
    links: SelfLinks = Field(alias="_links")

    @classmethod
    def of(
        cls, subscription_id: str, request: SubscriptionRequest, href: str, websocket: str | None
    ) -> SubscriptionInfo:
        given = request.model_dump(exclude_none=True)
        if websocket is not None:
            given["websocketUri"] = websocket
        return cls(id=subscription_id, **given, links={"self": {"href": href}})


# ------------------------------------------------------------------ operations


class Problem(BaseModel):
    """RFC 7807 problem details."""

    model_config = ConfigDict(
        title="Problem",
        json_schema_extra={
            "description": f"RFC 7807. ``type`` is ``{PROBLEM_TYPE_PREFIX}<kind>`` (not-found, "
            "invalid, precondition-failed, upstream-rejected, upstream-timeout, unavailable, "
            "not-implemented, unauthorized, too-large, unsupported-media-type, "
            "method-not-allowed, internal...)."
        },
    )

    type: str = Field(json_schema_extra={"format": "uri-reference"})
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(json_schema_extra={"format": "uri-reference"})
    requestId: str | Omitted = Field(None, description="as echoed in X-Request-Id")


class Health(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    """The state of the EventBus (MQTT, EdgeCore), the kube source and the MEP."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ready", "not-ready"]


# ------------------------------------------------------------------ MEC 033 (V3.1.1)


class KeyValuePair(Shape):
    key: str
    value: str


class Mec033DeviceInfo(Shape):
    """MEC 033 ``DeviceInfo``, every attribute of its table (``additionalProperties: false``
    catches a misspelt or invented one); the adapter answers with the KubeEdge subset."""

    model_config = ConfigDict(title="Mec033DeviceInfo")

    deviceAuthenticationInfo: str | dict[str, Any]
    deviceMetadata: list[KeyValuePair] | Omitted = None
    gpsi: str | Omitted = None
    pei: str | Omitted = None
    supi: str | Omitted = None
    msisdn: str | Omitted = None
    imei: str | Omitted = None
    imsi: str | Omitted = None
    iccid: str | Omitted = None
    deviceId: str
    requestedMecTrafficRule: list[Any] | Omitted = None
    requestedIotPlatformId: str | Omitted = None
    requestedUserTransportId: str | Omitted = None
    deviceSpecificMessageFormats: dict[str, Any] | Omitted = None
    downlinkInfo: dict[str, Any] | Omitted = None
    clientCertificate: str | Omitted = None
    enabled: bool


class Address(Shape):
    host: str
    port: int


class EndPointInfo(Shape):
    """MEC 011 ``EndPointInfo``: exactly one of its forms."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    uris: list[str] | Omitted = Field(None, min_length=1, json_schema_extra={"items": _URI})
    addresses: list[Address] | Omitted = Field(None, min_length=1)
    alternative: dict[str, Any] | Omitted = None
    fqdn: list[str] | Omitted = None


class OAuth2Info(Shape):
    grantTypes: list[
        Literal[
            "OAUTH2_AUTHORIZATION_CODE",
            "OAUTH2_IMPLICIT_GRANT",
            "OAUTH2_RESOURCE_OWNER",
            "OAUTH2_CLIENT_CREDENTIALS",
        ]
    ]
    tokenEndpoint: str | Omitted = None


class SecurityInfo(Shape):
    oAuth2Info: OAuth2Info | Omitted = None


TransportType = Literal[
    "REST_HTTP", "MB_TOPIC_BASED", "MB_ROUTING", "MB_PUBSUB", "RPC", "RPC_STREAMING", "WEBSOCKET"
]


class TransportInfo(Shape):
    """MEC 011 ``TransportInfo``."""

    id: str
    name: str
    description: str | Omitted = None
    type: TransportType
    protocol: str
    version: str
    endpoint: EndPointInfo
    security: SecurityInfo
    implSpecificInfo: dict[str, Any] | Omitted = None


class TopicLists(Shape):
    """The topics of an ``MB_TOPIC_BASED`` transport (MEC 033 ``MBTransportInfo``)."""

    eventTopics: list[str] | Omitted = None
    uplinkTopics: list[str] | Omitted = None
    downlinkTopics: list[str] | Omitted = None


class MbTransportInfo(TransportInfo):
    type: Literal["MB_TOPIC_BASED"]
    implSpecificInfo: TopicLists  # type: ignore[assignment]


class Mec033IotPlatformInfo(Shape):
    """MEC 033 ``IotPlatformInfo``."""

    model_config = ConfigDict(title="Mec033IotPlatformInfo")

    iotPlatformId: str
    userTransportInfo: list[MbTransportInfo] = Field(min_length=1)
    customServicesTransportInfo: list[TransportInfo] | Omitted = None
    enabled: bool


# ------------------------------------------------------------------ notifications


class DeviceRef(Shape):
    namespace: str
    name: str


class NotificationLinks(Shape):
    subscription: Link


class TwinChangeValue(Shape):
    value: str
    timestamp: str | Omitted = Field(None, json_schema_extra={"format": "date-time"})


class PropertyChangeInfo(Shape):
    """One property's change; ``desired`` and ``previousDesired`` only when the desired
    value changed, ``deleted`` only when the twin property was deleted."""

    reported: TwinChangeValue | None
    previous: TwinChangeValue | None
    desired: TwinChangeValue | Omitted | None = None
    previousDesired: TwinChangeValue | Omitted | None = None
    deleted: Literal[True] | Omitted = None


class _Notification(Shape):
    subscriptionId: str
    sequence: int = Field(ge=1, description="per subscription, never repeated")
    timeStamp: TimeStamp
    device: DeviceRef
    links: NotificationLinks = Field(alias="_links")


class DeviceTwinChangeNotification(_Notification):
    notificationType: Literal["DeviceTwinChangeNotification"]
    changes: dict[str, PropertyChangeInfo]


class DeviceStateChangeNotification(_Notification):
    notificationType: Literal["DeviceStateChangeNotification"]
    state: str | None
    previousState: str | None
    lastOnlineTime: str | None


class DeviceMembershipChangeNotification(_Notification):
    notificationType: Literal["DeviceMembershipChangeNotification"]
    changeType: Literal["ADDED", "REMOVED", "UPDATED"]
    model: str | None
    node: str | None
    labels: dict[str, str]


NOTIFICATION_MODELS: tuple[type[_Notification], ...] = (
    DeviceTwinChangeNotification,
    DeviceStateChangeNotification,
    DeviceMembershipChangeNotification,
)

RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Problem,
    Health,
    Readiness,
    DeviceInfo,
    TwinInfo,
    DeviceModelInfo,
    SubscriptionInfo,
    Mec033DeviceInfo,
    Mec033IotPlatformInfo,
    *NOTIFICATION_MODELS,
)
"""Every model ``/openapi.json`` publishes (with the models they refer to)."""
