from __future__ import annotations

import pytest

from mep_kubeedge_adapter.kubeedge.topics import (
    ParsedTopic,
    TopicKind,
    parse_topic,
    subscriptions,
)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (
            "$hw/events/device/default/thermo-1/twin/update/document",
            ParsedTopic(TopicKind.TWIN_UPDATE_DOCUMENT, "default/thermo-1"),
        ),
        (
            "$hw/events/device/thermo-1/twin/update/result",
            ParsedTopic(TopicKind.TWIN_UPDATE_RESULT, "thermo-1"),
        ),
        ("$hw/events/device//twin/update/result", ParsedTopic(TopicKind.TWIN_UPDATE_RESULT, "")),
        (
            "$hw/events/device/ns/twin/twin/get/result",
            ParsedTopic(TopicKind.TWIN_GET_RESULT, "ns/twin"),
        ),
        (
            "$hw/events/device/default/x/state/update/result",
            ParsedTopic(TopicKind.STATE_UPDATE_RESULT, "default/x"),
        ),
        (
            "$hw/events/node/edge-1/membership/get/result",
            ParsedTopic(TopicKind.MEMBERSHIP_GET_RESULT, "edge-1"),
        ),
        (
            "$hw/events/node/edge-1/membership/updated",
            ParsedTopic(TopicKind.MEMBERSHIP_UPDATED, "edge-1"),
        ),
        ("$hw/events/device/default/x/twin/update", None),
        ("$hw/events/device/a/b/c/twin/update/result", None),
        ("$hw/events/node/edge-1/membership/get", None),
        ("$ke/events/device/x/data/update", None),
        ("random/topic", None),
    ],
)
def test_parse_topic(topic: str, expected: ParsedTopic | None) -> None:
    assert parse_topic(topic) == expected


def test_subscriptions_name_hw_topics_explicitly() -> None:
    for layout in ("auto", "namespaced", "legacy"):
        filters = subscriptions(layout)
        assert all(f.startswith("$hw/events/") for f in filters)
        assert not any(f.startswith(("#", "+")) for f in filters)
    assert "$hw/events/device/+/+/twin/update/+" in subscriptions("namespaced")
    assert "$hw/events/device/+/twin/update/+" not in subscriptions("namespaced")
    assert "$hw/events/device//twin/update/result" in subscriptions("namespaced")
    assert "$hw/events/device/+/twin/update/+" in subscriptions("legacy")
