"""The SQLite state file: subscriptions, sequences across restarts, schema."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.store import (
    _MIGRATIONS,
    CRASH_SEQUENCE_GAP,
    SCHEMA_VERSION,
    StoredSubscription,
    StoreError,
    SubscriptionStore,
)
from mep_kubeedge_adapter.supervisor import Supervisor


def record(sid: str, created: int = 1, expiry: int | None = None) -> StoredSubscription:
    return StoredSubscription(
        id=sid,
        body={"subscriptionType": "DeviceTwinChangeSubscription", "requestWebsocketUri": True},
        base_url="http://gw/app",
        created=created,
        expiry=expiry,
        sequence=0,
    )


async def test_subscriptions_round_trip(tmp_path: Path) -> None:
    async with SubscriptionStore(tmp_path / "s.sqlite3") as store:
        await store.create(record("b", created=2))
        await store.create(record("a", created=1, expiry=500))
        assert [r.id for r in await store.list()] == ["a", "b"]
        got = await store.get("a")
        assert got == record("a", created=1, expiry=500)
        assert await store.get("missing") is None
        assert await store.delete("b")
        assert not await store.delete("b")
        assert [r.id for r in await store.list()] == ["a"]


async def test_expire_before_removes_only_due_subscriptions(tmp_path: Path) -> None:
    async with SubscriptionStore(tmp_path / "s.sqlite3") as store:
        await store.create(record("due", expiry=100))
        await store.create(record("later", expiry=200))
        await store.create(record("never"))
        assert await store.expire_before(100) == ["due"]
        assert sorted(r.id for r in await store.list()) == ["later", "never"]


async def test_sequence_survives_a_clean_restart_exactly(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SubscriptionStore(path, flush_interval=3600) as store:
        await store.create(record("s"))
        for sequence in range(1, 8):
            store.note_sequence("s", sequence)
        got = await store.get("s")
        assert got is not None
        assert got.sequence == 7  # reads see unflushed numbers too
    async with SubscriptionStore(path) as store:
        got = await store.get("s")
        assert got is not None
        assert got.sequence == 7


async def test_sequence_skips_ahead_after_an_unclean_stop(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SubscriptionStore(path, flush_interval=3600) as running:
        await running.create(record("s"))
        running.note_sequence("s", 5)
        await running.flush_sequences()
        running.note_sequence("s", 9)  # assigned, never flushed: the process "dies" here
        # A second process opening the file while the first never closed it sees no clean close.
        async with SubscriptionStore(path) as restarted:
            got = await restarted.get("s")
            assert got is not None
            assert got.sequence == 5 + CRASH_SEQUENCE_GAP
            assert got.sequence > 9


async def test_flush_never_moves_a_sequence_backwards(tmp_path: Path) -> None:
    async with SubscriptionStore(tmp_path / "s.sqlite3") as store:
        await store.create(record("s"))
        store.note_sequence("s", 10)
        await store.flush_sequences()
        store.note_sequence("s", 3)
        await store.flush_sequences()
        got = await store.get("s")
        assert got is not None
        assert got.sequence == 10


async def test_file_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "s.sqlite3"
    async with SubscriptionStore(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    store = SubscriptionStore(path)
    with pytest.raises(StoreError, match="schema version"):
        await store.open()


async def test_use_before_open_is_an_error(tmp_path: Path) -> None:
    store = SubscriptionStore(tmp_path / "s.sqlite3")
    with pytest.raises(StoreError, match="not open"):
        await store.list()


@pytest.mark.parametrize(
    ("make", "name", "problem"),
    [
        (lambda d: (d / "s").write_bytes(b"\x07" * 4096), "s", "is not an SQLite database"),
        (lambda d: (d / "s").write_text("hello"), "s", "is not an SQLite database"),
        (lambda d: (d / "s").mkdir(), "s", "is a directory"),
        (lambda d: (d / "p").write_text(""), "p/s", "cannot create the directory"),
    ],
    ids=["corrupt", "text", "directory", "parent-is-a-file"],
)
async def test_an_unusable_file_is_one_clear_error(
    tmp_path: Path, make: Callable[[Path], object], name: str, problem: str
) -> None:
    make(tmp_path)
    path = tmp_path / name
    with pytest.raises(StoreError) as refused:
        await SubscriptionStore(path).open()
    assert str(path) in refused.value.detail
    assert problem in refused.value.detail
    assert "\n" not in refused.value.detail


async def test_a_directory_that_cannot_be_written_is_one_clear_error() -> None:
    """sysfs refuses new files to every user, root included (a read-only directory)."""
    path = Path("/sys/mka-state.sqlite3")
    with pytest.raises(StoreError) as refused:
        await SubscriptionStore(path).open()
    assert str(path) in refused.value.detail
    assert "cannot create" in refused.value.detail
    assert "Permission denied" in refused.value.detail


@contextlib.asynccontextmanager
async def _flushing(store: SubscriptionStore) -> AsyncIterator[None]:
    """The store's flusher (which also watches the file) under a supervisor, as in the
    service."""
    supervisor = Supervisor()
    supervisor.start("store-flush", store.run_flusher)
    try:
        yield
    finally:
        await supervisor.stop()


async def test_a_file_deleted_while_open_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    metrics = Metrics()
    async with (
        SubscriptionStore(path, flush_interval=0.01, metrics=metrics) as store,
        _flushing(store),
    ):
        assert store.status() == {"path": str(path), "state": "ok"}
        assert metrics.registry.get_sample_value("mka_store_file_ok") == 1
        path.unlink()
        async with asyncio.timeout(10):
            await store.lost.wait()
        status = store.status()
        assert status["state"] == "deleted"
        assert "lost at the next restart" in status["problem"]
        assert metrics.registry.get_sample_value("mka_store_file_ok") == 0


async def test_a_file_replaced_while_open_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SubscriptionStore(path, flush_interval=0.01) as store, _flushing(store):
        path.unlink()
        path.write_bytes(b"")
        async with asyncio.timeout(10):
            await store.lost.wait()
        assert store.status()["state"] == "replaced"


async def test_a_write_that_fails_is_a_store_error(tmp_path: Path) -> None:
    async with SubscriptionStore(tmp_path / "s.sqlite3") as store:
        await store.create(record("a"))
        with pytest.raises(StoreError) as refused:
            await store.create(record("a"))
        assert "UNIQUE" in refused.value.detail


async def test_a_version_1_file_is_migrated_and_its_subscriptions_have_no_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.sqlite3"
    with sqlite3.connect(path) as db:
        for statement in _MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version=1")
        db.execute(
            "INSERT INTO subscriptions (id, body, base_url, created, expiry, sequence) "
            "VALUES ('old', '{}', 'http://gw', 1, NULL, 5)"
        )
    db.close()
    async with SubscriptionStore(path) as store:
        (loaded,) = await store.list()
        assert (loaded.owner, loaded.caller, loaded.sequence) == (None, "", 5)
        await store.create(replace(record("new"), owner="app-a", caller="subject:app-a"))
        assert await store.get("new") == replace(
            record("new"), owner="app-a", caller="subject:app-a"
        )
