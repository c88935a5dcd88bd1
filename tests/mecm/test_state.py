"""The plugin's state store on its own: bounded purges, and a data directory of the version
before bounds (no package sizes, no termination times) opened as it is."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from mep_kubeedge_adapter.mecm import state
from mep_kubeedge_adapter.mecm.state import PURGE_BATCH, InstanceRecord, LcmStore
from tests.mecm.conftest import ManualClock

HOUR_MS = 3600 * 1000


def _terminated(instance_id: str) -> InstanceRecord:
    return InstanceRecord(instance_id, "t", "10.0.0.1", "p", "ns", "node", False, (), "terminated")


async def test_a_purge_does_a_bounded_batch_of_work(tmp_path: Path) -> None:
    clock = ManualClock()
    async with LcmStore(tmp_path, retention_ms=HOUR_MS, clock=clock) as store:
        for number in range(PURGE_BATCH + 10):
            await store.put_instance(_terminated(f"app-{number}"))
        clock.advance(HOUR_MS - 1)
        assert await store.purge_terminated() == 0
        assert await store.instance("app-0") is not None
        clock.advance(1)
        assert await store.instance("app-0") is None  # forgotten before it is purged
        assert await store.knows("app-0")
        assert await store.purge_terminated() == PURGE_BATCH
        assert await store.purge_terminated() == 10
        assert not await store.knows("app-0")


async def test_beyond_the_cap_the_oldest_terminated_are_forgotten(tmp_path: Path) -> None:
    clock = ManualClock()
    async with LcmStore(tmp_path, max_terminated=3, clock=clock) as store:
        for number in range(5):
            await store.put_instance(_terminated(f"app-{number}"))
            clock.advance(1)
        assert [await store.instance(f"app-{n}") is not None for n in range(5)] == [
            False,
            False,
            True,
            True,
            True,
        ]
        assert await store.purge_terminated() == 2
        assert [await store.knows(f"app-{n}") for n in range(5)] == [False, False, True, True, True]


_EARLIER_SCHEMA = (
    "CREATE TABLE configs (tenant TEXT NOT NULL, host TEXT NOT NULL, PRIMARY KEY (tenant, host))",
    "CREATE TABLE packages (tenant TEXT NOT NULL, host TEXT NOT NULL, package_id TEXT NOT NULL, "
    "deploy TEXT NOT NULL, artifacts TEXT NOT NULL, metadata TEXT NOT NULL, "
    "PRIMARY KEY (tenant, host, package_id))",
    "CREATE TABLE instances (instance_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
    "host TEXT NOT NULL, package_id TEXT NOT NULL, namespace TEXT NOT NULL, "
    "node TEXT NOT NULL, created_namespace INTEGER NOT NULL, objects TEXT NOT NULL, "
    "state TEXT NOT NULL)",
)


async def _earlier_data_directory(tmp_path: Path) -> None:
    """A data directory as an earlier version left it: a 1,000-byte package without its
    size on disk and a terminated instance without the time it ended."""
    async with LcmStore(tmp_path, clock=ManualClock()) as store:
        package_dir = store.package_dir("t", "10.0.0.1", "p")
    (tmp_path / "state.sqlite3").unlink()
    package_dir.mkdir()
    (package_dir / "TOSCA-Metadata").mkdir()
    (package_dir / "TOSCA-Metadata" / "TOSCA.meta").write_bytes(b"x" * 300)
    (package_dir / "chart.tgz").write_bytes(b"y" * 700)
    with contextlib.closing(sqlite3.connect(tmp_path / "state.sqlite3")) as db:
        for statement in _EARLIER_SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT INTO packages VALUES (?, ?, ?, ?, ?, ?)",
            ("t", "10.0.0.1", "p", "chart", json.dumps(["chart.tgz"]), "{}"),
        )
        db.execute(
            "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("app-old", "t", "10.0.0.1", "p", "ns", "node", 0, "[]", "terminated"),
        )
        db.commit()


async def test_an_earlier_data_directory_gains_sizes_and_termination_times(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    await _earlier_data_directory(tmp_path)

    async with LcmStore(tmp_path, retention_ms=HOUR_MS, clock=clock) as store:
        package = await store.package("t", "10.0.0.1", "p")
        assert package is not None and package.disk_bytes == 1000
        assert await store.stored_package_bytes() == 1000
        old = await store.instance("app-old")
        assert old is not None and old.terminated_at == clock.now
    clock.advance(HOUR_MS)
    async with LcmStore(tmp_path, retention_ms=HOUR_MS, clock=clock) as store:
        assert not await store.knows("app-old")  # purged when the store opened


async def test_an_upgrade_cut_short_is_done_again_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade adds columns, then fills them in: a start that ends between the two (here
    a package's size cannot be read) leaves nothing half done for the next start."""
    await _earlier_data_directory(tmp_path)

    def unreadable(path: Path) -> int:
        raise OSError(f"cannot read {path}")

    with monkeypatch.context() as patched:
        patched.setattr(state, "directory_bytes", unreadable)
        with pytest.raises(OSError, match="cannot read"):
            async with LcmStore(tmp_path, clock=ManualClock()):
                pass

    async with LcmStore(tmp_path, clock=ManualClock()) as store:
        package = await store.package("t", "10.0.0.1", "p")
        assert package is not None and package.disk_bytes == 1000
        assert await store.stored_package_bytes() == 1000
