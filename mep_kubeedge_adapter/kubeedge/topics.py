"""EdgeCore EventBus topics: what the adapter subscribes to, parses and publishes.

Device topics carry the device id between ``$hw/events/device/`` and a fixed
suffix. Since KubeEdge v1.16.2/v1.17 the id is ``<namespace>/<name>`` (two levels);
before it was ``<name>`` (one level). The suffix is matched first and the id is
whatever sits between, so both layouts parse. ``#`` and ``+/...`` filters never
match ``$`` topics, so every subscription names ``$hw/...`` explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Literal

TopicLayout = Literal["auto", "namespaced", "legacy"]

DEVICE_PREFIX = "$hw/events/device/"
NODE_PREFIX = "$hw/events/node/"


class TopicKind(Enum):
    TWIN_UPDATE_RESULT = "twin/update/result"
    TWIN_UPDATE_DOCUMENT = "twin/update/document"
    TWIN_UPDATE_DELTA = "twin/update/delta"
    TWIN_GET_RESULT = "twin/get/result"
    STATE_UPDATE_RESULT = "state/update/result"
    MEMBERSHIP_GET_RESULT = "membership/get/result"
    MEMBERSHIP_UPDATED = "membership/updated"


_DEVICE_SUFFIXES = {
    "/" + kind.value: kind
    for kind in (
        TopicKind.TWIN_UPDATE_RESULT,
        TopicKind.TWIN_UPDATE_DOCUMENT,
        TopicKind.TWIN_UPDATE_DELTA,
        TopicKind.TWIN_GET_RESULT,
        TopicKind.STATE_UPDATE_RESULT,
    )
}
_NODE_SUFFIXES = {
    "/" + kind.value: kind
    for kind in (TopicKind.MEMBERSHIP_GET_RESULT, TopicKind.MEMBERSHIP_UPDATED)
}


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    kind: TopicKind
    topic_id: str
    """Device id as it appears in the topic (``ns/name``, ``name`` or ``""``), or node name."""

    @property
    def namespaced(self) -> bool:
        return "/" in self.topic_id


@lru_cache(maxsize=4096)
def parse_topic(topic: str) -> ParsedTopic | None:
    """What a topic EdgeCore publishes on means, or ``None`` for a topic we don't consume.

    Cached: a node's devices publish on a small, fixed set of topics.
    """
    if topic.startswith(DEVICE_PREFIX):
        rest = topic[len(DEVICE_PREFIX) :]
        # Every device suffix has three levels: look the last three up.
        cut = _cut(rest, 3)
        if cut < 0:
            return None
        kind = _DEVICE_SUFFIXES.get(rest[cut:])
        if kind is None:
            return None
        topic_id = rest[:cut]
        if topic_id.count("/") > 1:
            return None
        return ParsedTopic(kind, topic_id)
    if topic.startswith(NODE_PREFIX):
        rest = topic[len(NODE_PREFIX) :]
        for levels in (3, 2):
            cut = _cut(rest, levels)
            kind = _NODE_SUFFIXES.get(rest[cut:]) if cut >= 0 else None
            if kind is not None:
                node = rest[:cut]
                if not node or "/" in node:
                    return None
                return ParsedTopic(kind, node)
    return None


def _cut(rest: str, levels: int) -> int:
    """Index of the ``/`` before the last ``levels`` levels of ``rest``, or -1."""
    cut = len(rest)
    for _ in range(levels):
        cut = rest.rfind("/", 0, cut)
        if cut < 0:
            return -1
    return cut


def subscriptions(layout: TopicLayout) -> list[str]:
    """Topic filters for everything the adapter consumes in this layout.

    Node topics use ``+``: EdgeCore answers ``membership/get`` on its own node name,
    which may differ from the name this adapter was given.
    """
    filters = [
        NODE_PREFIX + "+/membership/get/result",
        NODE_PREFIX + "+/membership/updated",
    ]
    device_suffixes = ["twin/update/+", "twin/get/result", "state/update/result"]
    if layout in ("namespaced", "auto"):
        filters += [DEVICE_PREFIX + "+/+/" + s for s in device_suffixes]
    if layout == "namespaced":
        # Errors for unparsable updates come on the empty-id topic; in the other
        # layouts the single-level filters match it already (a second filter would
        # make the broker deliver it twice).
        filters.append(DEVICE_PREFIX + "/twin/update/result")
    if layout in ("legacy", "auto"):
        filters += [DEVICE_PREFIX + "+/" + s for s in device_suffixes]
    return list(dict.fromkeys(filters))


def twin_update_topic(topic_id: str) -> str:
    return f"{DEVICE_PREFIX}{topic_id}/twin/update"


def twin_get_topic(topic_id: str) -> str:
    return f"{DEVICE_PREFIX}{topic_id}/twin/get"


def state_update_topic(topic_id: str) -> str:
    return f"{DEVICE_PREFIX}{topic_id}/state/update"


def membership_get_topic(node: str) -> str:
    return f"{NODE_PREFIX}{node}/membership/get"
