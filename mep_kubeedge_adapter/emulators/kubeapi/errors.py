"""API errors as the real API server words and shapes them (``meta/v1 Status`` bodies).

One constructor per failure the fake can answer, so every message a client may match on is
written once, in the wording of ``k8s.io/apimachinery/pkg/api/errors``: a ``NotFound`` names
the qualified resource (``pods``, ``deployments.apps``) in ``details.kind``, an ``Invalid``
names the Kind and lists ``details.causes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "invalid",
    "method_not_allowed",
    "namespace_terminating",
    "not_found",
    "service_unavailable",
    "status_body",
    "storage_initializing",
    "unknown_resource",
]


class ApiError(Exception):
    """An error answered as a ``Status`` object, exactly as the real API server shapes it.

    ``plain_text`` answers the body as text instead (what the aggregator's proxy does).
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        plain_text: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details is not None else None
        self.headers = dict(headers or {})
        self.plain_text = plain_text

    def body(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A ``meta/v1 Status`` failure object."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = dict(details)
    return body


def _details(group: str, resource: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = resource
    return details


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    """``pods "web" not found`` / ``deployments.apps "web" not found``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(group, resource)} "{name}" not found',
        _details(group, resource, name),
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


def conflict(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": the object '
        "has been modified; please apply your changes to the latest version and try again",
        _details(group, resource, name),
    )


def forbidden(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(group, resource)} "{name}" is forbidden: {why}',
        _details(group, resource, name),
    )


def namespace_terminating(group: str, resource: str, name: str, namespace: str) -> ApiError:
    """What NamespaceLifecycle admission answers for a create in a Terminating namespace."""
    why = f"unable to create new content in namespace {namespace} because it is being terminated"
    err = forbidden(group, resource, name, why)
    assert err.details is not None
    err.details["causes"] = [
        {"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}
    ]
    return err


def invalid(group: str, kind: str, name: str, causes: Sequence[tuple[str, str, str]]) -> ApiError:
    """``422 Invalid``; ``causes`` are ``(reason, field, message)`` as field.Error renders them.

    ``reason`` is one of ``FieldValueInvalid``, ``FieldValueRequired``,
    ``FieldValueNotSupported``, ``FieldValueForbidden``, ``FieldValueTooLong``.
    """
    qualified = f"{kind}.{group}" if group else kind
    summary = [f"{field}: {message}" for _, field, message in causes]
    text = summary[0] if len(summary) == 1 else "[" + ", ".join(summary) + "]"
    details: dict[str, Any] = {"name": name} if name else {}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [
        {"reason": reason, "message": message, "field": field} for reason, field, message in causes
    ]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(rv: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


def storage_initializing() -> ApiError:
    """A restarted API server's answer to a watch while its watch cache is still filling
    (``NewTooManyRequests("storage is (re)initializing", 1)`` in the cacher)."""
    return ApiError(
        429,
        "TooManyRequests",
        "storage is (re)initializing",
        {"retryAfterSeconds": 1},
        headers={"Retry-After": "1"},
    )


def service_unavailable(retry_after: int = 5) -> ApiError:
    """A starting API server's answer before it serves the resource at all."""
    return ApiError(
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def unknown_resource() -> ApiError:
    """The generic 404 for a path the server does not serve."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )
