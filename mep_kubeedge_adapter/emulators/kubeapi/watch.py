"""Watch streams: replay from a resourceVersion, live events, bookmarks, 410, timeouts.

A watch is registered with :class:`Watches` before anything is awaited, so no change can fall
between the replay and the live stream. Events go out as chunked JSON lines
``{"type": …, "object": …}``; a bookmark goes out only while no event is queued, so it never
carries a resourceVersion ahead of an event the client has not seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from .errors import expired
from .selectors import Filter
from .storage import Store, WatchEvent

__all__ = ["DROP_ABRUPT", "DROP_CLEAN", "Watches", "stream_watch"]

DROP_ABRUPT: Final = "drop-abrupt"
DROP_CLEAN: Final = "drop-clean"

Render = Callable[[Mapping[str, Any]], dict[str, Any]]
"""Turns a stored object into what this watch's API version shows."""


@dataclass(eq=False)
class Watch:
    filter: Filter
    group_version: str
    queue: asyncio.Queue[WatchEvent | str] = field(default_factory=asyncio.Queue)


class Watches:
    """The open watches: fed from the store, counted, and ended on demand."""

    def __init__(self, store: Store) -> None:
        self._open: set[Watch] = set()
        self._changed = asyncio.Event()
        store.listen(self._dispatch)

    def _dispatch(self, event: WatchEvent) -> None:
        for w in self._open:
            if w.filter.matches(event.key, event.obj):
                w.queue.put_nowait(event)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Any:
        return iter(list(self._open))

    def add(self, watch: Watch) -> None:
        self._open.add(watch)
        self._changed.set()

    def discard(self, watch: Watch) -> None:
        self._open.discard(watch)
        self._changed.set()

    async def wait_for(self, count: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self._open) < count:
                self._changed.clear()
                await self._changed.wait()

    def drop(self, *, abrupt: bool, where: Callable[[Watch], bool] = lambda _w: True) -> None:
        for w in list(self._open):
            if where(w):
                w.queue.put_nowait(DROP_ABRUPT if abrupt else DROP_CLEAN)


async def stream_watch(
    request: web.Request,
    *,
    store: Store,
    watches: Watches,
    flt: Filter,
    group_version: str,
    render: Render,
    resource_version: int,
    bookmarks: bool,
    bookmark_interval: float,
    timeout: float,
) -> web.StreamResponse:
    """Serve one watch request (see the module docstring)."""
    initial: list[dict[str, Any]] = []
    error: dict[str, Any] | None = None
    if resource_version == 0:
        initial = [
            {"type": "ADDED", "object": render(o)}
            for _, o in store.select(flt.rtype, flt.namespace)
            if flt.matches(flt.rtype.key, o)
        ]
    elif resource_version < store.compacted_rv:
        error = {
            "type": "ERROR",
            "object": expired(resource_version, store.compacted_rv + 1).body(),
        }
    else:
        initial = [
            {"type": e.type, "object": render(e.obj)}
            for e in store.history
            if e.rv > resource_version and flt.matches(e.key, e.obj)
        ]
    watch = Watch(flt, group_version)
    if error is None:
        watches.add(watch)

    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache"}
    )
    response.enable_chunked_encoding()
    try:
        await response.prepare(request)
        if error is not None:
            await _send(response, error)
            await response.write_eof()
            return response
        for event in initial:
            await _send(response, event)
        end = await _stream(response, watch, store, render, bookmarks, bookmark_interval, timeout)
        if end == DROP_ABRUPT:
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        watches.discard(watch)
    return response


async def _stream(
    response: web.StreamResponse,
    watch: Watch,
    store: Store,
    render: Render,
    bookmarks: bool,
    bookmark_interval: float,
    duration: float,
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    next_bookmark = loop.time() + bookmark_interval
    while True:
        # Queued events go out before anything else: a bookmark carries the latest
        # resourceVersion, so it may only follow every event this watch was handed.
        if watch.queue.empty():
            now = loop.time()
            if now >= deadline:
                if bookmarks:
                    await _send(response, _bookmark(watch, store))
                return "timeout"
            if bookmarks and now >= next_bookmark:
                await _send(response, _bookmark(watch, store))
                next_bookmark = loop.time() + bookmark_interval
                continue
            wake = min(deadline, next_bookmark) if bookmarks else deadline
            try:
                async with asyncio.timeout(wake - now):
                    item = await watch.queue.get()
            except TimeoutError:
                continue
        else:
            item = watch.queue.get_nowait()
        if isinstance(item, str):
            return item
        await _send(response, {"type": item.type, "object": render(item.obj)})


def _bookmark(watch: Watch, store: Store) -> dict[str, Any]:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": watch.filter.rtype.kind,
            "apiVersion": watch.group_version,
            "metadata": {"resourceVersion": str(store.rv), "creationTimestamp": None},
        },
    }


async def _send(response: web.StreamResponse, event: Mapping[str, Any]) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
