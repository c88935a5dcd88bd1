"""Subscriptions and notifications: the adapter's push side (SPEC §4, §6).

Modules, each with one concern:

* ``models``: the subscription request (pydantic, the API boundary) and ``Subscription``;
* ``render``: pure matching of change events and the notification JSON, encoded once per
  change and shared by every subscription that receives it;
* ``index``: subscriptions by the devices, models and labels they filter on;
* ``backlog``: a subscriber's bounded, coalescing queue;
* ``addresses``: where callbacks may point;
* ``callbacks``: the shared HTTP client and per-subscription delivery workers;
* ``websocket``: websocket fan-out, one corked batch per wake-up;
* ``dispatcher``: the registry listener that numbers and routes notices;
* ``subscriptions``: ``SubscriptionService``, the use cases the API calls.
"""

from mep_kubeedge_adapter.notify.callbacks import DeliverySettings
from mep_kubeedge_adapter.notify.subscriptions import (
    FilteringCriteria,
    Subscription,
    SubscriptionRequest,
    SubscriptionService,
    SubscriptionType,
    TimeStamp,
)

__all__ = [
    "DeliverySettings",
    "FilteringCriteria",
    "Subscription",
    "SubscriptionRequest",
    "SubscriptionService",
    "SubscriptionType",
    "TimeStamp",
]
