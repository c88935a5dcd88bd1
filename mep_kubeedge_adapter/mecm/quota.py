"""The bounds on what callers can make the plugin keep (the ``mecm`` settings' ``max_*``).

A check answers nothing or raises ``QUOTA_EXCEEDED`` (gRPC ``RESOURCE_EXHAUSTED``, which
lcmcontroller answers with 500). The message names the limit, its setting and the way out,
and never says "not found" (lcmcontroller would answer 404). Replacing what is stored under
the same key (a package uploaded again, a kubeconfig uploaded again, an instance instantiated
again) needs no room; only its bytes count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["Holdings", "Limits", "UploadSlots", "check_package_bytes"]


@dataclass(frozen=True, slots=True)
class Limits:
    configs: int
    configs_per_tenant: int
    packages: int
    packages_per_tenant: int
    stored_package_bytes: int
    instances: int
    instances_per_tenant: int
    uploads_in_progress: int

    def check_room(
        self,
        kind: Literal["configs", "packages", "instances"],
        held: Holdings,
        *,
        what: str,
        remedy: str,
    ) -> None:
        """Room for one more of ``kind`` (``what`` names it to the caller), or QUOTA_EXCEEDED.

        The bounds are the fields ``<kind>_per_tenant`` and ``<kind>``, set by
        ``MKA_MECM__MAX_<KIND>_PER_TENANT`` and ``MKA_MECM__MAX_<KIND>``.
        """
        per_tenant: int = getattr(self, f"{kind}_per_tenant")
        total: int = getattr(self, kind)
        setting = f"MKA_MECM__MAX_{kind.upper()}"
        if held.tenant >= per_tenant:
            raise _exhausted(
                f"this tenant already holds {held.tenant} {what}, the most allowed "
                f"({setting}_PER_TENANT={per_tenant}); {remedy}"
            )
        if held.total >= total:
            raise _exhausted(
                f"the plugin already holds {held.total} {what}, the most allowed "
                f"({setting}={total}); {remedy}"
            )


@dataclass(frozen=True, slots=True)
class Holdings:
    """How many of one kind are kept: for the caller's tenant, and for all tenants."""

    tenant: int
    total: int


def _exhausted(detail: str) -> AdapterError:
    return AdapterError(ErrorKind.QUOTA_EXCEEDED, detail)


def check_package_bytes(new: int, stored: int, replaced: int, limit: int) -> None:
    """Room on disk for a package of ``new`` bytes (unpacked) that replaces one of
    ``replaced`` bytes (0 for a new package), with ``stored`` bytes of packages kept."""
    if stored - replaced + new > limit:
        raise _exhausted(
            f"the package takes {new} bytes unpacked and the stored packages {stored}, beyond "
            f"the {limit} bytes allowed (MKA_MECM__MAX_STORED_PACKAGE_BYTES); delete packages "
            "first"
        )


class UploadSlots:
    """Package uploads received and unpacked at once (each holds up to a CSAR and its
    unpacked files on disk). Used on the event loop's thread only."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.taken = 0

    def take(self) -> None:
        """One slot, or QUOTA_EXCEEDED when all are taken (the caller tries again later)."""
        if self.taken >= self._limit:
            raise _exhausted(
                f"{self.taken} package uploads are in progress, the most allowed "
                f"(MKA_MECM__MAX_UPLOADS_IN_PROGRESS={self._limit}); upload again when one has "
                "finished"
            )
        self.taken += 1

    def give_back(self) -> None:
        self.taken -= 1
