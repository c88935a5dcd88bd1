"""``mep-kubeedge-adapter mep-emulator``: flags, identities from a file, and serving."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mep_kubeedge_adapter.emulators.mep.emulator import MepEmulator
from mep_kubeedge_adapter.emulators.mep.identities import (
    DEMO_AK,
    DEMO_APP_INSTANCE_ID,
    DEMO_SK,
    AppIdentity,
)

__all__ = ["add_arguments", "run", "running"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mep-kubeedge-adapter mep-emulator``."""
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=30443, help="listen port (0 = any free)")
    parser.add_argument("--cert", help="PEM server certificate (enables HTTPS)")
    parser.add_argument("--key", help="PEM private key for --cert")
    parser.add_argument(
        "--identities",
        metavar="FILE",
        help='JSON list of {"appInstanceId","ak","sk","requiredServices"}',
    )
    parser.add_argument("--app-instance-id", default=DEMO_APP_INSTANCE_ID)
    parser.add_argument("--ak", default=DEMO_AK, help="20-character access key")
    parser.add_argument("--sk", default=DEMO_SK, help="64-character secret key")
    parser.add_argument(
        "--required-services",
        default="*",
        help="comma-separated serNames this identity may discover (* = all)",
    )
    parser.add_argument("--token-ttl", type=int, default=3600, help="token lifetime, seconds")
    parser.add_argument(
        "--liveness-seconds",
        type=float,
        default=60.0,
        help="platform heartbeat interval (EdgeGallery: 60)",
    )
    parser.add_argument("--lockout-seconds", type=float, default=900.0)
    parser.add_argument(
        "--jwt-public-key-out",
        metavar="FILE",
        help="write the token-signing public key (PEM) here at start",
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="do not check bodies against the MEC 011 OpenAPI"
    )


def _identities_from_args(args: argparse.Namespace) -> list[AppIdentity]:
    if args.identities:
        data = json.loads(Path(args.identities).read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("--identities must hold a JSON list")
        return [AppIdentity.from_json(item) for item in data]
    required = [s.strip() for s in str(args.required_services).split(",") if s.strip()]
    return [AppIdentity(args.app_instance_id, args.ak, args.sk, required, "cli")]


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    context: ssl.SSLContext | None = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    emulator = MepEmulator(
        args.host,
        args.port,
        ssl_context=context,
        identities=_identities_from_args(args),
        token_ttl=args.token_ttl,
        liveness_seconds=args.liveness_seconds,
        lockout_seconds=args.lockout_seconds,
        validate=not args.no_validate,
    )
    async with emulator:
        if args.jwt_public_key_out:
            await asyncio.to_thread(
                Path(args.jwt_public_key_out).write_bytes, emulator.jwt_public_key_pem
            )
        log.info("MEP emulator listening on %s", emulator.url)
        for ident in emulator.identities.values():
            log.info(
                "identity appInstanceId=%s requiredServices=%s",
                ident.app_instance_id,
                ",".join(ident.required_services),
            )
        await stop.wait()


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[MepEmulator]:
    """``async with running(...) as mep:`` shorthand for scripts."""
    async with MepEmulator(**kwargs) as emulator:
        yield emulator
