"""An ``AppLCM`` client that behaves exactly as MECM's lcmcontroller does (reference §1).

- every call has a 180 s deadline (lcmcontroller's ``util.Timeout``);
- the client streams send their metadata first, one oneof member per message, in
  lcmcontroller's fixed order (uploadConfig: accessToken, tenantId, hostIp; uploadPackage:
  accessToken, appPackageId, hostIp, tenantId), then the file in 1024-byte chunks, read from
  disk as they go;
- TLS by default, plaintext with ``insecure`` (``client_ssl_enable=false``); ``server_name``
  overrides the name checked in the certificate (EdgeGallery's say ``edgegallery.org``).

``mep-kubeedge-adapter mecm-call`` is this client for operators; the tests drive the plugin
with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import grpc

from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2 as pb
from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2_grpc as pb_grpc

__all__ = ["CHUNK", "DEADLINE", "LcmClient"]

DEADLINE: Final = 180.0
CHUNK: Final = 1024


def _chunks(data: bytes | Path) -> Iterator[bytes]:
    if isinstance(data, bytes):
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]
        return
    with data.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class LcmClient:
    """``async with LcmClient("host:port", ca=pem) as lcm: await lcm.query(...)``."""

    def __init__(
        self,
        target: str,
        *,
        ca: bytes | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        deadline: float = DEADLINE,
    ) -> None:
        options: list[tuple[str, str | int]] = [("grpc.max_receive_message_length", 8 << 20)]
        if insecure:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = pb_grpc.AppLCMStub(self._channel)
        self._deadline = deadline

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._channel.close()

    async def upload_config(
        self, token: str, tenant: str, host_ip: str, config: bytes | Path
    ) -> str:
        async def messages() -> AsyncIterator[pb.UploadCfgRequest]:
            yield pb.UploadCfgRequest(accessToken=token)
            yield pb.UploadCfgRequest(tenantId=tenant)
            yield pb.UploadCfgRequest(hostIp=host_ip)
            for chunk in _chunks(config):
                yield pb.UploadCfgRequest(configFile=chunk)

        reply = await self._stub.uploadConfig(messages(), timeout=self._deadline)
        return reply.status

    async def remove_config(self, token: str, tenant: str, host_ip: str) -> str:
        request = pb.RemoveCfgRequest(accessToken=token, tenantId=tenant, hostIp=host_ip)
        return (await self._stub.removeConfig(request, timeout=self._deadline)).status

    async def upload_package(
        self, token: str, tenant: str, host_ip: str, package_id: str, package: bytes | Path
    ) -> str:
        async def messages() -> AsyncIterator[pb.UploadPackageRequest]:
            yield pb.UploadPackageRequest(accessToken=token)
            yield pb.UploadPackageRequest(appPackageId=package_id)
            yield pb.UploadPackageRequest(hostIp=host_ip)
            yield pb.UploadPackageRequest(tenantId=tenant)
            for chunk in _chunks(package):
                yield pb.UploadPackageRequest(package=chunk)

        reply = await self._stub.uploadPackage(messages(), timeout=self._deadline)
        return reply.status

    async def delete_package(self, token: str, tenant: str, host_ip: str, package_id: str) -> str:
        request = pb.DeletePackageRequest(
            accessToken=token, tenantId=tenant, hostIp=host_ip, appPackageId=package_id
        )
        return (await self._stub.deletePackage(request, timeout=self._deadline)).status

    async def package_status(self, token: str, tenant: str, host_ip: str, package_id: str) -> str:
        request = pb.QueryPackageStatusRequest(
            accessToken=token, tenantId=tenant, hostIp=host_ip, packageId=package_id
        )
        return (await self._stub.queryPackageStatus(request, timeout=self._deadline)).response

    async def instantiate(
        self,
        token: str,
        tenant: str,
        host_ip: str,
        instance_id: str,
        package_id: str,
        parameters: Mapping[str, str],
        *,
        ak_sk_lcm_gen: bool = False,
    ) -> str:
        request = pb.InstantiateRequest(
            accessToken=token,
            tenantId=tenant,
            appInstanceId=instance_id,
            appPackageId=package_id,
            hostIp=host_ip,
            parameters=dict(parameters),
            akSkLcmGen=ak_sk_lcm_gen,
        )
        return (await self._stub.instantiate(request, timeout=self._deadline)).status

    async def terminate(self, token: str, tenant: str, host_ip: str, instance_id: str) -> str:
        request = pb.TerminateRequest(
            accessToken=token, tenantId=tenant, hostIp=host_ip, appInstanceId=instance_id
        )
        return (await self._stub.terminate(request, timeout=self._deadline)).status

    async def query(self, token: str, tenant: str, host_ip: str, instance_id: str) -> str:
        request = pb.QueryRequest(
            accessToken=token, tenantId=tenant, hostIp=host_ip, appInstanceId=instance_id
        )
        return (await self._stub.query(request, timeout=self._deadline)).response

    async def query_kpi(self, token: str, tenant: str, host_ip: str) -> str:
        request = pb.QueryKPIRequest(accessToken=token, tenantId=tenant, hostIp=host_ip)
        return (await self._stub.queryKPI(request, timeout=self._deadline)).response

    async def workload_events(self, token: str, tenant: str, host_ip: str, instance_id: str) -> str:
        request = pb.WorkloadEventsRequest(
            accessToken=token, tenantId=tenant, hostIp=host_ip, appInstanceId=instance_id
        )
        return (await self._stub.workloadEvents(request, timeout=self._deadline)).response
