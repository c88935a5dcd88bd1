"""The supervisor: restarts with backoff that starts over after a healthy run, loops that
return are logged, critical tasks stop the service; ``cancel_and_wait`` ends tasks even
when one cancellation is lost, and swallows nothing.

The restart tests run on virtual time (``tests.helpers.virtual_time``): delays of seconds pass at once, and
the gaps between restarts are exact."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from structlog.testing import capture_logs

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.supervisor import Supervisor, TaskReturned, cancel_and_wait
from tests.helpers import virtual_time


async def _loses_one_cancellation(started: asyncio.Event, lost: asyncio.Event) -> None:
    """Runs on after its first cancellation, as a loop does when Python 3.11's ``wait_for``
    hands it a reply that arrived together with the cancellation."""
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        lost.set()
    while True:
        await asyncio.Event().wait()


async def test_a_task_that_loses_a_cancellation_still_ends() -> None:
    started, lost = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_loses_one_cancellation(started, lost))
    await started.wait()
    async with asyncio.timeout(10):
        await cancel_and_wait(task)
    assert lost.is_set()
    assert task.cancelled()


async def test_the_callers_cancellation_is_not_taken_for_the_tasks() -> None:
    started, lost = asyncio.Event(), asyncio.Event()
    stubborn = asyncio.create_task(_loses_one_cancellation(started, lost))
    await started.wait()

    async def stopper() -> None:
        await cancel_and_wait(stubborn)

    caller = asyncio.create_task(stopper())
    await lost.wait()  # the caller is now waiting for the retry
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await cancel_and_wait(stubborn)
    assert stubborn.cancelled()


async def test_what_ended_the_task_is_raised() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)
    await cancel_and_wait(None)


# ------------------------------------------------------------------ restarts (virtual time)


class _Ceiling(random.Random):
    """Jitter that always picks the ceiling, so the delays are 1, 2, 4... seconds."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _supervisor(restarted: list[str] | None = None) -> Supervisor:
    return Supervisor(
        backoff=lambda: Backoff(base=1.0, cap=64.0, rng=_Ceiling()),
        on_restart=None if restarted is None else restarted.append,
    )


async def test_a_crashing_task_is_restarted_with_growing_delays() -> None:
    with virtual_time():
        loop = asyncio.get_running_loop()
        starts: list[float] = []
        restarted: list[str] = []
        fourth = asyncio.Event()

        async def crashes() -> None:
            starts.append(loop.time())
            if len(starts) == 4:
                fourth.set()
                await asyncio.Event().wait()
            raise RuntimeError("bug")

        supervisor = _supervisor(restarted)
        with capture_logs() as logs:
            supervisor.start("flaky", crashes)
            await fourth.wait()
        await supervisor.stop()
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert gaps == [1.0, 2.0, 4.0]
        assert restarted == ["flaky"] * 3
        crashed = [e for e in logs if e["event"] == "task_crashed_restarting"]
        assert [(e["task"], e["restarts"], e["delay"]) for e in crashed] == [
            ("flaky", 1, 1.0),
            ("flaky", 2, 2.0),
            ("flaky", 3, 4.0),
        ]
        assert all(isinstance(e["exc_info"], RuntimeError) for e in crashed)


async def test_the_backoff_starts_over_after_a_healthy_run() -> None:
    with virtual_time():
        loop = asyncio.get_running_loop()
        starts: list[float] = []
        done = asyncio.Event()

        async def crashes_then_runs_a_while() -> None:
            starts.append(loop.time())
            if len(starts) == 4:
                await asyncio.sleep(61)  # healthy: longer than healthy_after
            if len(starts) == 6:
                done.set()
                await asyncio.Event().wait()
            raise RuntimeError("bug")

        supervisor = _supervisor()
        with capture_logs():
            supervisor.start("flaky", crashes_then_runs_a_while, healthy_after=60)
            await done.wait()
        await supervisor.stop()
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        # Without the reset the fifth start would wait 8 s after the healthy run, not 1 s.
        assert gaps == [1.0, 2.0, 4.0, 61.0 + 1.0, 2.0]


async def test_a_loop_that_returns_is_logged_and_restarted() -> None:
    with virtual_time():
        runs = 0
        second = asyncio.Event()

        async def returns() -> None:
            nonlocal runs
            runs += 1
            if runs == 2:
                second.set()
                await asyncio.Event().wait()

        supervisor = _supervisor()
        with capture_logs() as logs:
            supervisor.start("quitter", returns)
            await second.wait()
        await supervisor.stop()
        assert [(e["event"], e["log_level"], e["task"]) for e in logs] == [
            ("task_returned_restarting", "error", "quitter")
        ]
        assert supervisor.failure is None


@pytest.mark.parametrize("ends", ["raises", "returns"])
async def test_a_critical_task_that_ends_fails_the_supervisor(ends: str) -> None:
    with virtual_time():

        async def critical() -> None:
            await asyncio.sleep(5)
            if ends == "raises":
                raise RuntimeError("bug")

        supervisor = _supervisor()
        with capture_logs() as logs:
            supervisor.start("vital", critical, critical=True)
            await supervisor.failed.wait()
        assert supervisor.restarts() == {"vital": 0}
        assert [(e["event"], e["task"]) for e in logs] == [("task_failed", "vital")]
        expected = RuntimeError if ends == "raises" else TaskReturned
        assert isinstance(supervisor.failure, expected)
        await supervisor.stop()


async def test_a_loop_that_was_asked_to_stop_may_return() -> None:
    with virtual_time():
        stop = asyncio.Event()

        async def stops_when_asked() -> None:
            await stop.wait()

        supervisor = _supervisor()
        with capture_logs() as logs:
            supervisor.start("polite", stops_when_asked, may_end=stop.is_set)
            stop.set()
            await asyncio.sleep(1)
        assert supervisor.names() == []
        assert supervisor.restarts() == {"polite": 0}
        assert [(e["event"], e["task"]) for e in logs] == [("task_ended", "polite")]
        await supervisor.stop()
