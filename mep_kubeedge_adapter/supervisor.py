"""Named long-running tasks under one owner.

Every loop of the service (EventBus connection, kube watches, MP1 registration,
subscription expiry, the store's sequence flusher) runs as a named task here. A task that
crashes or returns is logged with its name and restarted with backoff (which starts over
after a healthy run); a task marked ``critical`` stops the whole service on purpose
instead. Nothing is swallowed silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from mep_kubeedge_adapter.backoff import Backoff

log = structlog.get_logger(__name__)

TaskFactory = Callable[[], Awaitable[None]]

CANCEL_RETRY: float = 0.5
"""Seconds between repeated cancellations of a task that runs on (see ``cancel_and_wait``)."""


def being_cancelled() -> bool:
    """Whether the current task has a cancellation pending or in progress.

    A reconnect loop that catches a client error must check this first: aiomqtt raises an
    MqttError from its exit when the connection breaks during the disconnect a cancellation
    started, and resuming the loop would swallow the stop.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; re-raise what ended it, unless cancelled.

    The cancellation is repeated while the task runs on: on Python 3.11 ``asyncio.wait_for``
    returns a result that arrives together with a cancellation and drops the cancellation
    (MQTT and HTTP clients wait for replies that way), so one ``cancel()`` may not end a
    loop. A cancellation of the caller itself propagates; it is never taken for the task's.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY)
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc


HEALTHY_RUN: float = 60.0
"""Seconds a task must have run before it ends for its restart backoff to start over."""

RestartHook = Callable[[str], None]


class TaskReturned(Exception):
    """A supervised loop returned although it should run until cancelled."""


@dataclass(slots=True)
class _Entry:
    name: str
    factory: TaskFactory
    critical: bool
    healthy_after: float
    backoff: Backoff
    may_end: Callable[[], bool] | None
    restarts: int = 0
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Owns named tasks; ``stop()`` cancels them in reverse start order.

    Every task is a loop meant to run until it is cancelled: one that raises *or returns*
    is logged with its name and restarted after a backoff delay, or, if ``critical``,
    sets :attr:`failed` so the service stops on purpose. A task that ran for at least
    ``healthy_after`` seconds before it ended starts its backoff over, so a loop that fails
    once a day is restarted at once rather than after the delay of its last bad streak.
    """

    def __init__(
        self,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        on_restart: RestartHook | None = None,
    ) -> None:
        self._entries: list[_Entry] = []
        self._failed = asyncio.Event()
        self._backoff = backoff
        self._on_restart = on_restart
        self.failure: BaseException | None = None

    def start(
        self,
        name: str,
        factory: TaskFactory,
        *,
        critical: bool = False,
        healthy_after: float = HEALTHY_RUN,
        may_end: Callable[[], bool] | None = None,
    ) -> None:
        """Run ``factory()`` as task ``name``, restarting it with backoff when it ends.

        ``may_end`` says when a return is the loop's orderly end (it was asked to stop)
        rather than a fault.
        """
        entry = _Entry(name, factory, critical, healthy_after, self._backoff(), may_end)
        self._entries.append(entry)
        entry.task = asyncio.create_task(self._run(entry), name=name)

    @property
    def failed(self) -> asyncio.Event:
        """Set when a critical task crashed; the service should shut down."""
        return self._failed

    def restarts(self) -> dict[str, int]:
        return {e.name: e.restarts for e in self._entries}

    def names(self) -> list[str]:
        return [e.name for e in self._entries if e.task is not None and not e.task.done()]

    async def _run(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await entry.factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem: Exception = exc
            else:
                if entry.may_end is not None and entry.may_end():
                    log.info("task_ended", task=entry.name)
                    return
                problem = TaskReturned(f"task {entry.name} returned")
            if loop.time() - started >= entry.healthy_after:
                entry.backoff.reset()
            if entry.critical:
                log.error("task_failed", task=entry.name, exc_info=problem)
                self.failure = problem
                self._failed.set()
                return
            entry.restarts += 1
            if self._on_restart is not None:
                self._on_restart(entry.name)
            delay = entry.backoff.next_delay()
            if isinstance(problem, TaskReturned):
                log.error(
                    "task_returned_restarting",
                    task=entry.name,
                    restarts=entry.restarts,
                    delay=round(delay, 3),
                )
            else:
                log.warning(
                    "task_crashed_restarting",
                    task=entry.name,
                    restarts=entry.restarts,
                    delay=round(delay, 3),
                    exc_info=problem,
                )
            await asyncio.sleep(delay)

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, last started first, each within ``timeout`` seconds."""
        for entry in reversed(self._entries):
            task = entry.task
            if task is None or task.done():
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout)
        self._entries.clear()
