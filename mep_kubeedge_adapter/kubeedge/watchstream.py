"""One watch request of the kube source, made and read in a worker thread.

The client's ``Watch.stream`` makes its request inside the generator and gives the caller
nothing until the first event, so a caller cannot tell a watch the API server accepted from
one still waiting for its answer (a restarted server answers the first watches with 503 or
429). :class:`WatchStream` makes the request itself, with ``watch=True`` and
``_preload_content=False``: the client returns the response once its headers arrived with a
2xx status (any other status raises ``ApiException``, with the answer's headers, as for any
call), which is the moment the server accepted the watch. The body is then split into lines
by the client's own ``iter_resp_lines`` and each line decoded by :func:`decode_event` the way
``Watch`` decodes it.

Stopping from another thread (:meth:`WatchStream.stop`) shuts the response's socket, which
unblocks the read at once; a stop that lands before the response exists is noticed as soon
as the request returns.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

__all__ = ["WatchEvent", "WatchStream", "decode_event"]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch: its type, the object as sent, and the resourceVersion it
    carries (None when it carries none)."""

    type: str
    raw: Any
    resource_version: str | None


def decode_event(line: str) -> WatchEvent | None:
    """One line of a watch response; None for an empty line.

    An ``ERROR`` event (such as ``410 Gone`` for a resourceVersion too old) raises
    ``ApiException`` with the Status's code and ``"<reason>: <message>"``, as ``Watch`` does;
    a line that is not a watch event raises ``ValueError``.
    """
    if not line or line.isspace():
        return None
    event = json.loads(line)  # JSONDecodeError is a ValueError
    if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
        raise ValueError("a watch line without an event type")
    kind: str = event["type"]
    raw = event.get("object")
    if kind == "ERROR":
        status = raw if isinstance(raw, Mapping) else {}
        code = status.get("code")
        if not isinstance(code, int):
            raise ValueError("a watch ERROR event without a status code")
        raise client.ApiException(
            status=code, reason=f"{status.get('reason')}: {status.get('message')}"
        )
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return WatchEvent(kind, raw, rv if isinstance(rv, str) else None)


class WatchStream:
    """One watch request: :meth:`run` in a worker thread, :meth:`stop` from anywhere."""

    def __init__(self) -> None:
        self._stopped = False
        self._response: urllib3.BaseHTTPResponse | None = None

    def stop(self) -> None:
        """End the watch: its read returns at once if the response is open, else the
        request's answer is dropped as soon as it arrives."""
        self._stopped = True
        response = self._response
        if response is not None:
            _shut(response)

    def run(
        self,
        request: Callable[[], urllib3.BaseHTTPResponse],
        on_accepted: Callable[[], None],
        on_event: Callable[[WatchEvent], bool],
    ) -> str | None:
        """Make the watch request, then read it to its end (blocking).

        ``request`` makes the call (``watch=True, _preload_content=False``); ``on_accepted``
        runs once the server accepted it; ``on_event`` gets every event and returns False
        to stop reading. Returns the last resourceVersion seen in the events, if any.
        """
        response = request()
        self._response = response
        last_rv: str | None = None
        try:
            if self._stopped:
                return None
            on_accepted()
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                event = decode_event(line)
                if event is not None:
                    if event.resource_version is not None:
                        last_rv = event.resource_version
                    if not on_event(event):
                        break
                if self._stopped:
                    break
        finally:
            self._response = None
            response.close()
            response.release_conn()
        return last_rv


def _shut(response: urllib3.BaseHTTPResponse) -> None:
    """Shut the socket under ``response`` so that a thread blocked reading it returns."""
    connection: Any = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
