"""The bounded, coalescing backlog: order, bounds, and what coalescing keeps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mep_kubeedge_adapter.domain import Device, DeviceAdded, DeviceId, PropertyChange, TwinValue
from mep_kubeedge_adapter.notify.backlog import Backlog, PendingBudget
from mep_kubeedge_adapter.notify.render import (
    MembershipNotice,
    Notice,
    Selector,
    StateNotice,
    TwinNotice,
    select,
)

DEVICES = [DeviceId("default", f"d{i}") for i in range(3)]
PROPS = ["a", "b", "c"]


def twin(seq: int, device: DeviceId, **values: str) -> Notice:
    changes = {
        name: PropertyChange(
            reported=TwinValue(value, seq),
            previous_reported=TwinValue(f"before-{seq}", seq - 1),
            desired=None,
            previous_desired=None,
            reported_changed=True,
            desired_changed=False,
        )
        for name, value in values.items()
    }
    return Notice(seq, 0.0, TwinNotice(device, seq, changes))


def test_below_the_threshold_nothing_is_coalesced() -> None:
    backlog = Backlog(coalesce_after=10, max_pending=20)
    for seq in range(1, 6):
        assert backlog.push(twin(seq, DEVICES[0], a=str(seq))).coalesced == 0
    assert [n.sequence for n in backlog.drain()] == [1, 2, 3, 4, 5]


def test_coalescing_keeps_latest_value_at_its_position_with_oldest_previous() -> None:
    backlog = Backlog(coalesce_after=0, max_pending=10)
    backlog.push(twin(1, DEVICES[0], a="1", b="x"))
    backlog.push(twin(2, DEVICES[1], a="other"))
    result = backlog.push(twin(3, DEVICES[0], a="3"))
    assert result.coalesced == 0  # notice 1 still carries b
    result = backlog.push(twin(4, DEVICES[0], a="4", b="y"))
    assert result.coalesced == 2  # 1 (only b left) and 3 are absorbed
    notices = backlog.drain()
    assert [n.sequence for n in notices] == [2, 4]
    last = notices[1].change
    assert isinstance(last, TwinNotice)
    assert last.changes["a"].reported == TwinValue("4", 4)
    assert last.changes["a"].previous_reported == TwinValue("before-1", 0)
    assert last.changes["b"].previous_reported == TwinValue("before-1", 0)


def test_state_keeps_latest_per_device_and_membership_is_never_coalesced() -> None:
    backlog = Backlog(coalesce_after=0, max_pending=10)
    backlog.push(Notice(1, 0.0, StateNotice(DEVICES[0], 1, "online", "offline", None)))
    backlog.push(Notice(2, 0.0, StateNotice(DEVICES[0], 2, "offline", "online", None)))
    assert len(backlog) == 1
    notice = backlog.pop()
    assert notice is not None
    assert notice.change == StateNotice(DEVICES[0], 2, "offline", "offline", None)
    change = select(
        Selector("DeviceMembershipChangeSubscription"), DeviceAdded(Device(DEVICES[0]), 1), None
    )
    assert isinstance(change, MembershipNotice)
    for seq in range(3):
        backlog.push(Notice(seq, 0.0, change))
    assert len(backlog) == 3


def test_hard_bound_drops_the_oldest() -> None:
    backlog = Backlog(coalesce_after=2, max_pending=3)
    dropped = 0
    for seq in range(1, 11):
        dropped += backlog.push(twin(seq, DEVICES[seq % 3], **{PROPS[seq % 2]: "v"})).dropped
        assert len(backlog) <= 3
    assert dropped > 0
    sequences = [n.sequence for n in backlog.drain()]
    assert sequences == sorted(sequences)
    assert sequences[-1] == 10


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="coalesce_after"):
        Backlog(coalesce_after=5, max_pending=4)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.sampled_from(range(len(DEVICES))),
            st.sets(st.sampled_from(PROPS), min_size=1),
        ),
        st.tuples(st.just("pop"), st.just(0), st.just(frozenset[str]())),
    ),
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(ops=operations, coalesce_after=st.integers(0, 6), extra=st.integers(0, 6))
def test_bounds_order_and_latest_values_hold(
    ops: list[tuple[str, int, frozenset[str] | set[str]]], coalesce_after: int, extra: int
) -> None:
    max_pending = max(1, coalesce_after + extra)
    backlog = Backlog(coalesce_after=coalesce_after, max_pending=max_pending)
    seq = 0
    popped: list[int] = []
    latest: dict[tuple[DeviceId, str], str] = {}
    dropped = 0
    for op, device_index, props in ops:
        if op == "push":
            seq += 1
            device = DEVICES[device_index]
            values = {p: f"{p}{seq}" for p in props}
            dropped += backlog.push(twin(seq, device, **values)).dropped
            for p in props:
                latest[(device, p)] = f"{p}{seq}"
        else:
            notice = backlog.pop()
            if notice is not None:
                popped.append(notice.sequence)
                assert isinstance(notice.change, TwinNotice)
                for p, change in notice.change.changes.items():
                    assert change.reported is not None
                    if latest.get((notice.change.device, p)) == change.reported.value:
                        del latest[(notice.change.device, p)]
        assert len(backlog) <= max_pending
    rest = backlog.drain()
    popped.extend(n.sequence for n in rest)
    assert popped == sorted(popped)
    assert len(set(popped)) == len(popped)
    if dropped == 0:
        # Coalescing never loses the latest value of any key.
        found = {
            (n.change.device, p): c.reported.value
            for n in rest
            if isinstance(n.change, TwinNotice)
            for p, c in n.change.changes.items()
            if c.reported is not None
        }
        for key, value in latest.items():
            assert found.get(key) == value


# ------------------------------------------------------------ the shared budget


def membership(seq: int, enqueued: float = 0.0) -> Notice:
    device = Device(DeviceId("flood", f"d{seq}"))
    return Notice(seq, enqueued, MembershipNotice(device, seq, "ADDED"))


def test_the_budget_counts_every_backlog_and_stops_growth_past_it() -> None:
    budget = PendingBudget(10)
    hog = Backlog(coalesce_after=1000, max_pending=1000, budget=budget)
    for seq in range(1, 31):
        hog.push(membership(seq))
    # Alone it may hold the whole budget, and not more.
    assert len(hog) == budget.used == 10
    assert [n.sequence for n in hog.drain()][:1] == [21]
    assert budget.used == 0


def test_an_exhausted_budget_is_shared_fairly_and_bounded_by_twice_its_limit() -> None:
    budget = PendingBudget(100)
    hog = Backlog(coalesce_after=1000, max_pending=1000, budget=budget)
    for seq in range(1, 501):
        hog.push(membership(seq))
    assert len(hog) == 100
    others = [Backlog(coalesce_after=1000, max_pending=1000, budget=budget) for _ in range(9)]
    dropped = 0
    for seq in range(1, 501):
        for other in others:
            dropped += other.push(membership(seq)).dropped
        dropped += hog.push(membership(seq)).dropped
        assert budget.used < 2 * budget.limit
    # Ten active backlogs share the budget: the hog was cut down to its share.
    assert [len(o) for o in others] == [10] * 9
    assert len(hog) == 10
    assert budget.used == sum(len(b) for b in [hog, *others]) == 100
    assert dropped == 9 * 500 + 500  # every push of the loop, against a full budget


def test_a_backlog_that_keeps_up_loses_nothing_while_the_budget_is_exhausted() -> None:
    budget = PendingBudget(50)
    hog = Backlog(coalesce_after=1000, max_pending=1000, budget=budget)
    for seq in range(1, 101):
        hog.push(membership(seq))
    prompt = Backlog(coalesce_after=1000, max_pending=1000, budget=budget)
    for seq in range(1, 101):
        assert prompt.push(membership(seq)).dropped == 0
        assert prompt.pop() is not None


def test_notices_older_than_a_cutoff_are_removed_from_the_front() -> None:
    budget = PendingBudget(100)
    backlog = Backlog(coalesce_after=100, max_pending=100, budget=budget)
    for seq in range(1, 7):
        backlog.push(membership(seq, enqueued=float(seq)))
    assert backlog.drop_older_than(3.5) == 3
    assert [n.sequence for n in backlog.drain()] == [4, 5, 6]
    assert backlog.drop_older_than(100.0) == 0
    assert budget.used == 0
