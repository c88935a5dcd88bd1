"""The gRPC ``AppLCM`` servicer: decode each request, check the caller, call one use case.

Errors are mapped to gRPC statuses in one place (:func:`grpc_status`). lcmcontroller answers
404 for an error whose message contains ``not found`` (case-sensitive) and 500 for any other,
so only ``NOT_FOUND`` errors may say ``not found``; other messages have it reworded.
Tokens, kubeconfigs and AK/SK never reach a log line or an error message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import grpc
import structlog

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.mecm.auth import CallerCheck
from mep_kubeedge_adapter.mecm.lifecycle import MAX_KUBECONFIG_BYTES, AppLcm
from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2 as pb
from mep_kubeedge_adapter.mecm.wire import lcmservice_pb2_grpc as pb_grpc

__all__ = ["AppLcmServicer", "grpc_status"]

log = structlog.get_logger(__name__)

_CODES: Final = {
    ErrorKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.PRECONDITION_FAILED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.QUOTA_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UPSTREAM_REJECTED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.UPSTREAM_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.NOT_IMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}
_R = TypeVar("_R")
Context = grpc.aio.ServicerContext[Any, Any]


def grpc_status(error: AdapterError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message of an error, keeping lcmcontroller's 404 rule exact."""
    message = error.detail
    if error.kind is ErrorKind.NOT_FOUND:
        if "not found" not in message:
            message += " not found"
    else:
        message = message.replace("not found", "missing")
    return _CODES.get(error.kind, grpc.StatusCode.UNKNOWN), message


class AppLcmServicer(pb_grpc.AppLCMServicer):
    """``internal.lcmservice.AppLCM`` over :class:`AppLcm`."""

    def __init__(self, lcm: AppLcm, auth: CallerCheck) -> None:
        self._lcm = lcm
        self._auth = auth

    async def _serve(
        self, rpc: str, context: Context, call: Callable[[], Awaitable[_R]], **fields: str
    ) -> _R:
        started = time.monotonic()
        try:
            result = await call()
        except AdapterError as exc:
            code, message = grpc_status(exc)
            log.info("mecm.rpc", rpc=rpc, outcome=code.name, error=message, **fields)
            await context.abort(code, message)
        except Exception:
            log.exception("mecm.rpc.crashed", rpc=rpc, **fields)
            await context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed inside the plugin")
        log.info(
            "mecm.rpc",
            rpc=rpc,
            outcome="OK",
            ms=round((time.monotonic() - started) * 1000),
            **fields,
        )
        return result

    def _check(self, token: str, tenant: str, *, write: bool) -> None:
        self._auth.check(token, write=write, tenant_id=tenant)

    async def instantiate(
        self, request: pb.InstantiateRequest, context: Context
    ) -> pb.InstantiateResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=True)
            return await self._lcm.instantiate(
                request.tenantId,
                request.hostIp,
                request.appInstanceId,
                request.appPackageId,
                dict(request.parameters),
            )

        status = await self._serve(
            "instantiate", context, call, instance=request.appInstanceId, host=request.hostIp
        )
        return pb.InstantiateResponse(status=status)

    async def terminate(
        self, request: pb.TerminateRequest, context: Context
    ) -> pb.TerminateResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=True)
            return await self._lcm.terminate(
                request.tenantId, request.hostIp, request.appInstanceId
            )

        status = await self._serve("terminate", context, call, instance=request.appInstanceId)
        return pb.TerminateResponse(status=status)

    async def query(self, request: pb.QueryRequest, context: Context) -> pb.QueryResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=False)
            return await self._lcm.query(request.tenantId, request.hostIp, request.appInstanceId)

        response = await self._serve("query", context, call, instance=request.appInstanceId)
        return pb.QueryResponse(response=response)

    async def queryKPI(self, request: pb.QueryKPIRequest, context: Context) -> pb.QueryKPIResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=False)
            return await self._lcm.query_kpi(request.tenantId, request.hostIp)

        response = await self._serve("queryKPI", context, call, host=request.hostIp)
        return pb.QueryKPIResponse(response=response)

    async def queryPackageStatus(
        self, request: pb.QueryPackageStatusRequest, context: Context
    ) -> pb.QueryPackageStatusResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=False)
            return await self._lcm.package_status(
                request.tenantId, request.hostIp, request.packageId
            )

        response = await self._serve("queryPackageStatus", context, call, package=request.packageId)
        return pb.QueryPackageStatusResponse(response=response)

    async def workloadEvents(
        self, request: pb.WorkloadEventsRequest, context: Context
    ) -> pb.WorkloadEventsResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=False)
            return await self._lcm.workload_events(
                request.tenantId, request.hostIp, request.appInstanceId
            )

        response = await self._serve(
            "workloadEvents", context, call, instance=request.appInstanceId
        )
        return pb.WorkloadEventsResponse(response=response)

    async def removeConfig(
        self, request: pb.RemoveCfgRequest, context: Context
    ) -> pb.RemoveCfgResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=True)
            return await self._lcm.remove_config(request.tenantId, request.hostIp)

        status = await self._serve("removeConfig", context, call, host=request.hostIp)
        return pb.RemoveCfgResponse(status=status)

    async def deletePackage(
        self, request: pb.DeletePackageRequest, context: Context
    ) -> pb.DeletePackageResponse:
        async def call() -> str:
            self._check(request.accessToken, request.tenantId, write=True)
            return await self._lcm.delete_package(
                request.tenantId, request.hostIp, request.appPackageId
            )

        status = await self._serve("deletePackage", context, call, package=request.appPackageId)
        return pb.DeletePackageResponse(status=status)

    async def uploadConfig(
        self, request_iterator: AsyncIterator[pb.UploadCfgRequest], context: Context
    ) -> pb.UploadCfgResponse:
        async def call() -> str:
            meta: dict[str, str] = {}
            content = bytearray()
            async for message in request_iterator:
                field = message.WhichOneof("data")
                if field == "configFile":
                    if not content:
                        _require(meta, ("accessToken", "tenantId", "hostIp"))
                        self._check(meta["accessToken"], meta["tenantId"], write=True)
                    content += message.configFile
                    if len(content) > MAX_KUBECONFIG_BYTES:
                        raise AdapterError(
                            ErrorKind.TOO_LARGE,
                            f"the config file is larger than {MAX_KUBECONFIG_BYTES} bytes",
                        )
                elif field is not None:
                    _metadata(meta, field, str(getattr(message, field)), bool(content))
            _require(meta, ("accessToken", "tenantId", "hostIp"))
            if not content:
                self._check(meta["accessToken"], meta["tenantId"], write=True)
            return await self._lcm.upload_config(meta["tenantId"], meta["hostIp"], bytes(content))

        status = await self._serve("uploadConfig", context, call)
        return pb.UploadCfgResponse(status=status)

    async def uploadPackage(
        self, request_iterator: AsyncIterator[pb.UploadPackageRequest], context: Context
    ) -> pb.UploadPackageResponse:
        wanted = ("accessToken", "appPackageId", "hostIp", "tenantId")

        async def call() -> str:
            meta: dict[str, str] = {}
            with self._lcm.incoming_package() as incoming:
                started = False
                async for message in request_iterator:
                    field = message.WhichOneof("data")
                    if field == "package":
                        if not started:
                            _require(meta, wanted)
                            self._check(meta["accessToken"], meta["tenantId"], write=True)
                            started = True
                        incoming.write(message.package)
                    elif field is not None:
                        _metadata(meta, field, str(getattr(message, field)), started)
                _require(meta, wanted)
                if not started:
                    self._check(meta["accessToken"], meta["tenantId"], write=True)
                return await self._lcm.upload_package(
                    meta["tenantId"], meta["hostIp"], meta["appPackageId"], incoming
                )

        status = await self._serve("uploadPackage", context, call)
        return pb.UploadPackageResponse(status=status)


def _metadata(meta: dict[str, str], field: str, value: str, after_data: bool) -> None:
    if after_data:
        raise AdapterError(ErrorKind.INVALID, f"{field} arrived after the file had started")
    meta[field] = value


def _require(meta: dict[str, str], fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in meta]
    if missing:
        raise AdapterError(
            ErrorKind.INVALID, f"the stream must start with {', '.join(missing)} before the file"
        )
