"""Tokens verified for real, TLS as lcmcontroller negotiates it, and the CLI verbs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from mep_kubeedge_adapter.emulators.kubeapi import kubeconfig
from mep_kubeedge_adapter.emulators.pki import SERVER_NAME, Pki, make_pki
from mep_kubeedge_adapter.mecm.plugin import load_tls
from tests.mecm.conftest import EDGE_IP, TENANT, Setup


async def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), str(caught.value.details())


async def test_a_token_with_a_foreign_signature_is_refused(setup: Setup) -> None:
    forged = setup.user_mgmt.token(key=setup.user_mgmt.stranger_key())
    code, message = await _code(setup.lcm.query_kpi(forged, TENANT, EDGE_IP))
    assert code is grpc.StatusCode.UNAUTHENTICATED and "accessToken is invalid" in message


async def test_an_expired_or_empty_token_is_refused(setup: Setup) -> None:
    expired = setup.user_mgmt.token(expires_in=-60)
    code, message = await _code(setup.lcm.query_kpi(expired, TENANT, EDGE_IP))
    assert (code, message) == (grpc.StatusCode.UNAUTHENTICATED, "accessToken has expired")
    code, message = await _code(setup.lcm.query_kpi("", TENANT, EDGE_IP))
    assert (code, message) == (grpc.StatusCode.UNAUTHENTICATED, "accessToken is required")


async def test_a_token_without_an_mecm_role_is_refused(setup: Setup) -> None:
    token = setup.user_mgmt.token("ROLE_APPSTORE_TENANT")
    code, _ = await _code(setup.lcm.remove_config(token, TENANT, EDGE_IP))
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_guest_may_read_but_not_write(setup: Setup) -> None:
    await setup.register_host()
    guest = setup.user_mgmt.token("ROLE_MECM_GUEST")
    code, message = await _code(setup.lcm.package_status(guest, TENANT, EDGE_IP, "nope"))
    assert code is grpc.StatusCode.NOT_FOUND  # past the role check
    code, message = await _code(setup.lcm.remove_config(guest, TENANT, EDGE_IP))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "ROLE_MECM_TENANT" in message
    code, _ = await _code(
        setup.lcm.upload_config(guest, TENANT, EDGE_IP, kubeconfig(setup.fake.url))
    )
    assert code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_tenant_acts_only_for_itself_and_an_admin_for_anyone(setup: Setup) -> None:
    other = setup.user_mgmt.token(user_id="tenant-2")
    code, message = await _code(setup.lcm.remove_config(other, TENANT, EDGE_IP))
    assert code is grpc.StatusCode.PERMISSION_DENIED and "illegal tenantId" in message
    admin = setup.user_mgmt.token("ROLE_MECM_ADMIN", user_id="admin")
    await setup.register_host()
    assert await setup.lcm.remove_config(admin, TENANT, EDGE_IP) == "Success"


async def test_the_stream_must_send_its_metadata_first(setup: Setup) -> None:
    from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2 as pb
    from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2_grpc as pb_grpc

    async def messages() -> AsyncIterator[pb.UploadCfgRequest]:
        yield pb.UploadCfgRequest(configFile=b"clusters: []")
        yield pb.UploadCfgRequest(accessToken=setup.token)

    stub = pb_grpc.AppLCMStub(setup.lcm._channel)
    code, message = await _code(stub.uploadConfig(messages(), timeout=10))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "must start with accessToken, tenantId, hostIp before the file" in message


def _tls12_handshake(port: int, ca: bytes) -> tuple[str, str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca.decode())
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        cipher = tls.cipher()
        assert cipher is not None
        return str(tls.version()), cipher[0]


async def test_tls12_with_lcmcontrollers_ciphers_is_accepted(setup: Setup, pki: Pki) -> None:
    version, cipher = await asyncio.to_thread(_tls12_handshake, setup.plugin.port, pki.ca_pem)
    assert version == "TLSv1.2"
    assert cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384")


def test_a_key_that_is_not_rsa_is_refused(tmp_path: Path) -> None:
    ec = make_pki(tmp_path, key_type="ec")
    with pytest.raises(ValueError, match="must be RSA"):
        load_tls(ec.cert_file, ec.key_file)


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_mecm_call_drives_the_plugin_and_fails_loudly(
    setup: Setup, tmp_path: Path, pki: Pki
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_pem)
    config = tmp_path / "kubeconfig"
    config.write_bytes(kubeconfig(setup.fake.url))
    common = [
        "--target",
        f"127.0.0.1:{setup.plugin.port}",
        "--ca-file",
        str(ca),
        "--server-name",
        SERVER_NAME,
        "--tenant",
        TENANT,
        "--host-ip",
        EDGE_IP,
    ]
    code, out, err = await _cli(
        "mecm-call",
        "upload-config",
        *common,
        "--file",
        str(config),
        env={"MKA_MECM__TOKEN": setup.token},
    )
    assert (code, out.strip()) == (0, "Success"), err
    code, out, err = await _cli(
        "mecm-call", "query", *common, "--instance-id", "nope", "--token", setup.token
    )
    assert code == 1 and err.strip() == "NOT_FOUND: app instance nope not found"


async def test_the_plugin_stops_within_10s_of_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        "mecm-plugin",
        "--insecure",
        "--mecm-auth",
        "none",
        "--mecm-host",
        "127.0.0.1",
        "--mecm-port",
        "0",
        "--mecm-data-dir",
        str(tmp_path / "data"),
        "--log-format",
        "console",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while b"mecm.plugin.serving" not in await process.stdout.readline():
            pass
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        rest = await process.stdout.read()
        assert await process.wait() == 0
    assert b"mecm.plugin.stopped" in rest
