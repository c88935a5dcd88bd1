"""The plugin's durable state: SQLite records plus a data directory, surviving restarts.

Layout of ``MKA_MECM__DATA_DIR`` (created 0700)::

    state.sqlite3          configs, packages and app instances
    kubeconfigs/<key>.yaml one per (tenant, hostIp), written 0600, never logged
    packages/<key>/        one unpacked CSAR per (tenant, hostIp, packageId)
    incoming/              uploads in progress; emptied at every start

``<key>`` is a hash of the identifiers, so no caller-chosen text becomes a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiosqlite

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["InstanceRecord", "LcmStore", "ObjectRef", "PackageRecord"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS configs (
        tenant TEXT NOT NULL, host TEXT NOT NULL, PRIMARY KEY (tenant, host))""",
    """CREATE TABLE IF NOT EXISTS packages (
        tenant TEXT NOT NULL, host TEXT NOT NULL, package_id TEXT NOT NULL,
        deploy TEXT NOT NULL, artifacts TEXT NOT NULL, metadata TEXT NOT NULL,
        PRIMARY KEY (tenant, host, package_id))""",
    """CREATE TABLE IF NOT EXISTS instances (
        instance_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, host TEXT NOT NULL,
        package_id TEXT NOT NULL, namespace TEXT NOT NULL, node TEXT NOT NULL,
        created_namespace INTEGER NOT NULL, objects TEXT NOT NULL, state TEXT NOT NULL)""",
)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object an instance created (``namespace`` empty for cluster-scoped objects)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class PackageRecord:
    tenant: str
    host: str
    package_id: str
    deploy: Literal["chart", "manifests"]
    artifacts: tuple[str, ...]
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    instance_id: str
    tenant: str
    host: str
    package_id: str
    namespace: str
    node: str
    created_namespace: bool
    objects: tuple[ObjectRef, ...]
    state: Literal["instantiated", "terminated"]


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


class LcmStore:
    """``async with LcmStore(data_dir) as store``: one SQLite connection and the directories."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Self:
        for sub in ("", "kubeconfigs", "packages", "incoming"):
            (self.data_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.data_dir / sub, 0o700)
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        self.incoming_dir.mkdir(mode=0o700)
        db = await aiosqlite.connect(self.data_dir / "state.sqlite3")
        await db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            await db.execute(statement)
        await db.commit()
        self._db = db
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise AdapterError(ErrorKind.UNAVAILABLE, "the plugin's state store is closed")
        return self._db

    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    # ---------------------------------------------------------------- kubeconfigs

    def kubeconfig_path(self, tenant: str, host: str) -> Path:
        return self.data_dir / "kubeconfigs" / f"{_key(tenant, host)}.yaml"

    async def put_config(self, tenant: str, host: str, content: bytes) -> Path:
        """Write the kubeconfig (0600, atomically) and record it."""
        path = self.kubeconfig_path(tenant, host)
        scratch = path.with_suffix(".tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(scratch, 0o600)
        os.replace(scratch, path)
        await self.db.execute(
            "INSERT OR IGNORE INTO configs (tenant, host) VALUES (?, ?)", (tenant, host)
        )
        await self.db.commit()
        return path

    async def config(self, tenant: str, host: str) -> Path | None:
        async with self.db.execute(
            "SELECT 1 FROM configs WHERE tenant = ? AND host = ?", (tenant, host)
        ) as cursor:
            found = await cursor.fetchone()
        path = self.kubeconfig_path(tenant, host)
        return path if found is not None and path.exists() else None

    async def delete_config(self, tenant: str, host: str) -> bool:
        cursor = await self.db.execute(
            "DELETE FROM configs WHERE tenant = ? AND host = ?", (tenant, host)
        )
        await self.db.commit()
        self.kubeconfig_path(tenant, host).unlink(missing_ok=True)
        return cursor.rowcount > 0

    # ------------------------------------------------------------------- packages

    def package_dir(self, tenant: str, host: str, package_id: str) -> Path:
        return self.data_dir / "packages" / _key(tenant, host, package_id)

    async def put_package(self, record: PackageRecord, unpacked: Path) -> None:
        """Move ``unpacked`` into place (replacing an older upload) and record the package."""
        target = self.package_dir(record.tenant, record.host, record.package_id)
        if target.exists():
            retired = self.incoming_dir / f"retired-{target.name}"
            os.replace(target, retired)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(unpacked, target)
        await self.db.execute(
            "INSERT OR REPLACE INTO packages VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.tenant,
                record.host,
                record.package_id,
                record.deploy,
                json.dumps(list(record.artifacts)),
                json.dumps(record.metadata),
            ),
        )
        await self.db.commit()

    async def package(self, tenant: str, host: str, package_id: str) -> PackageRecord | None:
        async with self.db.execute(
            "SELECT deploy, artifacts, metadata FROM packages "
            "WHERE tenant = ? AND host = ? AND package_id = ?",
            (tenant, host, package_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        deploy: Literal["chart", "manifests"] = "chart" if row[0] == "chart" else "manifests"
        artifacts = tuple(str(a) for a in json.loads(row[1]))
        return PackageRecord(tenant, host, package_id, deploy, artifacts, json.loads(row[2]))

    async def delete_package(self, tenant: str, host: str, package_id: str) -> bool:
        cursor = await self.db.execute(
            "DELETE FROM packages WHERE tenant = ? AND host = ? AND package_id = ?",
            (tenant, host, package_id),
        )
        await self.db.commit()
        shutil.rmtree(self.package_dir(tenant, host, package_id), ignore_errors=True)
        return cursor.rowcount > 0

    # ------------------------------------------------------------------ instances

    async def put_instance(self, record: InstanceRecord) -> None:
        objects = [[o.api_version, o.kind, o.namespace, o.name] for o in record.objects]
        await self.db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.instance_id,
                record.tenant,
                record.host,
                record.package_id,
                record.namespace,
                record.node,
                int(record.created_namespace),
                json.dumps(objects),
                record.state,
            ),
        )
        await self.db.commit()

    async def instance(self, instance_id: str) -> InstanceRecord | None:
        async with self.db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _instance(row)

    async def live_instances(self) -> list[InstanceRecord]:
        """Every instance not terminated (instantiated, or its instantiation under way)."""
        async with self.db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state != 'terminated' "
            "ORDER BY instance_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [_instance(row) for row in rows]


_INSTANCE_COLUMNS = (
    "instance_id, tenant, host, package_id, namespace, node, created_namespace, objects, state"
)


def _instance(row: Any) -> InstanceRecord:
    objects = tuple(ObjectRef(*(str(p) for p in o)) for o in json.loads(row[7]))
    state: Literal["instantiated", "terminated"] = (
        "terminated" if row[8] == "terminated" else "instantiated"
    )
    return InstanceRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), objects, state
    )
