"""Subscriptions as the API receives them (SPEC §4) and as the adapter keeps them.

The pydantic models decode the POST body at the boundary; ``Subscription`` is the
accepted, immutable form every other part of ``notify`` works with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mep_kubeedge_adapter.notify.render import Selector

__all__ = [
    "API_BASE_PATH",
    "Caller",
    "FilteringCriteria",
    "Subscription",
    "SubscriptionRequest",
    "SubscriptionType",
    "TimeStamp",
]

API_BASE_PATH = "/kubeedge_devices/v1"

SubscriptionType = Literal[
    "DeviceTwinChangeSubscription",
    "DeviceStateChangeSubscription",
    "DeviceMembershipChangeSubscription",
]


class FilteringCriteria(BaseModel):
    """Which changes a subscription gets; every non-empty criterion must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: list[str] = Field(
        default_factory=list,
        description='device ids, "ns/name"',
        json_schema_extra={"items": {"type": "string", "pattern": "^[^/]+/[^/]+$"}},
    )
    models: list[str] = Field(default_factory=list, description="DeviceModel names")
    properties: list[str] = Field(
        default_factory=list, description="twin properties (twin subscriptions only)"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="all must match")

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: list[str]) -> list[str]:
        for item in value:
            namespace, sep, name = item.partition("/")
            if not (namespace and sep and name) or "/" in name:
                raise ValueError(f'device ids are "namespace/name", not {item!r}')
        return value


MAX_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z: the last second RFC 3339 (and the state store's integers) can hold."""


class TimeStamp(BaseModel):
    """ETSI MEC time: seconds and nanoseconds since the Unix epoch, up to the year 9999."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: int = Field(ge=0, le=MAX_SECONDS)
    nanoSeconds: int = Field(0, ge=0, lt=1_000_000_000)

    @property
    def millis(self) -> int:
        return self.seconds * 1000 + self.nanoSeconds // 1_000_000


class SubscriptionRequest(BaseModel):
    """The POST /subscriptions body (SPEC §4)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["callbackReference"],
                    "properties": {"callbackReference": {"type": "string"}},
                },
                {
                    "required": ["requestWebsocketUri"],
                    "properties": {"requestWebsocketUri": {"const": True}},
                },
            ]
        },
    )

    subscriptionType: SubscriptionType
    callbackReference: str | None = Field(None, min_length=1, max_length=2048)
    requestWebsocketUri: bool = False
    filteringCriteria: FilteringCriteria | None = None
    expiryDeadline: TimeStamp | None = None

    @model_validator(mode="after")
    def _check_delivery(self) -> SubscriptionRequest:
        if not self.callbackReference and not self.requestWebsocketUri:
            raise ValueError("give callbackReference, or requestWebsocketUri: true, or both")
        return self


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls the subscription use cases.

    ``subject`` is the verified token's ``sub`` (the app instance id) with
    ``MKA_API__AUTH=jwt``: each subject is its own tenant. Without auth it is None and
    every caller is one tenant. ``address`` is the caller's network address.
    """

    subject: str | None = None
    address: str = ""

    @property
    def quota_key(self) -> str:
        """Whom the per-caller subscription cap counts: the subject, else the address."""
        if self.subject is not None:
            return f"subject:{self.subject}"
        return f"address:{self.address}"

    def owns(self, subscription: Subscription) -> bool:
        """Whether this caller may see and change ``subscription``."""
        return self.subject is None or subscription.owner == self.subject


@dataclass(frozen=True, slots=True)
class Subscription:
    """An accepted subscription.

    ``created`` is Unix ms; ``base_url`` is the API base the creator used (scheme,
    host and any gateway prefix), kept so notifications link back the way the
    subscriber reaches the adapter. ``owner`` is the creator's token subject (None
    when it was created without auth: then no subject owns it); ``caller_key`` is the
    creator's ``Caller.quota_key``.
    """

    id: str
    subscription_type: SubscriptionType
    callback_reference: str | None
    request_websocket_uri: bool
    filtering_criteria: FilteringCriteria | None
    expiry_deadline: TimeStamp | None
    created: int
    base_url: str
    selector: Selector = field(compare=False, repr=False)
    owner: str | None = None
    caller_key: str = ""

    @classmethod
    def from_request(
        cls,
        subscription_id: str,
        request: SubscriptionRequest,
        *,
        created: int,
        base_url: str,
        owner: str | None = None,
        caller_key: str = "",
    ) -> Subscription:
        criteria = request.filteringCriteria
        return cls(
            id=subscription_id,
            subscription_type=request.subscriptionType,
            callback_reference=request.callbackReference,
            request_websocket_uri=request.requestWebsocketUri,
            filtering_criteria=criteria,
            expiry_deadline=request.expiryDeadline,
            created=created,
            base_url=base_url.rstrip("/"),
            selector=Selector(
                subscription_type=request.subscriptionType,
                devices=frozenset(criteria.devices) if criteria else frozenset(),
                models=frozenset(criteria.models) if criteria else frozenset(),
                properties=frozenset(criteria.properties) if criteria else frozenset(),
                labels=tuple(sorted(criteria.labels.items())) if criteria else (),
            ),
            owner=owner,
            caller_key=caller_key,
        )

    @property
    def request(self) -> SubscriptionRequest:
        return SubscriptionRequest(
            subscriptionType=self.subscription_type,
            callbackReference=self.callback_reference,
            requestWebsocketUri=self.request_websocket_uri,
            filteringCriteria=self.filtering_criteria,
            expiryDeadline=self.expiry_deadline,
        )

    @property
    def expiry(self) -> int | None:
        """The expiry deadline in Unix ms, or None."""
        return None if self.expiry_deadline is None else self.expiry_deadline.millis

    def expired(self, now_ms: int) -> bool:
        expiry = self.expiry
        return expiry is not None and expiry <= now_ms

    @property
    def href(self) -> str:
        """This subscription's URL as its creator reaches it (``_links.subscription``)."""
        return subscription_href(self.base_url, self.id)

    def body(self) -> dict[str, Any]:
        """The request fields as JSON data, without unset optional ones."""
        return self.request.model_dump(mode="json", exclude_none=True)


def subscription_href(api_base: str, subscription_id: str) -> str:
    """``api_base`` is the device API's base URL as the caller reaches it (``…/kubeedge_devices/v1``)."""
    return f"{api_base.rstrip('/')}/subscriptions/{subscription_id}"
