"""``cancel_and_wait``: tasks end even when one cancellation is lost, and nothing is swallowed."""

from __future__ import annotations

import asyncio

import pytest

from mep_kubeedge_adapter.supervisor import cancel_and_wait


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
