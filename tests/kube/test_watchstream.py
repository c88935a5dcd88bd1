"""Decoding the lines of a watch response as the client's ``Watch`` decodes them."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from mep_kubeedge_adapter.kubeedge.watchstream import WatchEvent, decode_event


def test_events_carry_their_objects_resource_version() -> None:
    obj = {"metadata": {"name": "a", "resourceVersion": "17"}, "spec": {}}
    line = json.dumps({"type": "MODIFIED", "object": obj})
    assert decode_event(line) == WatchEvent("MODIFIED", obj, "17")
    bookmark = {"kind": "Device", "metadata": {"resourceVersion": "42"}}
    assert decode_event(json.dumps({"type": "BOOKMARK", "object": bookmark})) == WatchEvent(
        "BOOKMARK", bookmark, "42"
    )
    assert decode_event(json.dumps({"type": "ADDED", "object": {"metadata": {}}})) == (
        WatchEvent("ADDED", {"metadata": {}}, None)
    )


def test_blank_lines_are_no_events() -> None:
    assert decode_event("") is None
    assert decode_event("  ") is None


def test_an_error_event_raises_its_status() -> None:
    gone = {
        "kind": "Status",
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version: 5 (9)",
        "code": 410,
    }
    with pytest.raises(client.ApiException) as raised:
        decode_event(json.dumps({"type": "ERROR", "object": gone}))
    assert raised.value.status == 410
    assert raised.value.reason == "Expired: too old resource version: 5 (9)"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "Expecting value"),
        ("[1, 2]", "without an event type"),
        ('{"object": {}}', "without an event type"),
        ('{"type": "ERROR", "object": {"reason": "x"}}', "without a status code"),
    ],
)
def test_a_line_that_is_no_watch_event_is_a_value_error(line: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_event(line)
