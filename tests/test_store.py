"""The SQLite state file: subscriptions, sequences across restarts, registrations, schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mep_kubeedge_adapter.store import (
    CRASH_SEQUENCE_GAP,
    SCHEMA_VERSION,
    Registration,
    StoredSubscription,
    StoreError,
    SubscriptionStore,
)


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


async def test_registrations(tmp_path: Path) -> None:
    async with SubscriptionStore(tmp_path / "s.sqlite3") as store:
        reg = Registration("kubeedge-devices-edge-1", "abc123", "node", "edge-1")
        await store.put_registration(reg)
        assert await store.get_registration(reg.ser_name) == reg
        moved = Registration(reg.ser_name, "def456", "node", "edge-1")
        await store.put_registration(moved)
        assert await store.list_registrations() == [moved]
        assert await store.delete_registration(reg.ser_name)
        assert await store.get_registration(reg.ser_name) is None
        assert not await store.delete_registration(reg.ser_name)


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
