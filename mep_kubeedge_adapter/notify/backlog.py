"""A subscriber's pending notifications: ordered, bounded, coalescing under pressure.

Memory per subscriber is bounded whatever the subscriber does. Below
``coalesce_after`` pending notices nothing is touched, so a subscriber that keeps
up sees every change. From there on a new notice absorbs older pending ones with
the same key (one twin property of one device, or one device's state): the older
value disappears and its *previous* value moves into the newer notice, so the
subscriber still learns the value it last saw. A notice that loses all its content
is gone, leaving a visible ``sequence`` gap. If the backlog is still above
``max_pending`` the oldest notices are dropped.

Every operation is O(keys of the notice), amortised: coalescing finds older
notices through an index instead of scanning, and emptied slots are skipped and
compacted away in bulk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, replace

from mep_kubeedge_adapter.notify.render import Notice, coalesce_keys, merge

__all__ = ["Backlog", "PushResult"]


@dataclass(frozen=True, slots=True)
class PushResult:
    """How many older notices ``push`` coalesced away and how many it dropped."""

    coalesced: int = 0
    dropped: int = 0


class _Slot:
    __slots__ = ("notice",)

    def __init__(self, notice: Notice) -> None:
        self.notice: Notice | None = notice


class Backlog:
    """A FIFO of ``Notice`` with the bounds above. Not thread-safe; one event loop."""

    def __init__(self, *, coalesce_after: int, max_pending: int) -> None:
        if max_pending < 1 or coalesce_after < 0 or coalesce_after > max_pending:
            raise ValueError("need 0 <= coalesce_after <= max_pending and max_pending >= 1")
        self.coalesce_after = coalesce_after
        self.max_pending = max_pending
        self._slots: deque[_Slot] = deque()
        self._index: dict[Hashable, _Slot] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def push(self, notice: Notice) -> PushResult:
        coalesced = 0
        slot = _Slot(notice)
        keys = coalesce_keys(notice.change)
        if self._live >= self.coalesce_after:
            for key in keys:
                older = self._index.get(key)
                if older is None or older.notice is None:
                    continue
                assert slot.notice is not None
                left, newer = merge(older.notice.change, slot.notice.change, key)
                slot.notice = replace(slot.notice, change=newer)
                if left is None:
                    older.notice = None
                    self._live -= 1
                    coalesced += 1
                else:
                    older.notice = replace(older.notice, change=left)
        for key in keys:
            self._index[key] = slot
        self._slots.append(slot)
        self._live += 1
        dropped = 0
        while self._live > self.max_pending:
            self.pop()
            dropped += 1
        if len(self._slots) > 2 * self._live + 64:
            self._slots = deque(s for s in self._slots if s.notice is not None)
        return PushResult(coalesced, dropped)

    def pop(self) -> Notice | None:
        """The oldest pending notice, or None when empty."""
        while self._slots:
            slot = self._slots.popleft()
            notice = slot.notice
            if notice is None:
                continue
            self._live -= 1
            for key in coalesce_keys(notice.change):
                if self._index.get(key) is slot:
                    del self._index[key]
            return notice
        return None

    def drain(self) -> list[Notice]:
        """Take everything pending, oldest first."""
        taken: list[Notice] = []
        while (notice := self.pop()) is not None:
            taken.append(notice)
        return taken

    def extend(self, notices: list[Notice]) -> PushResult:
        """Push several notices in order; the results added up."""
        coalesced = dropped = 0
        for notice in notices:
            result = self.push(notice)
            coalesced += result.coalesced
            dropped += result.dropped
        return PushResult(coalesced, dropped)
