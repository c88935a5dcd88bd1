"""Subscriptions by what their filters name, so a change visits only the ones it may match.

Each subscription is filed under one key of its ``Selector``: every device it names, else
every model, else one of its labels (all labels must match, so any one of them is a
necessary condition), else under "everyone" (no device, model or label criterion). A
change of device *d* with model *m* and labels *L* looks at the subscriptions filed under
*d*, under *m*, under each label of *L*, and under "everyone": each subscription at most
once, since it is filed under one kind of key, and every subscription that can match is
among them. The caller still checks the whole selector (a device filter together with a
model filter, the other labels, the properties), so the index only has to be complete,
never exact; a change costs in proportion to the subscriptions filed where it looks, not
to all subscriptions.

Pure data structure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from mep_kubeedge_adapter.domain import Device, DeviceId
from mep_kubeedge_adapter.notify.render import Selector

__all__ = ["SubscriptionIndex"]

T = TypeVar("T")


class SubscriptionIndex(Generic[T]):
    """Items (a subscription's delivery state) by subscription id, filed by their selector."""

    def __init__(self) -> None:
        self._devices: dict[object, dict[str, T]] = {}
        self._models: dict[object, dict[str, T]] = {}
        self._labels: dict[object, dict[str, T]] = {}
        self._everyone: dict[str, T] = {}
        self._filed: dict[str, list[tuple[dict[object, dict[str, T]] | None, object]]] = {}
        """Where each subscription is filed (table and key; None for "everyone"), so it is
        removed without a search and an emptied key goes with it."""

    def __len__(self) -> int:
        return len(self._filed)

    def keys(self) -> int:
        """How many device, model and label keys are held (each has a subscription)."""
        return len(self._devices) + len(self._models) + len(self._labels)

    def add(self, subscription_id: str, selector: Selector, item: T) -> None:
        """File ``item`` under ``selector``'s keys (replacing an earlier one of the same id)."""
        self.remove(subscription_id)
        places: list[tuple[dict[object, dict[str, T]] | None, object]]
        if selector.devices:
            places = [(self._devices, d) for d in sorted(selector.devices)]
        elif selector.models:
            places = [(self._models, m) for m in sorted(selector.models)]
        elif selector.labels:
            places = [(self._labels, selector.labels[0])]
        else:
            places = [(None, None)]
        for table, key in places:
            bucket = self._everyone if table is None else table.setdefault(key, {})
            bucket[subscription_id] = item
        self._filed[subscription_id] = places

    def remove(self, subscription_id: str) -> None:
        for table, key in self._filed.pop(subscription_id, ()):
            if table is None:
                self._everyone.pop(subscription_id, None)
                continue
            bucket = table.get(key)
            if bucket is not None:
                bucket.pop(subscription_id, None)
                if not bucket:
                    del table[key]

    def candidates(self, device_id: DeviceId, device: Device | None) -> Iterator[T]:
        """Every item whose selector may match a change of ``device_id`` (``device``: its
        snapshot, None when unknown, which only device filters and "everyone" can match).

        Do not add or remove items while iterating."""
        bucket = self._devices.get(str(device_id))
        if bucket:
            yield from bucket.values()
        if device is not None:
            if device.model is not None and self._models:
                bucket = self._models.get(device.model)
                if bucket:
                    yield from bucket.values()
            if self._labels:
                for label in device.labels.items():
                    bucket = self._labels.get(label)
                    if bucket:
                        yield from bucket.values()
        if self._everyone:
            yield from self._everyone.values()
