"""A restarted API server answers the first watches with 503 and 429 and ``Retry-After``;
the kube source follows that pace instead of the backoff it grew during the outage."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp

from mep_kubeedge_adapter.backoff import Backoff
from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
from mep_kubeedge_adapter.kubeedge.kubesource import KubeSource
from mep_kubeedge_adapter.observability import Metrics
from mep_kubeedge_adapter.registry import DeviceRegistry
from mep_kubeedge_adapter.settings import KubeSettings

from .conftest import NODE, RegistryEvents, RunningSource, StartSource
from .test_kubesource import device, did, model

WATCH = "/apis/devices.kubeedge.io/v1beta1/devices?watch=true"


async def test_the_fake_refuses_the_first_watches_after_a_restart(
    fake_apiserver: FakeApiServer,
) -> None:
    fake = fake_apiserver
    await fake.go_down()
    await fake.come_up(unavailable=1, initializing=2)
    answers: list[tuple[int, str | None, Any]] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(fake.url + WATCH) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
        async with http.get(fake.url + "/apis/devices.kubeedge.io/v1beta1/devices") as resp:
            assert resp.status == 200  # lists are served meanwhile
    assert [(status, after) for status, after, _ in answers] == [
        (503, "5"),
        (429, "1"),
        (429, "1"),
    ]
    unavailable, initializing = answers[0][2], answers[1][2]
    assert unavailable["reason"] == "ServiceUnavailable"
    assert unavailable["details"] == {"retryAfterSeconds": 5}
    assert initializing["kind"] == "Status"
    assert initializing["reason"] == "TooManyRequests"
    assert initializing["message"] == "storage is (re)initializing"
    assert initializing["details"] == {"retryAfterSeconds": 1}


class _Ceiling(random.Random):
    """Full jitter at its worst: every delay is the whole ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def test_the_kube_source_follows_retry_after_once_the_server_answers(
    fake_apiserver: FakeApiServer,
) -> None:
    """During an outage each list/watch loop's delays double (0.1 s, 0.2 s ... 3.2 s); a
    restarted server then answers 503 (Retry-After: 5) and twice 429 (Retry-After: 1).
    Carrying the outage's backoff on (3.2, then 6.4 and 12.8 s) brings the watches back
    after about 24 s; following the server, after about 3.2 + 5 + 1 + 1 s."""
    fake = fake_apiserver
    fake.create(model())
    fake.create(device("a"))
    backoffs: list[Backoff] = []

    def backoff() -> Backoff:
        made = Backoff(base=0.1, cap=30.0, rng=_Ceiling())
        backoffs.append(made)
        return made

    registry = DeviceRegistry()
    recorded = RegistryEvents(registry)
    source = KubeSource(
        KubeSettings(source="metaserver", url=fake.url),
        NODE,
        registry,
        Metrics(),
        backoff=backoff,
    )
    running = RunningSource(
        source, registry, Metrics(), recorded, asyncio.create_task(source.run())
    )
    try:
        await running.synced()
        loops = backoffs[1:]  # the first is run()'s own, for discovery
        assert len(loops) == 3

        await fake.go_down()
        # Down until every list/watch loop failed five times in a row.
        await running.until_status(lambda _: all(b.attempt >= 5 for b in loops), within=20)
        fake.create(device("b"))
        await fake.come_up(unavailable=1, initializing=2)

        await recorded.until(lambda: did("b") in registry, within=17)
        # Connected: every loop's watch was accepted again, after its refusals.
        await running.until_status(lambda s: s["synced"] and s["connected"], within=10)
        assert fake.open_watches == 3
        refused = [r for r in fake.requests if "watch=true" in r]
        assert len(refused) >= 3 * 4  # each resource: 503, 429, 429, then the watch
    finally:
        await running.stop()


async def test_no_resource_is_watched_before_the_server_accepts_its_watch(
    fake_apiserver: FakeApiServer, start_source: StartSource
) -> None:
    """A restarted server refuses each resource's first two watches (429, Retry-After: 1).
    Until it accepts a resource's watch (its third request), ``/readyz`` calls that resource
    not watching and the source not connected, at every status change."""
    fake = fake_apiserver
    fake.create(model())
    fake.create(device("a"))
    running = await start_source()
    await running.synced()
    await fake.go_down()
    await running.until_status(
        lambda s: not any(r["watching"] for r in s["resources"].values()), within=10
    )
    served = sorted(running.source.status()["resources"])
    since = len(fake.requests)

    def watches_made(plural: str) -> int:
        return sum(1 for r in fake.requests[since:] if f"/{plural}?" in r and "watch=true" in r)

    seen: list[tuple[bool, dict[str, tuple[bool, int]]]] = []

    def record(status: dict[str, Any]) -> bool:
        seen.append(
            (
                status["connected"],
                {p: (r["watching"], watches_made(p)) for p, r in status["resources"].items()},
            )
        )
        return False

    recorder = asyncio.create_task(running.source.wait_status(record))
    try:
        await fake.come_up(initializing=2)
        await running.until_status(lambda s: s["connected"], within=15)
    finally:
        recorder.cancel()
    assert seen, "no status change was recorded"
    for connected, resources in seen:
        for plural, (watching, made) in resources.items():
            assert not watching or made >= 3, f"{plural} watching after {made} watch requests"
        assert not connected or all(made >= 3 for _, made in resources.values())
    assert [watches_made(plural) for plural in served] == [3, 3, 3]
    assert fake.open_watches == len(served)
