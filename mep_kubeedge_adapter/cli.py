"""Command line: ``mep-kubeedge-adapter <verb>`` (SPEC §2).

Verbs: ``run`` (the service), ``demo`` (everything on one machine), ``simulate-device``,
``edgecore-emulator``, ``mep-emulator``, ``config`` (print effective settings),
``mecm-plugin`` (the KubeEdge plugin for MECM) and ``mecm-call`` (its lcmcontroller-like client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any, Protocol, cast

from mep_kubeedge_adapter import __version__
from mep_kubeedge_adapter.settings import (
    Settings,
    SettingsError,
    add_settings_arguments,
    load_settings,
    redacted,
)


class _Tool(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    async def run(self, args: argparse.Namespace, stop: asyncio.Event) -> int | None: ...


_TOOLS = {
    "demo": ("mep_kubeedge_adapter.demo", "everything on one machine, no setup"),
    "simulate-device": (
        "mep_kubeedge_adapter.emulators.device",
        "a simulated MQTT device/mapper for hardware-in-the-loop tests",
    ),
    "edgecore-emulator": (
        "mep_kubeedge_adapter.emulators.edgecore",
        "EdgeCore's devicetwin/EventBus behaviour over MQTT",
    ),
    "mep-emulator": (
        "mep_kubeedge_adapter.emulators.mep",
        "an EdgeGallery-flavoured MP1 server",
    ),
    "mecm-call": (
        "mep_kubeedge_adapter.mecm.call",
        "drive an AppLCM server (the MECM plugin) as lcmcontroller does",
    ),
}


def _tool(verb: str) -> _Tool:
    return cast(_Tool, importlib.import_module(_TOOLS[verb][0]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mep-kubeedge-adapter",
        description="KubeEdge device twins as EdgeGallery MEP (ETSI MEC 011) services.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", help="run the adapter service")
    add_settings_arguments(run)
    config = verbs.add_parser("config", help="print the effective settings (secrets redacted)")
    add_settings_arguments(config)
    plugin = verbs.add_parser(
        "mecm-plugin", help="the KubeEdge plugin for MECM: a gRPC AppLCM server"
    )
    add_settings_arguments(plugin)
    plugin.add_argument(
        "--insecure",
        dest="mecm.insecure",
        action="store_const",
        const="true",
        # Unset unless given: the settings flag of the same setting is parsed into this dest
        # too, and a None default would override the environment and the file.
        default=argparse.SUPPRESS,
        help="serve plaintext gRPC (MKA_MECM__INSECURE=true)",
    )
    for verb, (_, help_text) in _TOOLS.items():
        sub = verbs.add_parser(verb, help=help_text)
        sub.set_defaults(_lazy_tool=verb)
    return parser


def _run_async(coro_factory: Any) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        result = await coro_factory(stop)
        return int(result or 0)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Tool verbs own their flags: parse the verb first, then hand the rest to the tool.
    if argv and argv[0] in _TOOLS:
        verb = argv[0]
        tool = _tool(verb)
        sub = argparse.ArgumentParser(prog=f"mep-kubeedge-adapter {verb}")
        tool.add_arguments(sub)
        tool_args = sub.parse_args(argv[1:])
        from mep_kubeedge_adapter.observability import configure_logging

        configure_logging(getattr(tool_args, "log_level", "info") or "info", "console")
        return _run_async(lambda stop: tool.run(tool_args, stop))

    args = parser.parse_args(argv)
    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"mep-kubeedge-adapter: {exc}", file=sys.stderr)
        return 2
    if args.verb == "config":
        print(json.dumps(redacted(settings), indent=2, sort_keys=True))
        return 0
    from mep_kubeedge_adapter.observability import configure_logging

    configure_logging(settings.log.level, settings.log.format)
    if args.verb == "mecm-plugin":
        return _mecm_plugin(settings)
    from mep_kubeedge_adapter.service import serve

    return _run_async(lambda stop: serve(settings, stop))


def _mecm_plugin(settings: Settings) -> int:
    from mep_kubeedge_adapter.mecm.plugin import run

    try:
        settings.mecm.check_plugin()
    except ValueError as exc:
        print(f"mep-kubeedge-adapter mecm-plugin: {exc}", file=sys.stderr)
        return 2
    try:
        return _run_async(lambda stop: run(settings.mecm, stop))
    except (ValueError, OSError) as exc:
        print(f"mep-kubeedge-adapter mecm-plugin: {exc}", file=sys.stderr)
        return 1
