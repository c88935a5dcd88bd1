"""The log throttle that keeps floods of bad input from flooding the log."""

from __future__ import annotations

from mep_kubeedge_adapter.observability import LogThrottle


def test_one_line_per_interval_standing_for_every_occurrence() -> None:
    now = [100.0]
    throttle = LogThrottle(interval=10.0, clock=lambda: now[0])
    assert throttle.note() == 1  # the first is logged at once
    assert [throttle.note(5) for _ in range(3)] == [0, 0, 0]
    now[0] += 9.9
    assert throttle.note() == 0
    now[0] += 0.1
    assert throttle.note(2) == 18  # everything since the last line
    assert throttle.note() == 0
