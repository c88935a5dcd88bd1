"""Codecs against every payload EdgeCore v1.23.1 published in the recorded capture."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mep_kubeedge_adapter.domain import TwinState, TwinValue
from mep_kubeedge_adapter.kubeedge.codec import (
    CodecError,
    ErrorResult,
    MembershipList,
    MembershipUpdate,
    StateResult,
    TwinDelta,
    TwinDocument,
    TwinResult,
    decode,
    encode_desired_update,
)
from mep_kubeedge_adapter.kubeedge.topics import TopicKind, parse_topic

CAPTURE = Path(__file__).parents[1] / "emulators" / "data" / "edgecore-v1.23.1-capture.txt"


def capture_lines() -> list[tuple[str, bytes]]:
    lines = []
    for line in CAPTURE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        topic, _, payload = line.partition(" ")
        lines.append((topic, payload.encode()))
    return lines


def test_every_published_payload_in_the_capture_decodes() -> None:
    decoded = 0
    for topic, payload in capture_lines():
        parsed = parse_topic(topic)
        if parsed is None:
            continue  # a request, or a topic the adapter does not consume
        decode(parsed.kind, payload)
        decoded += 1
    assert decoded == 27  # every line EdgeCore published on a topic the adapter consumes


def _decode(topic: str, payload: str) -> object:
    parsed = parse_topic(topic)
    assert parsed is not None
    return decode(parsed.kind, payload.encode())


def test_get_result_with_three_twins() -> None:
    message = next(
        decode(TopicKind.TWIN_GET_RESULT, p)
        for t, p in capture_lines()
        if t.endswith("thermo-1/twin/get/result")
    )
    assert isinstance(message, TwinResult)
    assert message.event_id == "get-4"
    assert message.twin["temperature"] == TwinState(
        expected=TwinValue("25", 1700000000000),
        actual=TwinValue("25", 1795641075331),
        twin_type="int",
        optional=True,
    )
    assert set(message.twin) == {"humidity", "status", "temperature"}


def test_error_results() -> None:
    message = _decode(
        "$hw/events/device/default/nope/twin/get/result",
        '{"event_id":"get-3","timestamp":1795641096731,"code":404,"reason":"Device default/nope not found while getting twin"}',
    )
    assert message == ErrorResult(
        "get-3", 1795641096731, 404, "Device default/nope not found while getting twin"
    )


def test_document_created_and_deleted_twins() -> None:
    message = _decode(
        "$hw/events/device/default/thermo-1/twin/update/document",
        '{"event_id":"upd-8","timestamp":1,"twin":{"humidity":{"last":null,"current":{"actual":{"value":"40","metadata":{"timestamp":5}},"optional":true,"metadata":{"type":"string"}}},"gone":{"last":{"optional":true},"current":null}}}',
    )
    assert isinstance(message, TwinDocument)
    assert message.created == frozenset({"humidity"})
    assert message.current["gone"] is None
    humidity = message.current["humidity"]
    assert humidity is not None and humidity.actual == TwinValue("40", 5)
    assert humidity.expected is None


def test_delta_state_and_membership() -> None:
    delta = _decode(
        "$hw/events/device/default/pump-1/twin/update/delta",
        '{"event_id":"x","timestamp":2,"twin":{"speed":{"expected":{"value":"100","metadata":{"timestamp":1}},"optional":true,"metadata":{"type":"int"}}},"delta":{"speed":"100"}}',
    )
    assert isinstance(delta, TwinDelta) and delta.delta == {"speed": "100"}
    state = _decode(
        "$hw/events/device/default/thermo-1/state/update/result",
        '{"event_id":"c9","timestamp":3,"device":{"name":"thermo-1","state":"online","lastOnlineTime":"2026-11-25T21:11:38Z"}}',
    )
    assert state == StateResult("c9", 3, "online", "2026-11-25T21:11:38Z")
    members = _decode(
        "$hw/events/node/test-node/membership/get/result",
        '{"event_id":"m1","timestamp":4,"devices":[{"id":"default/thermo-1","name":"thermo-1","description":"local test device"}]}',
    )
    assert isinstance(members, MembershipList)
    assert members.devices[0].id == "default/thermo-1"
    update = _decode(
        "$hw/events/node/peer-node/membership/updated",
        '{"event_id":"d7","timestamp":5,"added_devices":[{"id":"default/pump-1","name":"pump-1"}],"removed_devices":null}',
    )
    assert isinstance(update, MembershipUpdate)
    assert [m.id for m in update.added] == ["default/pump-1"] and update.removed == ()


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (TopicKind.TWIN_UPDATE_DOCUMENT, b"not json"),
        (TopicKind.TWIN_UPDATE_DOCUMENT, b'{"twin": 5}'),
        (TopicKind.TWIN_UPDATE_RESULT, b'{"twin": {"a": {"actual": {"value": 5}}}}'),
        (TopicKind.TWIN_GET_RESULT, b"[]"),
        (TopicKind.STATE_UPDATE_RESULT, b'{"device": {}}'),
        (TopicKind.MEMBERSHIP_GET_RESULT, b'{"devices": [{"description": "no id"}]}'),
        (TopicKind.TWIN_UPDATE_RESULT, b'{"code": "x", "reason": 1}'),
        (TopicKind.TWIN_UPDATE_DELTA, b'{"delta": {"a": 1}}'),
        # Timestamps a calendar cannot hold (RFC 3339 ends with the year 9999).
        (
            TopicKind.TWIN_UPDATE_DOCUMENT,
            b'{"twin": {"a": {"current": {"actual": {"value": "1", '
            b'"metadata": {"timestamp": 100000000000000000}}}}}}',
        ),
        (
            TopicKind.TWIN_UPDATE_RESULT,
            b'{"twin": {"a": {"actual": {"value": "1", "metadata": {"timestamp": -1}}}}}',
        ),
        (
            TopicKind.TWIN_UPDATE_DELTA,
            b'{"twin": {"a": {"expected": {"value": "1", '
            b'"metadata": {"timestamp": 253402300800000}}}}, "delta": {"a": "1"}}',
        ),
        (TopicKind.TWIN_GET_RESULT, b'{"timestamp": 99999999999999999999, "twin": {}}'),
        (TopicKind.STATE_UPDATE_RESULT, b'{"timestamp": -5, "device": {"state": "online"}}'),
    ],
)
def test_wrong_shapes_raise_codec_error(kind: TopicKind, payload: bytes) -> None:
    with pytest.raises(CodecError):
        decode(kind, payload)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(TopicKind)), payload=st.binary(max_size=256))
def test_arbitrary_bytes_never_escape_as_other_errors(kind: TopicKind, payload: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(kind, payload)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "twin",
                    "event_id",
                    "timestamp",
                    "code",
                    "reason",
                    "actual",
                    "expected",
                    "value",
                    "metadata",
                    "devices",
                    "device",
                    "state",
                    "delta",
                    "last",
                    "current",
                    "added_devices",
                    "removed_devices",
                    "id",
                    "name",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(TopicKind)), document=_json)
def test_well_formed_but_wrong_json_is_a_codec_error_or_a_message(
    kind: TopicKind, document: object
) -> None:
    import json

    with contextlib.suppress(CodecError):
        decode(kind, json.dumps(document).encode())


def test_desired_update_encoding_uses_expected() -> None:
    import json

    body = json.loads(encode_desired_update("e1", 7, {"speed": ("120", "int")}))
    assert body == {
        "event_id": "e1",
        "timestamp": 7,
        "twin": {"speed": {"expected": {"value": "120"}, "metadata": {"type": "int"}}},
    }
