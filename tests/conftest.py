"""Fixtures shared by every test package: a private mosquitto broker on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mep_kubeedge_adapter.emulators.broker import MosquittoBroker


@pytest.fixture
async def broker() -> AsyncIterator[MosquittoBroker]:
    """A started mosquitto on a free 127.0.0.1 port, stopped after the test.

    Tests may `await broker.stop()` and `await broker.start()` to simulate an outage; the port
    stays the same.
    """
    async with MosquittoBroker() as running:
        yield running
