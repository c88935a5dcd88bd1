"""B7 scaling: CPU per registry change as the number of subscriptions grows.

Method: a child process holds a real ``SubscriptionService`` (SQLite store, dispatcher)
over a ``DeviceRegistry`` with one device per subscription. For each size (10, 100, 1,000,
10,000) it creates that many ``DeviceTwinChangeSubscription``s through the service, each
filtering on its own device (``filteringCriteria.devices``), websocket-only and never
attached, so a notice is numbered, persisted (sequence) and parked: all the work of a
matched change except the socket write. Then ``CHANGES`` twin changes are applied to the
registry round-robin over the devices, so every change matches exactly one subscription
(the registry holds as many devices as there are subscriptions; 100 for the floor),
and the process CPU time (``time.process_time``) they took is divided by their number.
The registry alone (no subscription) is measured the same way as the floor. Each size is
measured ``REPEATS`` times; the median is the figure. The plot is written next to the page.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, Result, spawn
from benchmarks.plot import Series, line_chart

SIZES = (10, 100, 1_000, 10_000)
CHANGES = 4_000
REPEATS = 3
PLOT = "benchmarks-b7.svg"


async def measure(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """In the child: µs of CPU per change, per size (0 = the registry alone)."""
    from mep_kubeedge_adapter.domain import DeviceId, TwinState, TwinValue
    from mep_kubeedge_adapter.notify.callbacks import DeliverySettings
    from mep_kubeedge_adapter.notify.models import FilteringCriteria, SubscriptionRequest
    from mep_kubeedge_adapter.notify.subscriptions import (
        SubscriptionLimits,
        SubscriptionService,
    )
    from mep_kubeedge_adapter.observability import Metrics, configure_logging
    from mep_kubeedge_adapter.registry import DeviceRegistry
    from mep_kubeedge_adapter.settings import ApiSettings
    from mep_kubeedge_adapter.store import SubscriptionStore

    configure_logging("warning", "json")
    results: dict[str, Any] = {"sizes": {}}
    workdir = Path(tempfile.mkdtemp(prefix="mka-bench-b7-"))
    for size in (0, *sizes):
        devices = size or 100
        registry = DeviceRegistry()
        ids = [DeviceId("default", f"dev-{i}") for i in range(devices)]
        for device_id in ids:
            registry.add_member(device_id)
            registry.apply_twin_states(
                device_id, {"temperature": TwinState(actual=TwinValue("0", 1))}
            )
        path = workdir / f"state-{size}.sqlite3"
        async with SubscriptionStore(path) as store:
            service = SubscriptionService(
                store,
                registry,
                Metrics(),
                ApiSettings(),
                delivery=DeliverySettings(max_pending_total=10 * CHANGES),
                limits=SubscriptionLimits(total=max(1, size), per_caller=max(1, size)),
                fallback_base_url=lambda: "http://127.0.0.1:8080/kubeedge_devices/v1",
                expiry_interval=3600,
            )
            await service.start()
            try:
                for index in range(size):
                    await service.create(
                        SubscriptionRequest(
                            subscriptionType="DeviceTwinChangeSubscription",
                            requestWebsocketUri=True,
                            filteringCriteria=FilteringCriteria(devices=[str(ids[index])]),
                        )
                    )
                samples = []
                value = 1
                for _ in range(REPEATS):
                    started = time.process_time()
                    for n in range(CHANGES):
                        value += 1
                        registry.apply_twin_states(
                            ids[n % devices],
                            {"temperature": TwinState(actual=TwinValue(str(value), value))},
                        )
                    samples.append((time.process_time() - started) / CHANGES * 1e6)
                    await store.flush_sequences()
                pending = service.dispatcher.pending_total
            finally:
                await service.stop()
        results["sizes"][str(size)] = {"samples": samples, "pending": pending}
    return results


async def run() -> Result:
    result = Result("B7", "Scaling: CPU per registry change by number of subscriptions")
    child = await spawn("scaling", wait_ready=False)
    stats = await child.result(timeout=600)
    medians = {int(k): statistics.median(v["samples"]) for k, v in stats["sizes"].items()}
    floor = medians.pop(0)
    smallest, largest = min(medians), max(medians)
    flat = medians[largest] / medians[smallest]
    result.figures.append(
        Figure(
            f"CPU per change, {largest:,} subscriptions",
            medians[largest],
            "µs/change",
            baseline=medians[smallest],
            target=f"≤ 1.5 x the cost at {smallest:,} subscriptions (flat)",
            met=flat <= 1.5,
            note=", ".join(f"{n:,}: {us:.1f} µs" for n, us in sorted(medians.items()))
            + f"; registry alone {floor:.1f} µs",
        )
    )
    result.details += [
        f"each subscription filters on its own device; {CHANGES:,} changes round-robin over the "
        f"devices, each matching one subscription; median of {REPEATS}; "
        "process CPU time in one child process.",
        f"![B7: CPU per registry change]({PLOT})",
    ]
    result.files[PLOT] = line_chart(
        "B7: CPU per registry change",
        "subscriptions, each filtering on its own device (log scale)",
        "CPU µs per change",
        [
            Series("registry + dispatch (one match)", sorted(medians.items()), "#1f6fb4"),
            Series(
                "registry alone",
                [(smallest, floor), (largest, floor)],
                "#999999",
                dashed=True,
            ),
        ],
    )
    return result


if __name__ == "__main__":
    print(asyncio.run(run()))
