"""``mep-kubeedge-adapter mecm-plugin``: the composition root of the KubeEdge plugin for MECM.

Opens, in order: the state store, the thread pool for the (blocking) kube client, the use
cases, the gRPC server (TLS unless ``insecure``); closes them in reverse. On stop the server
refuses new calls, gives running ones ``STOP_GRACE`` seconds, then cancels them; kube calls
time out within seconds, so the process ends well within 10 s of SIGTERM.

TLS: lcmcontroller's client negotiates TLS 1.2 (or 1.3) with only the
``TLS_ECDHE_RSA_WITH_AES_{128,256}_GCM`` suites for 1.2, so the key must be RSA; another key
type is refused at start with a message that says so. There is no client certificate.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import grpc
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mep_kubeedge_adapter.domain import now_ms
from mep_kubeedge_adapter.mecm.auth import AllowAnyone, CallerCheck, TokenVerifier
from mep_kubeedge_adapter.mecm.lifecycle import AppLcm
from mep_kubeedge_adapter.mecm.quota import Limits
from mep_kubeedge_adapter.mecm.servicer import AppLcmServicer
from mep_kubeedge_adapter.mecm.state import LcmStore
from mep_kubeedge_adapter.mecm.unpack import UnpackLimits
from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2_grpc as pb_grpc
from mep_kubeedge_adapter.settings import MecmSettings

__all__ = ["STOP_GRACE", "MecmPlugin", "load_tls", "run"]

log = structlog.get_logger(__name__)

STOP_GRACE: Final = 2.0
"""Seconds running calls get to finish once a stop is asked for."""
KUBE_THREADS: Final = 16
"""Kube API calls in flight at once (instances proceed in parallel up to this)."""
MAX_MESSAGE: Final = 8 * 1024 * 1024
"""Largest gRPC message accepted (lcmcontroller's stream chunks are 1 KiB)."""


def load_tls(cert_file: Path, key_file: Path) -> grpc.ServerCredentials:
    """Server credentials from PEM files; ValueError if unreadable or the key is not RSA."""
    try:
        cert = cert_file.read_bytes()
        key = key_file.read_bytes()
        private = serialization.load_pem_private_key(key, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot load the TLS certificate or key: {exc}") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError(
            "the TLS key must be RSA: lcmcontroller offers only ECDHE-RSA cipher suites for TLS 1.2"
        )
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=None, require_client_auth=False
    )


def _caller_check(settings: MecmSettings) -> CallerCheck:
    if settings.auth == "none":
        return AllowAnyone()
    assert settings.jwt_public_key_file is not None
    return TokenVerifier.from_file(settings.jwt_public_key_file)


def _limits(settings: MecmSettings) -> Limits:
    """Each bound is the setting ``max_<field>``; a field without one fails at start."""
    return Limits(
        **{f.name: getattr(settings, f"max_{f.name}") for f in dataclasses.fields(Limits)}
    )


class MecmPlugin:
    """``async with MecmPlugin(settings) as plugin``: serving on ``plugin.port`` until exit.

    ``clock`` (milliseconds) dates terminations, for the retention of terminated instances.
    """

    def __init__(self, settings: MecmSettings, *, clock: Callable[[], int] = now_ms) -> None:
        settings.check_plugin()
        self.settings = settings
        self._auth = _caller_check(settings)
        self._credentials = (
            None if settings.insecure else load_tls(settings.tls_cert_file, settings.tls_key_file)  # type: ignore[arg-type]
        )
        self._store = LcmStore(
            settings.data_dir,
            retention_ms=settings.terminated_retention * 1000,
            max_terminated=settings.max_terminated,
            clock=clock,
        )
        self._executor: ThreadPoolExecutor | None = None
        self._server: grpc.aio.Server | None = None
        self.lcm: AppLcm | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        settings = self.settings
        await self._store.__aenter__()
        try:
            self._executor = ThreadPoolExecutor(KUBE_THREADS, thread_name_prefix="mecm-kube")
            self.lcm = AppLcm(
                self._store,
                self._executor,
                max_package_bytes=settings.max_package_bytes,
                unpack_limits=UnpackLimits(
                    max_files=settings.max_package_files,
                    max_file_bytes=settings.max_file_bytes,
                    max_total_bytes=settings.max_unpacked_bytes,
                ),
                limits=_limits(settings),
            )
            server = grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE),
                    ("grpc.so_reuseport", 0),
                ]
            )
            pb_grpc.add_AppLCMServicer_to_server(AppLcmServicer(self.lcm, self._auth), server)
            address = f"{settings.host}:{settings.port}"
            if self._credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, self._credentials)
            if self.port == 0:
                raise OSError(f"cannot listen on {address}")
            await server.start()
            self._server = server
        except BaseException:
            await self._close()
            raise
        log.info(
            "mecm.plugin.serving",
            host=settings.host,
            port=self.port,
            tls=self._credentials is not None,
            auth=settings.auth,
        )
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._server is not None:
            await self._server.stop(STOP_GRACE)
            self._server = None
        if self.lcm is not None:
            self.lcm.close()
            self.lcm = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        await self._store.__aexit__(None, None, None)
        log.info("mecm.plugin.stopped")


async def run(settings: MecmSettings, stop: asyncio.Event) -> int:
    """Serve until ``stop`` is set."""
    async with MecmPlugin(settings):
        await stop.wait()
    return 0
