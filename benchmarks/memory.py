"""B5 memory: RSS of a real adapter with 10,000 devices x 10 properties and 1,000 subscriptions,
then with every cap reached.

Method: a fresh process starts a real ``Adapter`` (EventBus connected to a broker, API
listener, SQLite store, default settings). Devices join through
``DeviceRegistry.add_member``; each one's ten twins arrive as an EdgeCore twin document
(JSON bytes) handed to the EventBus client's ``handle``, which decodes and applies it as
a received message. Then ten apps (token subjects) create 1,000 subscriptions through
``SubscriptionService.create`` (stored in SQLite, one dispatcher feed each): the default
``MKA_NOTIFY__MAX_SUBSCRIPTIONS`` and ``__MAX_SUBSCRIPTIONS_PER_CALLER``, one more is
refused. They are the costly kind an app can make: websocket-only on every device, never
attached, so each parks what it gets. Then twin changes arrive until the pending budget
(``MKA_NOTIFY__MAX_PENDING_TOTAL``) is spent twice over. RSS is read from
``/proc/self/status`` after a ``gc.collect()`` at each stage.
"""

from __future__ import annotations

import asyncio

from benchmarks.common import Figure, Result, spawn
from mep_kubeedge_adapter.emulators.broker import MosquittoBroker

DEVICES = 10_000
PROPERTIES = 10
SUBSCRIPTIONS = 1_000


async def run() -> Result:
    result = Result("B5", "Memory")
    async with MosquittoBroker() as broker:
        child = await spawn(
            "memory",
            broker.url,
            str(DEVICES),
            str(PROPERTIES),
            str(SUBSCRIPTIONS),
            wait_ready=False,
        )
        stats = await child.result(timeout=300)
    mib = {k: v / 1024 for k, v in stats.items() if k.endswith("_kib")}
    result.figures.append(
        Figure(
            f"RSS with {stats['devices']:,} devices x {PROPERTIES} properties, "
            f"{stats['subscriptions']:,} subscriptions",
            mib["total_kib"],
            "MiB",
            target="≤ 150 MB",
            met=stats["total_kib"] * 1024 <= 150_000_000,
        )
    )
    result.figures.append(
        Figure(
            f"RSS with every cap reached ({stats['subscriptions']:,} subscriptions, "
            f"{stats['pending']:,} notifications pending)",
            mib["capped_kib"],
            "MiB",
            target="≤ 256 MiB (the DaemonSet's memory limit)",
            met=stats["capped_kib"] <= 256 * 1024,
        )
    )
    result.details += [
        f"after imports {mib['imported_kib']:.1f} MiB; adapter started, empty "
        f"{mib['empty_kib']:.1f} MiB; registry filled ({stats['properties']:,} properties) "
        f"{mib['filled_kib']:.1f} MiB; with subscriptions {mib['total_kib']:.1f} MiB.",
        f"registry ≈ {(stats['filled_kib'] - stats['empty_kib']) * 1024 / stats['devices']:,.0f} "
        f"bytes per device; subscriptions ≈ "
        f"{(stats['total_kib'] - stats['filled_kib']) * 1024 / max(1, stats['subscriptions']):,.0f} "
        "bytes each.",
        f"caps: {stats['subscriptions']:,} subscriptions by {stats['apps']} apps "
        f"(one more refused: {'yes' if stats['refused'] else 'NO'}); {stats['changes']:,} "
        f"changes x {stats['subscriptions']:,} subscriptions offered "
        f"{stats['changes'] * stats['subscriptions']:,} notices against a budget of "
        f"{stats['pending_budget']:,}: {stats['pending']:,} pending at the end, at most "
        f"{stats['highest_pending']:,}; ≈ "
        f"{(stats['capped_kib'] - stats['total_kib']) * 1024 / max(1, stats['pending']):,.0f} "
        "bytes per pending notice.",
    ]
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
