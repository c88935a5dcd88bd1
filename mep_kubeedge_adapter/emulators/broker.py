"""A private mosquitto broker on a free loopback port, for the demo and the tests.

No embeddable Python broker carries KubeEdge's `$hw/...` topics, so the demo and every MQTT test
run a real mosquitto (the broker KubeEdge deploys on edge nodes). `MosquittoBroker` writes its
own config file into a temporary directory, listens on 127.0.0.1 only, keeps no persistence and
can be stopped and started again on the *same* port, so tests can take the broker away from
connected clients mid-stream and bring it back.

    async with MosquittoBroker() as broker:
        ...  # connect to broker.host / broker.port, or broker.url
        await broker.stop()
        await broker.start()  # same port again

If mosquitto is not installed, `MosquittoNotFoundError` says what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BrokerStartError", "MosquittoBroker", "MosquittoNotFoundError", "find_mosquitto"]

_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_STARTUP_DEADLINE_S = 10.0
_STOP_DEADLINE_S = 5.0
_POLL_INTERVAL_S = 0.02


class MosquittoNotFoundError(RuntimeError):
    """The mosquitto binary is neither on PATH nor in the usual sbin directories."""


class BrokerStartError(RuntimeError):
    """mosquitto exited or did not accept connections before the startup deadline."""


def find_mosquitto() -> str:
    """Return the path of the mosquitto binary, or raise `MosquittoNotFoundError`."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise MosquittoNotFoundError(
        "mosquitto is not installed (looked on PATH and in /usr/sbin); "
        "install it with: apt-get install -y mosquitto"
    )


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MosquittoBroker:
    """A mosquitto child process bound to 127.0.0.1 on a port chosen once, at first start.

    `port=None` picks a free port (probe on port 0, then let mosquitto bind it); the port is
    then kept for every later `start()`. The config allows anonymous clients, keeps nothing on
    disk, disables Nagle (`set_tcp_nodelay`) and queues generously so a slow test subscriber
    does not silently lose QoS 1 messages. The broker log goes to `log_path`, not to stdout.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        *,
        max_queued_messages: int = 100_000,
        startup_deadline: float = _STARTUP_DEADLINE_S,
    ) -> None:
        self._binary = find_mosquitto()
        self._requested_port = port
        self._port: int | None = port
        self._max_queued_messages = max_queued_messages
        self._startup_deadline = startup_deadline
        self._workdir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def port(self) -> int:
        """The TCP port; only known once the broker was started."""
        if self._port is None:
            raise RuntimeError("the broker has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """`mqtt://127.0.0.1:<port>`, the form the adapter's settings take."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def log_path(self) -> Path:
        """mosquitto's own log file (useful when a test fails)."""
        return self._ensure_workdir() / "mosquitto.log"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    async def start(self) -> None:
        """Start mosquitto (again) and return once it accepts TCP connections.

        The first start picks the port; restarts reuse it. If a freshly probed port was taken by
        someone else in the meantime, another one is tried (only before the first success).
        """
        if self.running:
            return
        attempts = 3 if self._requested_port is None and self._process is None else 1
        for attempt in range(attempts):
            if self._port is None or (attempt > 0 and self._requested_port is None):
                self._port = _free_loopback_port()
            try:
                await self._spawn_and_wait()
                return
            except BrokerStartError:
                if attempt == attempts - 1:
                    raise

    async def stop(self, *, abrupt: bool = False) -> None:
        """Stop mosquitto: SIGTERM (or SIGKILL when `abrupt`), then wait for it to exit.

        Clients see their connection dropped. The port stays reserved for `start()`.
        """
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL if abrupt else signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_DEADLINE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        self._process = None

    def _ensure_workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="mka-mosquitto-"))
        return self._workdir

    def _write_config(self) -> Path:
        workdir = self._ensure_workdir()
        config = workdir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence false",
                    "set_tcp_nodelay true",
                    f"max_queued_messages {self._max_queued_messages}",
                    "max_queued_bytes 0",
                    "max_inflight_messages 1000",
                    f"log_dest file {workdir / 'mosquitto.log'}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        return config

    async def _spawn_and_wait(self) -> None:
        config = self._write_config()
        process = await asyncio.create_subprocess_exec(
            self._binary,
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._process = process
        deadline = time.monotonic() + self._startup_deadline
        while True:
            if process.returncode is not None:
                self._process = None
                raise BrokerStartError(
                    f"mosquitto exited with code {process.returncode} while starting on port "
                    f"{self.port}: {self._log_tail()}"
                )
            if await self._accepts_connections():
                return
            if time.monotonic() > deadline:
                await self.stop(abrupt=True)
                raise BrokerStartError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{self._startup_deadline:.0f} s: {self._log_tail()}"
                )
            await asyncio.sleep(_POLL_INTERVAL_S)

    async def _accepts_connections(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), timeout=1.0
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"
