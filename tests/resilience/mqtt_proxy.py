"""A TCP proxy in front of mosquitto that can make a session go deaf.

Some EdgeCore/mosquitto sessions were seen connected and answering pings, yet delivering
no message at all for minutes. ``MqttProxy.deafen()`` reproduces that on the connections
open at the time: from then on the broker's PUBLISH packets to the client are swallowed,
every other packet (CONNACK, SUBACK, PUBACK, PINGRESP...) still passes, and the client's
own packets still reach the broker. A connection made afterwards is healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

PUBLISH = 3


@dataclass(eq=False)
class _Session:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    deaf: bool = False
    swallowed: int = 0


class MqttProxy:
    """``async with MqttProxy(broker_host, broker_port) as proxy``: listen on ``proxy.port``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._sessions: list[_Session] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.connected = asyncio.Event()
        """Set at every new client connection (cleared by whoever waits for the next)."""

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def swallowed(self) -> int:
        """PUBLISH packets kept from clients so far."""
        return sum(s.swallowed for s in self._sessions)

    async def __aenter__(self) -> MqttProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in self._sessions:
            for writer in session.writers:
                writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def deafen(self) -> None:
        """From now on, the open connections get no PUBLISH from the broker."""
        for session in self._sessions:
            session.deaf = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.close()
            return
        session.writers = [writer, up_writer]
        self._sessions.append(session)
        self.connections += 1
        self.connected.set()
        pumps = [
            asyncio.create_task(self._copy(reader, up_writer)),
            asyncio.create_task(self._to_client(up_reader, writer, session)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for end in session.writers:
                end.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    @staticmethod
    async def _to_client(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: _Session
    ) -> None:
        """Forward whole packets (type byte, remaining length, body), minus PUBLISH when deaf."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(1)
                length_bytes = b""
                length, multiplier = 0, 1
                while True:
                    byte = await reader.readexactly(1)
                    length_bytes += byte
                    length += (byte[0] & 0x7F) * multiplier
                    multiplier *= 128
                    if not byte[0] & 0x80:
                        break
                body = await reader.readexactly(length)
                if session.deaf and head[0] >> 4 == PUBLISH:
                    session.swallowed += 1
                    continue
                writer.write(head + length_bytes + body)
                await writer.drain()
