"""``mep-kubeedge-adapter mecm-call VERB``: drive an AppLCM server as lcmcontroller does.

Prints the plugin's answer (a status, or a JSON document) and exits 0; exits 1 on
``Failure`` or a gRPC error (printed as ``CODE: message``), 2 on bad arguments.
The token comes from ``--token`` or ``MKA_MECM__TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Final

import grpc

from mep_kubeedge_adapter.mecm.client import LcmClient
from mep_kubeedge_adapter.settings import SettingsError, load_settings

__all__ = ["VERBS", "add_arguments", "run"]

VERBS: Final = (
    "upload-config",
    "remove-config",
    "upload-package",
    "delete-package",
    "package-status",
    "instantiate",
    "terminate",
    "query",
    "query-kpi",
    "workload-events",
)
_NEEDS: Final = {
    "upload-config": ("file",),
    "upload-package": ("file", "package_id"),
    "delete-package": ("package_id",),
    "package-status": ("package_id",),
    "instantiate": ("instance_id", "package_id"),
    "terminate": ("instance_id",),
    "query": ("instance_id",),
    "workload-events": ("instance_id",),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("verb", choices=VERBS)
    parser.add_argument("--target", required=True, help="HOST:PORT of the AppLCM server")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", type=Path, help="PEM CA that signed the server's certificate")
    tls.add_argument("--insecure", action="store_true", help="plaintext gRPC")
    parser.add_argument("--server-name", help="name to check in the server's certificate")
    parser.add_argument("--token", help="accessToken (default: MKA_MECM__TOKEN)")
    parser.add_argument("--tenant", default="", help="tenantId")
    parser.add_argument("--host-ip", required=True, help="hostIp: the edge node's InternalIP")
    parser.add_argument("--file", type=Path, help="kubeconfig or CSAR to upload")
    parser.add_argument("--package-id", help="appPackageId")
    parser.add_argument("--instance-id", help="appInstanceId")
    parser.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="instantiate parameter"
    )
    parser.add_argument("--log-level", default="warning")


async def run(args: argparse.Namespace, stop: asyncio.Event) -> int:
    missing = [
        f"--{n.replace('_', '-')}" for n in _NEEDS.get(args.verb, ()) if not getattr(args, n)
    ]
    if missing:
        print(f"mecm-call {args.verb}: {', '.join(missing)} required", file=sys.stderr)
        return 2
    parameters: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"mecm-call: --param {item!r} is not K=V", file=sys.stderr)
            return 2
        parameters[key] = value
    token = args.token
    if token is None:
        try:
            secret = load_settings().mecm.token
        except SettingsError as exc:
            print(f"mecm-call: {exc}", file=sys.stderr)
            return 2
        token = secret.get_secret_value() if secret is not None else ""
    ca = args.ca_file.read_bytes() if args.ca_file else None
    async with LcmClient(
        args.target, ca=ca, insecure=args.insecure, server_name=args.server_name
    ) as lcm:
        try:
            answer = await _call(lcm, args, token, parameters)
        except grpc.aio.AioRpcError as exc:
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(answer)
    return 1 if answer == "Failure" else 0


async def _call(
    lcm: LcmClient, args: argparse.Namespace, token: str, parameters: dict[str, str]
) -> str:
    tenant, host = args.tenant, args.host_ip
    verb = args.verb
    if verb == "upload-config":
        return await lcm.upload_config(token, tenant, host, args.file)
    if verb == "remove-config":
        return await lcm.remove_config(token, tenant, host)
    if verb == "upload-package":
        return await lcm.upload_package(token, tenant, host, args.package_id, args.file)
    if verb == "delete-package":
        return await lcm.delete_package(token, tenant, host, args.package_id)
    if verb == "package-status":
        return await lcm.package_status(token, tenant, host, args.package_id)
    if verb == "instantiate":
        return await lcm.instantiate(
            token, tenant, host, args.instance_id, args.package_id, parameters
        )
    if verb == "terminate":
        return await lcm.terminate(token, tenant, host, args.instance_id)
    if verb == "query":
        return await lcm.query(token, tenant, host, args.instance_id)
    if verb == "query-kpi":
        return await lcm.query_kpi(token, tenant, host)
    return await lcm.workload_events(token, tenant, host, args.instance_id)
