"""``mep-kubeedge-adapter edgecore-emulator``: flags and serving."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

from mep_kubeedge_adapter.emulators.edgecore.devicefile import load_devices
from mep_kubeedge_adapter.emulators.edgecore.emulator import EdgeCoreEmulator
from mep_kubeedge_adapter.emulators.edgecore.twins import TOPIC_LAYOUTS

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `edgecore-emulator` command."""
    parser.add_argument(
        "--mqtt-url",
        default="mqtt://127.0.0.1:1883",
        help="broker to serve on, mqtt://[user:password@]host:port (default: %(default)s)",
    )
    parser.add_argument(
        "--node-name",
        default="edge-node",
        help="EdgeCore node name, used for membership/get/result (default: %(default)s)",
    )
    parser.add_argument(
        "--devices",
        metavar="FILE",
        type=Path,
        help="YAML/JSON device file: devices with namespace, name, description and twins",
    )
    parser.add_argument(
        "--topic-layout",
        choices=TOPIC_LAYOUTS,
        default="namespaced",
        help="namespaced: <ns>/<name> ids (KubeEdge v1.17+); legacy: <name> ids (<= v1.15)",
    )


def _broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://host:port")
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until `stop` is set (the CLI sets it on SIGINT/SIGTERM)."""
    host, port, username, password = _broker_address(args.mqtt_url)
    devices = load_devices(args.devices) if args.devices else []
    async with EdgeCoreEmulator(
        host,
        port,
        node_name=args.node_name,
        devices=devices,
        topic_layout=args.topic_layout,
        username=username,
        password=password,
    ) as emulator:
        logger.info(
            "edgecore emulator ready: node %s, %d device(s)",
            emulator.node_name,
            len(emulator.module.devices),
        )
        await stop.wait()
