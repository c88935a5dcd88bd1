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

Across subscribers, every backlog draws on one ``PendingBudget``
(``MKA_NOTIFY__MAX_PENDING_TOTAL``). While it is exhausted, every backlog coalesces, and a
backlog holding more than its fair share (the limit divided among the backlogs that hold
anything) drops its oldest notices until the budget is met or it is down to its share. A
subscriber that keeps up never holds more than its share and loses nothing; one that
does not (a dead callback, a websocket that never attaches) is cut down to its share.
Together the backlogs never hold twice the limit: those at or above their share do not
grow, the others only up to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, replace

from mep_kubeedge_adapter.notify.render import Notice, coalesce_keys, merge

__all__ = ["Backlog", "PendingBudget", "PushResult"]


@dataclass(frozen=True, slots=True)
class PushResult:
    """How many older notices ``push`` coalesced away and how many it dropped."""

    coalesced: int = 0
    dropped: int = 0


class PendingBudget:
    """The pending notices of every backlog together, against one limit."""

    __slots__ = ("active", "limit", "used")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the pending budget needs a limit of at least 1")
        self.limit = limit
        self.used = 0
        self.active = 0
        """Backlogs holding at least one notice."""

    @property
    def exhausted(self) -> bool:
        return self.used >= self.limit

    def share(self) -> int:
        """What one active backlog may hold while the budget is exhausted."""
        return max(1, self.limit // max(1, self.active))


class _Slot:
    __slots__ = ("notice",)

    def __init__(self, notice: Notice) -> None:
        self.notice: Notice | None = notice


class Backlog:
    """A FIFO of ``Notice`` with the bounds above. Not thread-safe; one event loop."""

    def __init__(
        self, *, coalesce_after: int, max_pending: int, budget: PendingBudget | None = None
    ) -> None:
        if max_pending < 1 or coalesce_after < 0 or coalesce_after > max_pending:
            raise ValueError("need 0 <= coalesce_after <= max_pending and max_pending >= 1")
        self.coalesce_after = coalesce_after
        self.max_pending = max_pending
        self._budget = budget
        self._slots: deque[_Slot] = deque()
        self._index: dict[Hashable, _Slot] = {}
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def _grew(self) -> None:
        self._live += 1
        budget = self._budget
        if budget is not None:
            budget.used += 1
            if self._live == 1:
                budget.active += 1

    def _shrank(self) -> None:
        self._live -= 1
        budget = self._budget
        if budget is not None:
            budget.used -= 1
            if self._live == 0:
                budget.active -= 1

    def push(self, notice: Notice) -> PushResult:
        coalesced = 0
        slot = _Slot(notice)
        keys = coalesce_keys(notice.change)
        budget = self._budget
        if self._live >= self.coalesce_after or (budget is not None and budget.exhausted):
            for key in keys:
                older = self._index.get(key)
                if older is None or older.notice is None:
                    continue
                assert slot.notice is not None
                left, newer = merge(older.notice.change, slot.notice.change, key)
                slot.notice = replace(slot.notice, change=newer)
                if left is None:
                    older.notice = None
                    self._shrank()
                    coalesced += 1
                else:
                    older.notice = replace(older.notice, change=left)
        for key in keys:
            self._index[key] = slot
        self._slots.append(slot)
        self._grew()
        dropped = 0
        while self._live > self.max_pending:
            self.pop()
            dropped += 1
        if budget is not None:
            while budget.used > budget.limit and self._live > budget.share():
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
            self._shrank()
            for key in coalesce_keys(notice.change):
                if self._index.get(key) is slot:
                    del self._index[key]
            return notice
        return None

    def take(self, limit: int) -> list[Notice]:
        """Up to ``limit`` of the oldest pending notices, oldest first."""
        taken: list[Notice] = []
        while len(taken) < limit and (notice := self.pop()) is not None:
            taken.append(notice)
        return taken

    def drop_older_than(self, cutoff: float) -> int:
        """Remove the notices queued before ``cutoff`` (monotonic seconds); how many."""
        dropped = 0
        while self._slots:
            head = self._slots[0]
            if head.notice is None:
                self._slots.popleft()
                continue
            if head.notice.enqueued >= cutoff:
                break
            self.pop()
            dropped += 1
        return dropped

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
