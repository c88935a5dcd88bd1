"""EventBus payload codecs: bytes from EdgeCore → typed messages, and requests → bytes.

Pure functions, no I/O. Every payload the adapter consumes is validated here
(reference kubeedge.md §3); anything else raises ``CodecError`` and the caller
counts and logs it. Field names follow EdgeCore v1.23.1 exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Required

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict  # pydantic refuses typing's before Python 3.12

from mep_kubeedge_adapter.domain import MAX_TIMESTAMP_MS, TwinState, TwinValue
from mep_kubeedge_adapter.kubeedge.topics import TopicKind


class CodecError(ValueError):
    """A payload that is not what EdgeCore sends on that topic."""


# ----------------------------------------------------------------- wire models


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


_DICT_CONFIG = ConfigDict(extra="ignore")


Timestamp = Annotated[StrictInt, Field(ge=0, le=MAX_TIMESTAMP_MS)]
"""Milliseconds since the epoch, as EdgeCore stamps them; beyond the year 9999 is refused."""


class _Header(_Wire):
    event_id: StrictStr = ""
    timestamp: Timestamp = 0


class _ErrorBody(_Header):
    code: StrictInt
    reason: StrictStr = ""


# Twin-bearing bodies (documents above all: one per reported value) are validated as
# typed dicts: the same strict checks, without building a model instance per level.


@with_config(_DICT_CONFIG)
class _ValueMeta(TypedDict, total=False):
    timestamp: Timestamp | None


@with_config(_DICT_CONFIG)
class _Value(TypedDict, total=False):
    value: StrictStr | None
    metadata: _ValueMeta | None


@with_config(_DICT_CONFIG)
class _TypeMeta(TypedDict, total=False):
    type: StrictStr | None


@with_config(_DICT_CONFIG)
class _MsgTwin(TypedDict, total=False):
    expected: _Value | None
    actual: _Value | None
    optional: StrictBool | None
    metadata: _TypeMeta | None


@with_config(_DICT_CONFIG)
class _TwinBody(TypedDict, total=False):
    event_id: StrictStr
    timestamp: Timestamp
    twin: Required[dict[str, _MsgTwin | None]]


@with_config(_DICT_CONFIG)
class _DocEntry(TypedDict, total=False):
    last: _MsgTwin | None
    current: _MsgTwin | None


@with_config(_DICT_CONFIG)
class _DocumentBody(TypedDict, total=False):
    event_id: StrictStr
    timestamp: Timestamp
    twin: Required[dict[str, _DocEntry | None]]


@with_config(_DICT_CONFIG)
class _DeltaBody(TypedDict, total=False):
    event_id: StrictStr
    timestamp: Timestamp
    twin: dict[str, _MsgTwin | None]
    delta: dict[str, StrictStr]


_TWIN_BODY = TypeAdapter(_TwinBody)
_DOCUMENT_BODY = TypeAdapter(_DocumentBody)
_DELTA_BODY = TypeAdapter(_DeltaBody)


class _StateDevice(_Wire):
    name: StrictStr = ""
    state: StrictStr
    lastOnlineTime: StrictStr | None = None


class _StateBody(_Header):
    device: _StateDevice


class _Member(_Wire):
    id: StrictStr = ""
    name: StrictStr = ""
    description: StrictStr | None = None
    state: StrictStr | None = None
    last_online: StrictStr | None = None


class _MembershipGetBody(_Header):
    devices: list[_Member] | None = None


class _MembershipUpdatedBody(_Header):
    added_devices: list[_Member] | None = None
    removed_devices: list[_Member] | None = None


# -------------------------------------------------------------- typed messages


@dataclass(frozen=True, slots=True)
class ErrorResult:
    """EdgeCore refused a request: ``code`` 400 / 404 / 500 and its ``reason``."""

    event_id: str
    timestamp: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class TwinResult:
    """``twin/update/result`` or ``twin/get/result``: ``None`` marks a deleted twin."""

    event_id: str
    timestamp: int
    twin: Mapping[str, TwinState | None]


@dataclass(frozen=True, slots=True)
class TwinDocument:
    """``twin/update/document``: the changed twins' ``current`` state (``None`` = deleted)."""

    event_id: str
    timestamp: int
    current: Mapping[str, TwinState | None]
    created: frozenset[str]


@dataclass(frozen=True, slots=True)
class TwinDelta:
    event_id: str
    timestamp: int
    twin: Mapping[str, TwinState | None]
    delta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StateResult:
    event_id: str
    timestamp: int
    state: str
    last_online: str | None


@dataclass(frozen=True, slots=True)
class Member:
    """A device as membership messages describe it; ``id`` is the topic id."""

    id: str
    name: str
    description: str | None
    state: str | None = None
    last_online: str | None = None


@dataclass(frozen=True, slots=True)
class MembershipList:
    event_id: str
    timestamp: int
    devices: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class MembershipUpdate:
    event_id: str
    timestamp: int
    added: tuple[Member, ...]
    removed: tuple[Member, ...]


Message = (
    ErrorResult
    | TwinResult
    | TwinDocument
    | TwinDelta
    | StateResult
    | MembershipList
    | MembershipUpdate
)


# -------------------------------------------------------------------- decoding


def _value(raw: _Value | None) -> TwinValue | None:
    if raw is None:
        return None
    value = raw.get("value")
    if value is None:
        return None
    metadata = raw.get("metadata")
    return TwinValue(value, metadata.get("timestamp") if metadata is not None else None)


def _twin_state(raw: _MsgTwin | None) -> TwinState | None:
    if raw is None:
        return None
    metadata = raw.get("metadata")
    return TwinState(
        _value(raw.get("expected")),
        _value(raw.get("actual")),
        metadata.get("type") if metadata is not None else None,
        raw.get("optional"),
    )


def _member(raw: _Member) -> Member:
    topic_id = raw.id or raw.name
    if not topic_id:
        raise CodecError("membership device without id or name")
    return Member(
        topic_id,
        raw.name or topic_id.rsplit("/", 1)[-1],
        raw.description,
        raw.state or None,
        raw.last_online or None,
    )


def _is_error(payload: bytes) -> bool:
    # Cheap pre-check: error results carry "code" and never "twin".
    return b'"code"' in payload and b'"twin"' not in payload


def decode(kind: TopicKind, payload: bytes) -> Message:
    """Decode what EdgeCore published on a topic of ``kind``; raise CodecError if malformed."""
    try:
        return _decode(kind, payload)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            raise CodecError(f"{kind.value}: invalid payload") from None
        where = ".".join(str(p) for p in errors[0]["loc"]) or "payload"
        raise CodecError(f"{kind.value}: {where}: {errors[0]['msg']}") from None


def _decode(kind: TopicKind, payload: bytes) -> Message:
    if kind in (TopicKind.TWIN_UPDATE_RESULT, TopicKind.TWIN_GET_RESULT) and _is_error(payload):
        err = _ErrorBody.model_validate_json(payload)
        return ErrorResult(err.event_id, err.timestamp, err.code, err.reason)
    if kind in (TopicKind.TWIN_UPDATE_RESULT, TopicKind.TWIN_GET_RESULT):
        body = _TWIN_BODY.validate_json(payload)
        return TwinResult(
            body.get("event_id", ""),
            body.get("timestamp", 0),
            {k: _twin_state(v) for k, v in body["twin"].items()},
        )
    if kind is TopicKind.TWIN_UPDATE_DOCUMENT:
        doc = _DOCUMENT_BODY.validate_json(payload)
        current: dict[str, TwinState | None] = {}
        created: set[str] = set()
        for key, entry in doc["twin"].items():
            if entry is None:
                continue
            now = entry.get("current")
            current[key] = _twin_state(now)
            if now is not None and entry.get("last") is None:
                created.add(key)
        return TwinDocument(
            doc.get("event_id", ""), doc.get("timestamp", 0), current, frozenset(created)
        )
    if kind is TopicKind.TWIN_UPDATE_DELTA:
        delta = _DELTA_BODY.validate_json(payload)
        return TwinDelta(
            delta.get("event_id", ""),
            delta.get("timestamp", 0),
            {k: _twin_state(v) for k, v in delta.get("twin", {}).items()},
            dict(delta.get("delta", {})),
        )
    if kind is TopicKind.STATE_UPDATE_RESULT:
        state = _StateBody.model_validate_json(payload)
        return StateResult(
            state.event_id, state.timestamp, state.device.state, state.device.lastOnlineTime
        )
    if kind is TopicKind.MEMBERSHIP_GET_RESULT:
        members = _MembershipGetBody.model_validate_json(payload)
        return MembershipList(
            members.event_id,
            members.timestamp,
            tuple(_member(m) for m in members.devices or ()),
        )
    if kind is TopicKind.MEMBERSHIP_UPDATED:
        update = _MembershipUpdatedBody.model_validate_json(payload)
        return MembershipUpdate(
            update.event_id,
            update.timestamp,
            tuple(_member(m) for m in update.added_devices or ()),
            tuple(_member(m) for m in update.removed_devices or ()),
        )
    raise CodecError(f"no decoder for {kind.value}")


# -------------------------------------------------------------------- encoding


def encode_get(event_id: str, timestamp: int) -> bytes:
    """A ``twin/get`` or ``membership/get`` request."""
    return json.dumps({"event_id": event_id, "timestamp": timestamp}).encode()


def encode_desired_update(
    event_id: str, timestamp: int, values: Mapping[str, tuple[str, str]]
) -> bytes:
    """A ``twin/update`` that sets ``expected`` values: property → (value, twin type).

    The type only matters when EdgeCore creates the twin; an existing twin keeps its type.
    """
    twin: dict[str, Any] = {
        name: {"expected": {"value": value}, "metadata": {"type": twin_type}}
        for name, (value, twin_type) in values.items()
    }
    return json.dumps({"event_id": event_id, "timestamp": timestamp, "twin": twin}).encode()
