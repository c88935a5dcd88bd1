"""A sample edge app: find the KubeEdge device service over MP1, read a twin, follow its changes.

What it does, in the order an app on EdgeGallery has to do it:

1. Signs ``POST /mep/token`` with its own AK/SK (issued by MECM) and gets a bearer token.
2. Discovers ``kubeedge-devices-<node>`` with ``GET /mep/mec_service_mgmt/v1/services?ser_name=``
   and keeps only ACTIVE instances of the KubeEdge device-management category (EdgeGallery does
   not filter reliably; :mod:`mep_kubeedge_adapter.mep.discovery` explains why). Until the
   service shows up it asks again with backoff. The result is a *gateway* URI: every call goes
   through the MEP API gateway with the bearer token.
3. Lists the devices and reads one device's twin.
4. Subscribes to twin changes of that device (and property), by HTTP callback to a small server
   it runs itself, or by websocket; logs every notification as a JSON line on stdout.
5. On exit (SIGINT/SIGTERM, ``--duration`` or ``--count`` reached) deletes its subscription.

Settings are flags, each with an environment fallback (the names EdgeGallery's mep-agent uses
for the identity: ``APPINSTID``, ``AK``, ``SK``)::

    python sample_app.py --mep-url http://127.0.0.1:30443 --node edge-node-1 \\
        --device default/thermo-1 --property temperature --delivery callback \\
        --listen 127.0.0.1:9090 --callback-url http://127.0.0.1:9090/notify

Exit status: 0 when it ran to the end, 1 when the service was never found or a call failed,
2 for bad settings. It needs ``aiohttp`` and the adapter's ``mep`` package (token signing and
discovery), both in the adapter's image.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from mep_kubeedge_adapter.mep.client import Mp1Client, Mp1Error
from mep_kubeedge_adapter.mep.discovery import select_endpoints
from mep_kubeedge_adapter.mep.models import KUBEEDGE_CATEGORY, to_ser_name

log = logging.getLogger("sample_app")


class SampleAppError(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Config:
    mep_url: str
    app_instance_id: str
    ak: str
    sk: str
    ser_name: str
    device: str
    property: str | None
    delivery: str
    listen_host: str
    listen_port: int
    callback_url: str | None
    ca_file: str | None
    tls_server_name: str | None
    discovery_timeout: float
    duration: float | None
    count: int | None


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="sample_app.py",
        description="Discover the KubeEdge device service over MP1, read a twin, log its changes.",
    )
    parser.add_argument(
        "--mep-url",
        default=_env("MEP_URL"),
        help="MEP API gateway, e.g. https://mep-api-gw.mep:8443 (env MEP_URL)",
    )
    parser.add_argument(
        "--app-instance-id",
        default=_env("APPINSTID"),
        help="this app's instance id (env APPINSTID)",
    )
    parser.add_argument("--ak", default=_env("AK"), help="access key (env AK)")
    parser.add_argument("--sk", default=_env("SK"), help="secret key (env SK)")
    parser.add_argument(
        "--ca-file",
        default=_env("MEP_CA_FILE"),
        help="CA of the MEP gateway certificate (env MEP_CA_FILE)",
    )
    parser.add_argument(
        "--tls-server-name",
        default=_env("MEP_TLS_SERVER_NAME"),
        help="name to check in the gateway certificate, EdgeGallery: edgegallery",
    )
    parser.add_argument(
        "--node", default=_env("NODE_NAME"), help="edge node whose adapter to use (env NODE_NAME)"
    )
    parser.add_argument(
        "--ser-name",
        default=_env("SAMPLE_SER_NAME"),
        help="serName to discover (default kubeedge-devices-<node>)",
    )
    parser.add_argument(
        "--device",
        default=_env("SAMPLE_DEVICE", "default/thermo-1"),
        help="<namespace>/<name> (env SAMPLE_DEVICE)",
    )
    parser.add_argument(
        "--property",
        default=_env("SAMPLE_PROPERTY"),
        help="only this property's changes (env SAMPLE_PROPERTY)",
    )
    parser.add_argument(
        "--delivery",
        choices=("callback", "websocket"),
        default=_env("SAMPLE_DELIVERY", "callback"),
        help="how notifications arrive (env SAMPLE_DELIVERY)",
    )
    parser.add_argument(
        "--listen",
        default=_env("SAMPLE_LISTEN", "127.0.0.1:9090"),
        help="host:port of the callback server (env SAMPLE_LISTEN)",
    )
    parser.add_argument(
        "--callback-url",
        default=_env("SAMPLE_CALLBACK_URL"),
        help="URL the adapter POSTs to (default http://<listen>/notify)",
    )
    parser.add_argument(
        "--discovery-timeout",
        type=float,
        default=_env("SAMPLE_DISCOVERY_TIMEOUT", "120"),
        help="seconds to wait for the service to be registered (env SAMPLE_DISCOVERY_TIMEOUT)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--count", type=int, help="stop after this many notifications")
    args = parser.parse_args(argv)

    missing = [
        flag
        for flag, value in (
            ("--mep-url", args.mep_url),
            ("--app-instance-id", args.app_instance_id),
            ("--ak", args.ak),
            ("--sk", args.sk),
        )
        if not value
    ]
    if not args.ser_name and not args.node:
        missing.append("--node or --ser-name")
    if missing:
        parser.error("missing " + ", ".join(missing))
    if not args.discovery_timeout > 0:
        parser.error("--discovery-timeout must be a positive number of seconds")
    if args.device.count("/") != 1:
        parser.error("--device must be <namespace>/<name>")
    host, _, port = str(args.listen).rpartition(":")
    if not host or not port.isdigit():
        parser.error("--listen must be host:port")
    callback_url = args.callback_url or f"http://{host}:{port}/notify"
    return Config(
        mep_url=args.mep_url,
        app_instance_id=args.app_instance_id,
        ak=args.ak,
        sk=args.sk,
        ser_name=args.ser_name or to_ser_name("kubeedge-devices", args.node),
        device=args.device,
        property=args.property,
        delivery=args.delivery,
        listen_host=host,
        listen_port=int(port),
        callback_url=callback_url if args.delivery == "callback" else None,
        ca_file=args.ca_file,
        tls_server_name=args.tls_server_name,
        discovery_timeout=args.discovery_timeout,
        duration=args.duration,
        count=args.count,
    )


def emit(event: str, **fields: Any) -> None:
    """One JSON line per event on stdout: easy to read, easy to grep, easy to test."""
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


async def discover(client: Mp1Client, config: Config) -> str:
    """The gateway URI of the device service, asking again until it appears."""
    deadline = time.monotonic() + config.discovery_timeout
    delay = 1.0
    while True:
        try:
            services = await client.discover(ser_name=config.ser_name)
            uris = select_endpoints(
                services, ser_name=config.ser_name, category_id=KUBEEDGE_CATEGORY.id
            )
            if uris:
                return uris[0].rstrip("/")
            reason = "not registered yet (or not in this app's requiredServices)"
        except Mp1Error as exc:
            # EdgeGallery answers an unknown ser_name with a service-center 400.
            reason = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + delay > deadline:
            raise SampleAppError(f"service {config.ser_name} not found: {reason}")
        log.info("waiting for %s: %s", config.ser_name, reason)
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 15.0)


class DeviceApi:
    """The adapter's REST API behind the MEP gateway, called with this app's bearer token."""

    def __init__(self, session: aiohttp.ClientSession, client: Mp1Client, base: str) -> None:
        self._session = session
        self._client = client
        # The registered endpoint is <adapter>/kubeedge_devices/v1, so the gateway URI that
        # stands for it is already the API base: paths below are appended to it.
        self.base = base.rstrip("/")

    async def call(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)
    ) -> Any:
        url = path if path.startswith(("http://", "https://")) else self.base + path
        for attempt in (1, 2):
            headers = {
                "Authorization": f"Bearer {await self._client.token()}",
                "Accept": "application/json",
            }
            async with self._session.request(method, url, json=body, headers=headers) as reply:
                text = await reply.text()
                if reply.status == 401 and attempt == 1:
                    self._client.invalidate_token()  # expired, or the gateway wants a new one
                    continue
                if reply.status not in expect:
                    raise SampleAppError(f"{method} {url}: {reply.status} {text[:300]}")
                return json.loads(text) if text else None
        raise SampleAppError(f"{method} {url}: unauthorized")


def subscription_body(config: Config) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subscriptionType": "DeviceTwinChangeSubscription",
        "filteringCriteria": {
            "devices": [config.device],
            "properties": [config.property] if config.property else [],
        },
    }
    if config.callback_url:
        body["callbackReference"] = config.callback_url
    else:
        body["requestWebsocketUri"] = True
    return body


class Notifications:
    """Counts what arrives and tells the main task when it has seen enough."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.received = 0
        self.last_sequence: int | None = None
        self.enough = asyncio.Event()

    def handle(self, notification: dict[str, Any]) -> None:
        sequence = notification.get("sequence")
        if (
            isinstance(sequence, int)
            and self.last_sequence is not None
            and sequence > self.last_sequence + 1
        ):
            emit("gap", missed=sequence - self.last_sequence - 1)
        if isinstance(sequence, int):
            self.last_sequence = sequence
        self.received += 1
        emit("notification", notification=notification)
        if self.count is not None and self.received >= self.count:
            self.enough.set()


async def callback_server(config: Config, notifications: Notifications) -> web.AppRunner:
    async def notify(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if isinstance(body, dict):
            notifications.handle(body)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.listen_host, config.listen_port).start()
    return runner


async def follow_websocket(
    session: aiohttp.ClientSession, client: Mp1Client, uri: str, notifications: Notifications
) -> None:
    """Read the subscription's websocket; the token travels as the ``bearer`` subprotocol."""
    token = await client.token()
    async with session.ws_connect(
        uri, protocols=("bearer", token), heartbeat=30, headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                with contextlib.suppress(ValueError):
                    notifications.handle(json.loads(message.data))
            elif message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                break


async def run(config: Config, stop: asyncio.Event) -> None:
    notifications = Notifications(config.count)
    async with Mp1Client(
        config.mep_url,
        config.app_instance_id,
        config.ak,
        config.sk,
        ca_file=config.ca_file,
        tls_server_name=config.tls_server_name,
    ) as client:
        base = await discover(client, config)
        emit("discovered", serName=config.ser_name, endpoint=base)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = DeviceApi(session, client, base)
            devices = await api.call("GET", "/devices")
            emit("devices", devices=sorted(f"{d['namespace']}/{d['name']}" for d in devices))
            namespace, name = config.device.split("/")
            twin_path = f"/devices/{quote(namespace, safe='')}/{quote(name, safe='')}/twin"
            twin = await api.call("GET", twin_path)
            emit("twin", device=config.device, properties=twin.get("properties", {}))

            runner = None
            if config.callback_url:
                runner = await callback_server(config, notifications)
            subscription = await api.call(
                "POST", "/subscriptions", subscription_body(config), expect=(201,)
            )
            sub_id = str(subscription.get("id", ""))
            self_href = subscription.get("_links", {}).get("self", {}).get("href")
            emit(
                "subscribed",
                id=sub_id,
                href=self_href,
                websocketUri=subscription.get("websocketUri"),
            )
            reader = None
            if not config.callback_url:
                reader = asyncio.create_task(
                    follow_websocket(
                        session, client, str(subscription["websocketUri"]), notifications
                    )
                )
            try:
                waiters: list[asyncio.Task[Any]] = [
                    asyncio.create_task(stop.wait()),
                    asyncio.create_task(notifications.enough.wait()),
                ]
                if reader is not None:
                    waiters.append(reader)
                done, pending = await asyncio.wait(
                    waiters, timeout=config.duration, return_when=asyncio.FIRST_COMPLETED
                )
                for task in pending:
                    task.cancel()
                for task in done:
                    if task is reader and task.exception() is not None:
                        raise SampleAppError(f"websocket: {task.exception()}")
            finally:
                with contextlib.suppress(SampleAppError, aiohttp.ClientError, TimeoutError):
                    await api.call(
                        "DELETE", f"/subscriptions/{quote(sub_id, safe='')}", expect=(204, 404)
                    )
                    emit("unsubscribed", id=sub_id)
                if runner is not None:
                    await runner.cleanup()
    emit("done", notifications=notifications.received)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = parse_args(argv)

    async def _main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await run(config, stop)
        except (SampleAppError, Mp1Error, aiohttp.ClientError, TimeoutError, OSError) as exc:
            emit("error", error=f"{type(exc).__name__}: {exc}")
            return 1
        return 0

    return asyncio.run(_main())


if __name__ == "__main__":
    raise SystemExit(main())
