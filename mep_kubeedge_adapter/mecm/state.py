"""The plugin's durable state: SQLite records plus a data directory, surviving restarts.

Layout of ``MKA_MECM__DATA_DIR`` (created 0700)::

    state.sqlite3          configs, packages and app instances
    kubeconfigs/<key>.yaml one per (tenant, hostIp), written 0600, never logged
    packages/<key>/        one unpacked CSAR per (tenant, hostIp, packageId)
    incoming/              uploads in progress; emptied at every start

``<key>`` is a hash of the identifiers, so no caller-chosen text becomes a path.

Terminated app instances are remembered for ``retention_ms`` after their termination (so
that terminating one again answers ``Success``), and at most ``max_terminated`` of them; past
either bound a record is as good as gone for every caller (:meth:`LcmStore.instance`) and is
purged by :meth:`LcmStore.purge_terminated`, which the terminate use case calls after each
termination (at most ``PURGE_BATCH`` records per call) and :meth:`LcmStore.__aenter__` calls
once in full. A terminated record that still holds a namespace it created, kept because other
live instances have objects there, is not purged until that namespace is released
(:meth:`LcmStore.release_namespace`): it is how the last of those instances knows the plugin
created the namespace. Times come from ``clock`` (milliseconds), which tests replace.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import aiosqlite

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind, now_ms
from mep_kubeedge_adapter.mecm.quota import Holdings

__all__ = [
    "PURGE_BATCH",
    "InstanceRecord",
    "LcmStore",
    "ObjectRef",
    "PackageRecord",
    "directory_bytes",
]

PURGE_BATCH: Final = 64
"""Terminated records purged at most per :meth:`LcmStore.purge_terminated` call (each
termination adds one, so the table stays within its bounds)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS configs (
        tenant TEXT NOT NULL, host TEXT NOT NULL, PRIMARY KEY (tenant, host))""",
    """CREATE TABLE IF NOT EXISTS packages (
        tenant TEXT NOT NULL, host TEXT NOT NULL, package_id TEXT NOT NULL,
        deploy TEXT NOT NULL, artifacts TEXT NOT NULL, metadata TEXT NOT NULL,
        disk_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, host, package_id))""",
    """CREATE TABLE IF NOT EXISTS instances (
        instance_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, host TEXT NOT NULL,
        package_id TEXT NOT NULL, namespace TEXT NOT NULL, node TEXT NOT NULL,
        created_namespace INTEGER NOT NULL, objects TEXT NOT NULL, state TEXT NOT NULL,
        terminated_at INTEGER)""",
)
_ADDED_COLUMNS = (
    ("packages", "disk_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("instances", "terminated_at", "INTEGER"),
)
"""Columns a data directory of an earlier version lacks (added at open)."""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS instances_by_tenant ON instances (tenant, state)",
    "CREATE INDEX IF NOT EXISTS instances_by_termination ON instances (state, terminated_at)",
)
_FORGETTABLE = "state = 'terminated' AND objects = '[]'"
"""Terminated records that hold no namespace: the ones retention and the cap apply to."""


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
    disk_bytes: int = 0
    """What the unpacked package takes on disk."""


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An app instance. Once terminated, ``objects`` holds only the namespaces it created
    that were kept for other live instances, and ``terminated_at`` says when (ms)."""

    instance_id: str
    tenant: str
    host: str
    package_id: str
    namespace: str
    node: str
    created_namespace: bool
    objects: tuple[ObjectRef, ...]
    state: Literal["instantiated", "terminated"]
    terminated_at: int | None = None


def directory_bytes(root: Path) -> int:
    """The bytes of the files under ``root`` (blocking)."""
    return sum(
        (Path(where) / name).stat().st_size for where, _, names in os.walk(root) for name in names
    )


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:40]


class LcmStore:
    """``async with LcmStore(data_dir) as store``: one SQLite connection and the directories."""

    def __init__(
        self,
        data_dir: Path,
        *,
        retention_ms: int = 7 * 24 * 3600 * 1000,
        max_terminated: int = 10_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._retention_ms = retention_ms
        self._max_terminated = max_terminated
        self._clock = clock
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Self:
        for sub in ("", "kubeconfigs", "packages", "incoming"):
            (self.data_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.data_dir / sub, 0o700)
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        self.incoming_dir.mkdir(mode=0o700)
        db = await aiosqlite.connect(self.data_dir / "state.sqlite3")
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                await db.execute(statement)
            self._db = db
            await self._upgrade()
            for statement in _INDEXES:
                await db.execute(statement)
            await db.commit()
            await self.purge_terminated(limit=None)
        except BaseException:
            self._db = None
            await db.close()
            raise
        return self

    async def _upgrade(self) -> None:
        """Bring the tables of an earlier version's data directory up to date, in one
        transaction (committed by the caller): SQLite would commit an ``ALTER TABLE`` run
        outside one by itself, and a start cut short before the new column is filled in
        would leave it at its default for good."""
        await self.db.execute("BEGIN")
        for table, column, kind in _ADDED_COLUMNS:
            async with self.db.execute(f"PRAGMA table_info({table})") as cursor:
                present = {str(row[1]) for row in await cursor.fetchall()}
            if column in present:
                continue
            await self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            if column == "disk_bytes":
                async with self.db.execute("SELECT tenant, host, package_id FROM packages") as c:
                    keys = [(str(r[0]), str(r[1]), str(r[2])) for r in await c.fetchall()]
                for key in keys:
                    size = await asyncio.to_thread(directory_bytes, self.package_dir(*key))
                    await self.db.execute(
                        "UPDATE packages SET disk_bytes = ? "
                        "WHERE tenant = ? AND host = ? AND package_id = ?",
                        (size, *key),
                    )
        # Terminated before their time was recorded: remembered from now on.
        await self.db.execute(
            "UPDATE instances SET terminated_at = ? "
            "WHERE state = 'terminated' AND terminated_at IS NULL",
            (self._clock(),),
        )

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

    async def config_holdings(self, tenant: str) -> Holdings:
        return await self._holdings("configs", tenant)

    async def _holdings(self, table: str, tenant: str, where: str = "1") -> Holdings:
        async with self.db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(tenant = ?), 0) FROM {table} WHERE {where}",
            (tenant,),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return Holdings(tenant=int(row[1]), total=int(row[0]))

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
            "INSERT OR REPLACE INTO packages "
            "(tenant, host, package_id, deploy, artifacts, metadata, disk_bytes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                record.tenant,
                record.host,
                record.package_id,
                record.deploy,
                json.dumps(list(record.artifacts)),
                json.dumps(record.metadata),
                record.disk_bytes,
            ),
        )
        await self.db.commit()

    async def package_holdings(self, tenant: str) -> Holdings:
        return await self._holdings("packages", tenant)

    async def stored_package_bytes(self) -> int:
        async with self.db.execute("SELECT COALESCE(SUM(disk_bytes), 0) FROM packages") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def package(self, tenant: str, host: str, package_id: str) -> PackageRecord | None:
        async with self.db.execute(
            "SELECT deploy, artifacts, metadata, disk_bytes FROM packages "
            "WHERE tenant = ? AND host = ? AND package_id = ?",
            (tenant, host, package_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        deploy: Literal["chart", "manifests"] = "chart" if row[0] == "chart" else "manifests"
        artifacts = tuple(str(a) for a in json.loads(row[1]))
        return PackageRecord(
            tenant, host, package_id, deploy, artifacts, json.loads(row[2]), int(row[3])
        )

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
        """Record ``record``; a terminated one without ``terminated_at`` is stamped now."""
        terminated_at = record.terminated_at
        if record.state == "terminated" and terminated_at is None:
            terminated_at = self._clock()
        elif record.state != "terminated":
            terminated_at = None
        await self.db.execute(
            f"INSERT OR REPLACE INTO instances ({_INSTANCE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.instance_id,
                record.tenant,
                record.host,
                record.package_id,
                record.namespace,
                record.node,
                int(record.created_namespace),
                _objects_json(record.objects),
                record.state,
                terminated_at,
            ),
        )
        await self.db.commit()

    async def delete_instance(self, instance_id: str) -> None:
        await self.db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        await self.db.commit()

    async def instance(self, instance_id: str) -> InstanceRecord | None:
        """The instance, or None: unknown, or terminated and forgotten (past the retention,
        or beyond ``max_terminated`` newer ones), purged or not yet."""
        record = await self._record(instance_id)
        if record is None or record.state != "terminated" or record.objects:
            return record
        assert record.terminated_at is not None
        if record.terminated_at + self._retention_ms <= self._clock():
            return None
        async with self.db.execute(
            f"SELECT COUNT(*) FROM instances WHERE {_FORGETTABLE} AND terminated_at > ?",
            (record.terminated_at,),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return None if int(row[0]) >= self._max_terminated else record

    async def knows(self, instance_id: str) -> bool:
        """Whether any record of the instance is kept, forgotten by :meth:`instance` or not."""
        return await self._record(instance_id) is not None

    async def _record(self, instance_id: str) -> InstanceRecord | None:
        async with self.db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?", (instance_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _instance(row)

    async def live_holdings(self, tenant: str) -> Holdings:
        """Instances not terminated, of ``tenant`` and in all."""
        return await self._holdings("instances", tenant, "state != 'terminated'")

    async def purge_terminated(self, limit: int | None = PURGE_BATCH) -> int:
        """Delete up to ``limit`` (None: all) forgotten terminated records, oldest first:
        those past the retention, then those beyond ``max_terminated``. How many went."""
        batch = -1 if limit is None else limit
        cutoff = self._clock() - self._retention_ms
        cursor = await self.db.execute(
            "DELETE FROM instances WHERE instance_id IN (SELECT instance_id FROM instances "
            f"WHERE {_FORGETTABLE} AND terminated_at <= ? ORDER BY terminated_at LIMIT ?)",
            (cutoff, batch),
        )
        purged = max(cursor.rowcount, 0)
        if limit is not None:
            batch = limit - purged
        if batch != 0:
            cursor = await self.db.execute(
                "DELETE FROM instances WHERE instance_id IN (SELECT instance_id FROM ("
                f"SELECT instance_id, terminated_at FROM instances WHERE {_FORGETTABLE} "
                "ORDER BY terminated_at DESC LIMIT -1 OFFSET ?) ORDER BY terminated_at LIMIT ?)",
                (self._max_terminated, batch),
            )
            purged += max(cursor.rowcount, 0)
        await self.db.commit()
        return purged

    async def release_namespace(self, namespace: str) -> None:
        """``namespace`` is gone: terminated records hold it no more (and can be purged)."""
        async with self.db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances "
            "WHERE state = 'terminated' AND objects != '[]'"
        ) as cursor:
            holders = [_instance(row) for row in await cursor.fetchall()]
        for holder in holders:
            kept = tuple(o for o in holder.objects if o.name != namespace)
            if kept != holder.objects:
                await self.db.execute(
                    "UPDATE instances SET objects = ? WHERE instance_id = ?",
                    (_objects_json(kept), holder.instance_id),
                )
        await self.db.commit()

    async def live_instances(self) -> list[InstanceRecord]:
        """Every instance not terminated (instantiated, or its instantiation under way)."""
        async with self.db.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state != 'terminated' "
            "ORDER BY instance_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [_instance(row) for row in rows]


_INSTANCE_COLUMNS = (
    "instance_id, tenant, host, package_id, namespace, node, created_namespace, objects, state, "
    "terminated_at"
)


def _objects_json(objects: tuple[ObjectRef, ...]) -> str:
    return json.dumps([[o.api_version, o.kind, o.namespace, o.name] for o in objects])


def _instance(row: Any) -> InstanceRecord:
    objects = tuple(ObjectRef(*(str(p) for p in o)) for o in json.loads(row[7]))
    state: Literal["instantiated", "terminated"] = (
        "terminated" if row[8] == "terminated" else "instantiated"
    )
    terminated_at = None if row[9] is None else int(row[9])
    return InstanceRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), objects, state, terminated_at
    )
