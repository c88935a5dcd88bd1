"""Named long-running tasks under one owner.

Every loop of the service (EventBus connection, kube watches, MP1 registration,
notification delivery...) runs as a named task here. A task that crashes is logged
with its name and restarted with backoff; a task marked ``critical`` that crashes
stops the whole service on purpose instead. Nothing is swallowed silently.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class _Entry:
    name: str
    factory: TaskFactory
    critical: bool
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    backoff: Backoff = field(default_factory=Backoff)


class Supervisor:
    """Owns named tasks; ``stop()`` cancels them in reverse start order."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._failed = asyncio.Event()
        self.failure: BaseException | None = None

    def start(self, name: str, factory: TaskFactory, *, critical: bool = False) -> None:
        """Run ``factory()`` as task ``name``, restarting it with backoff if it crashes."""
        entry = _Entry(name, factory, critical)
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
        while True:
            try:
                await entry.factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if entry.critical:
                    log.error("task_failed", task=entry.name, exc_info=exc)
                    self.failure = exc
                    self._failed.set()
                    return
                entry.restarts += 1
                delay = entry.backoff.next_delay()
                log.warning(
                    "task_crashed_restarting",
                    task=entry.name,
                    restarts=entry.restarts,
                    delay=round(delay, 3),
                    exc_info=exc,
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
