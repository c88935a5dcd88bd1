"""Durable state: subscriptions, in one SQLite file (WAL).

What lives here is what SPEC §6 promises survives a restart: every accepted
subscription until it is deleted or expires. MP1 registrations are not stored: their
service names are derived from what they serve, so the registrar recognises its own
instances in the MEP's list after a restart.

Sequence numbers
    Each subscription's last assigned notification ``sequence`` is kept in memory
    and written in batches (``flush_interval``, default one second, and on close),
    never once per notification. Clients must never see a number twice, so the
    store remembers whether it was closed cleanly: after a clean close numbering
    continues at the next number; after a crash every subscription's sequence jumps
    ahead by ``CRASH_SEQUENCE_GAP``, more than can be assigned between two flushes.
    A restart may therefore skip numbers, and never reuses one.

Schema
    Versioned with ``PRAGMA user_version``; ``_MIGRATIONS[n]`` brings version ``n`` to
    ``n + 1``. A file newer than this code is refused rather than misread. Files made
    by earlier versions hold an empty ``registrations`` table that nothing reads; new
    files no longer get one (the schema version is unchanged, so a rollback still opens
    them).

Failures
    A file that cannot be used at start (corrupt, a directory, in a directory that cannot
    be written) is a ``StoreError`` whose detail names the path and the problem in one
    line; so is any later SQLite failure (an API caller sees 503). The file is watched
    while open: deleted or replaced underneath the adapter, SQLite keeps writing to the
    old, unlinked file and everything would be gone at the next start, so ``status()``
    says so, ``lost`` is set, ``mka_store_file_ok`` drops to 0 and an error is logged.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite
import structlog

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind
from mep_kubeedge_adapter.observability import Metrics

__all__ = [
    "CRASH_SEQUENCE_GAP",
    "StoreError",
    "StoredSubscription",
    "SubscriptionStore",
]

log = structlog.get_logger(__name__)

CRASH_SEQUENCE_GAP = 1_000_000
"""How far sequences jump after an unclean stop: above any count one flush interval can assign."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            base_url TEXT NOT NULL,
            created INTEGER NOT NULL,
            expiry INTEGER,
            sequence INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX subscriptions_expiry ON subscriptions (expiry) WHERE expiry IS NOT NULL",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # Who made each subscription: the token subject that owns it, and whom the
        # per-caller cap counts it against.
        "ALTER TABLE subscriptions ADD COLUMN owner TEXT",
        "ALTER TABLE subscriptions ADD COLUMN caller TEXT NOT NULL DEFAULT ''",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(AdapterError):
    """The state file cannot be used (newer schema, not open)."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.UNAVAILABLE, detail, title="State store unavailable")


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """A subscription row. ``body`` is the request as JSON data; times are Unix ms."""

    id: str
    body: Mapping[str, Any]
    base_url: str
    created: int
    expiry: int | None
    sequence: int
    """The last sequence number assigned (0: none yet)."""
    owner: str | None = None
    """The token subject that owns it (None: made without auth)."""
    caller: str = ""
    """Whom the per-caller cap counts it against (``Caller.quota_key``)."""


class SubscriptionStore:
    """The SQLite state file. ``async with SubscriptionStore(path) as store: ...``.

    Owns one connection; :meth:`run_flusher` is the loop that writes sequence numbers
    (the service supervises it); ``close()`` flushes, marks the file as cleanly closed and closes the connection.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        flush_interval: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._path = Path(path)
        self._flush_interval = flush_interval
        self._metrics = metrics
        self._db: aiosqlite.Connection | None = None
        self._dirty: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._identity: tuple[int, int] | None = None
        self._file_state = "ok"
        self.lost = asyncio.Event()
        """Set once the file was found deleted or replaced while open (it stays set)."""

    @property
    def path(self) -> Path:
        return self._path

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SubscriptionStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open (creating if needed), migrate, and recover sequences after an unclean stop.

        Raises ``StoreError`` naming the path and the problem if the file cannot be used.
        """
        if self._db is not None:
            return
        on_disk = str(self._path) != ":memory:"
        if on_disk:
            self._prepare_file()
        try:
            db = await aiosqlite.connect(self._path)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await self._migrate(db)
            await self._recover(db)
        except sqlite3.Error as exc:
            await db.close()
            raise self._unusable(exc) from exc
        except BaseException:
            await db.close()
            raise
        self._db = db
        self._identity = self._stat() if on_disk else None
        self._set_file_state("ok")

    def _prepare_file(self) -> None:
        """Check what SQLite would only report as "unable to open database file"."""
        path = self._path
        if path.is_dir():
            raise StoreError(f"the state store {path} is a directory, not a file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"the state store {path}: cannot create the directory {path.parent}: "
                f"{exc.strerror or exc}"
            ) from exc
        if path.exists():
            return
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(
                f"the state store {path}: cannot create the file: {exc.strerror or exc} "
                f"(the directory {path.parent} must be writable)"
            ) from exc

    def _unusable(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        path = self._path
        if "file is not a database" in text:
            problem = "is not an SQLite database (a corrupt file, or another kind of file)"
        elif "readonly" in text or "unable to open" in text:
            problem = (
                f"cannot be opened for writing ({text}); SQLite also creates "
                f"{path.name}-wal and {path.name}-shm in {path.parent}, which must be writable"
            )
        else:
            problem = f"cannot be used: {text}"
        return StoreError(f"the state store {path} {problem}")

    @contextlib.asynccontextmanager
    async def _writing(self, action: str) -> AsyncIterator[None]:
        """A write transaction; an SQLite failure rolls it back and becomes a ``StoreError``
        (503 to API callers)."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    await self._db.rollback()
            raise StoreError(f"the state store {self._path} could not {action}: {exc}") from exc

    # ------------------------------------------------------------------ the file

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)

    def check_file(self) -> str:
        """Whether the file at the path is still the one open: ``ok``, ``deleted`` or
        ``replaced`` (the last two stay, since SQLite keeps writing to the old file)."""
        if self._identity is None or self._file_state != "ok":
            return self._file_state
        current = self._stat()
        if current == self._identity:
            return "ok"
        state = "deleted" if current is None else "replaced"
        self._set_file_state(state)
        log.error("store_file_lost", path=str(self._path), state=state, problem=self._problem())
        return state

    def status(self) -> dict[str, str]:
        """For ``/readyz``: the path, ``state`` and, when it is not ``ok``, the ``problem``."""
        status = {"path": str(self._path), "state": self._file_state}
        if self._file_state != "ok":
            status["problem"] = self._problem()
        return status

    def _problem(self) -> str:
        return (
            f"the state file was {self._file_state} while the adapter had it open; what was "
            "accepted since it opened is kept only in memory and in the unlinked file, and "
            "will be lost at the next restart"
        )

    def _set_file_state(self, state: str) -> None:
        self._file_state = state
        if state != "ok":
            self.lost.set()
        if self._metrics is not None:
            self._metrics.store_file_ok.set(1 if state == "ok" else 0)

    async def close(self) -> None:
        """Flush pending sequences, record a clean close, release the file."""
        db = self._db
        if db is None:
            return
        try:
            await self.flush_sequences()
            await db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('clean_close', '1')"
            )
            await db.commit()
        finally:
            self._db = None
            await db.close()

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        async with db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the state file has schema version {version}; this adapter knows up to "
                f"{SCHEMA_VERSION}"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version={step + 1}")
            await db.commit()

    @staticmethod
    async def _recover(db: aiosqlite.Connection) -> None:
        """Skip sequence numbers that may have been used but not flushed before a crash."""
        async with db.execute("SELECT value FROM meta WHERE name = 'clean_close'") as cursor:
            row = await cursor.fetchone()
        clean = row is None or row[0] == "1"
        if not clean:
            await db.execute(
                "UPDATE subscriptions SET sequence = sequence + ?", (CRASH_SEQUENCE_GAP,)
            )
            log.warning("store_recovered_unclean_stop", sequence_gap=CRASH_SEQUENCE_GAP)
        await db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('clean_close', '0')")
        await db.commit()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the state store is not open")
        return self._db

    # -------------------------------------------------------------- subscriptions

    async def create(self, record: StoredSubscription) -> None:
        db = self._conn()
        async with self._writing("store a subscription"):
            await db.execute(
                f"INSERT INTO subscriptions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    json.dumps(record.body, separators=(",", ":")),
                    record.base_url,
                    record.created,
                    record.expiry,
                    record.sequence,
                    record.owner,
                    record.caller,
                ),
            )
            await db.commit()

    async def get(self, subscription_id: str) -> StoredSubscription | None:
        async with self._conn().execute(
            f"SELECT {_COLUMNS} FROM subscriptions WHERE id = ?",
            (subscription_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else self._with_dirty(_subscription(row))

    async def list(self) -> builtins.list[StoredSubscription]:
        async with self._conn().execute(
            f"SELECT {_COLUMNS} FROM subscriptions ORDER BY created, id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [self._with_dirty(_subscription(row)) for row in rows]

    async def delete(self, subscription_id: str) -> bool:
        """Remove a subscription; False if there was none."""
        db = self._conn()
        self._dirty.pop(subscription_id, None)
        async with self._writing("remove a subscription"):
            cursor = await db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            await db.commit()
        return cursor.rowcount > 0

    async def expire_before(self, timestamp: int) -> builtins.list[str]:
        """Delete subscriptions whose expiry is at or before ``timestamp`` (ms); their ids."""
        db = self._conn()
        async with db.execute(
            "SELECT id FROM subscriptions WHERE expiry IS NOT NULL AND expiry <= ?", (timestamp,)
        ) as cursor:
            ids = [str(row[0]) for row in await cursor.fetchall()]
        if ids:
            async with self._writing("remove expired subscriptions"):
                await db.executemany("DELETE FROM subscriptions WHERE id = ?", [(i,) for i in ids])
                await db.commit()
            for subscription_id in ids:
                self._dirty.pop(subscription_id, None)
        return ids

    def note_sequence(self, subscription_id: str, sequence: int) -> None:
        """Remember the last assigned sequence; written at the next flush. Never blocks."""
        self._dirty[subscription_id] = sequence

    async def flush_sequences(self) -> None:
        """Write every sequence noted since the last flush in one transaction."""
        if not self._dirty or self._db is None:
            return
        async with self._lock:
            dirty, self._dirty = self._dirty, {}
            try:
                await self._db.executemany(
                    "UPDATE subscriptions SET sequence = MAX(sequence, ?) WHERE id = ?",
                    [(sequence, sid) for sid, sequence in dirty.items()],
                )
                await self._db.commit()
            except BaseException:
                for sid, sequence in dirty.items():
                    self._dirty[sid] = max(sequence, self._dirty.get(sid, 0))
                raise

    async def run_flusher(self) -> None:
        """Flush noted sequences and check the file every ``flush_interval`` seconds, until
        cancelled; the owner runs it as a supervised task while the store is open."""
        while True:
            await asyncio.sleep(self._flush_interval)
            self.check_file()
            try:
                await self.flush_sequences()
            except Exception as exc:
                log.error("store_sequence_flush_failed", exc_info=exc)

    def _with_dirty(self, record: StoredSubscription) -> StoredSubscription:
        pending = self._dirty.get(record.id)
        if pending is None or pending <= record.sequence:
            return record
        return dataclasses.replace(record, sequence=pending)


_COLUMNS = "id, body, base_url, created, expiry, sequence, owner, caller"


def _subscription(row: Any) -> StoredSubscription:
    body = json.loads(row[1])
    return StoredSubscription(
        id=str(row[0]),
        body=body if isinstance(body, dict) else {},
        base_url=str(row[2]),
        created=int(row[3]),
        expiry=None if row[4] is None else int(row[4]),
        sequence=int(row[5]),
        owner=None if row[6] is None else str(row[6]),
        caller=str(row[7]),
    )
