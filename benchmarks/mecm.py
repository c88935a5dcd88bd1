"""B8 MECM plugin: 100 app instances from instantiate to every pod Running, and query latency.

Method: three processes on loopback. The ``kubeapi`` emulator (the fake API server with its
Cluster: controllers, scheduler, one EdgeCore edge node, metrics-server) runs in a child
(``python -m benchmarks.mecm cluster``); the plugin is the real ``mecm-plugin`` verb in its
own process (default settings: TLS with a throwaway RSA certificate, accessTokens verified
against a user-mgmt key, info logs); this process drives it with the client ``mecm-call``
uses, which behaves as lcmcontroller does (TLS, 1 KiB upload chunks, 180 s deadlines), over
one gRPC channel.

Untimed setup: uploadConfig, then uploadPackage of the sample app's CSAR (built by
:mod:`mep_kubeedge_adapter.packaging` for the edge node). Timed: ``INSTANCES`` instantiate
calls, ``CONCURRENCY`` in flight, each a new app instance in a namespace of its own (the
``appnamespace`` parameter: the plugin creates the namespace, the AK/SK Secret and the
Deployment); then rounds of ``query`` over the instances not yet seen Running
(``CONCURRENCY`` in flight, ``POLL`` s between rounds) until every instance's pods are
reported ``Running``. The figure is the time from the first instantiate to the last Running
seen through ``query``: it includes the plugin's rendering and kube writes, the emulated
cluster's controllers and edged, and the polling. Then query latency: ``QUERY_ROUNDS``
rounds over all instances, one call at a time. Finally every instance is terminated.

Why a namespace per instance: the emulated cluster's controllers look at every object of a
namespace that changed, on every change, so 100 instances in one namespace cost the emulator
(not the plugin) time that grows with the square of the count, and would dominate the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from benchmarks.common import Child, Figure, Result, announce, free_port, percentiles, spawn

INSTANCES = 100
CONCURRENCY = 10
QUERY_ROUNDS = 5
FRESH_CHANNEL_QUERIES = 20
POLL = 0.05
DEADLINE = 120.0
EDGE_NODE = "bench-edge"
EDGE_IP = "192.0.2.10"
TENANT = "bench-tenant"
PACKAGE = "sample-edge-app"


async def run() -> Result:
    from mep_kubeedge_adapter.emulators.kubeapi import kubeconfig
    from mep_kubeedge_adapter.emulators.pki import SERVER_NAME, make_pki
    from mep_kubeedge_adapter.emulators.usermgmt import UserMgmt
    from mep_kubeedge_adapter.mecm.client import LcmClient
    from mep_kubeedge_adapter.packaging import build_csar

    result = Result("B8", "MECM plugin: 100 app instances on the emulated edge")
    workdir = Path(tempfile.mkdtemp(prefix="mka-bench-mecm-"))
    cluster: Child | None = None
    plugin: Child | None = None
    try:
        pki = make_pki(workdir / "tls")
        user_mgmt = UserMgmt()
        (workdir / "jwt.pem").write_bytes(user_mgmt.public_pem)
        token = user_mgmt.token(user_id=TENANT)
        package = build_csar("sample-app", [EDGE_NODE])
        cluster = await spawn(
            "cluster", EDGE_NODE, EDGE_IP, str(INSTANCES * 2), module="benchmarks.mecm"
        )
        plugin = await _plugin(workdir, pki.cert_file, pki.key_file)
        target = f"127.0.0.1:{plugin.info['port']}"

        def client() -> LcmClient:
            return LcmClient(target, ca=pki.ca_pem, server_name=SERVER_NAME)

        async with client() as lcm:
            config = kubeconfig(cluster.info["url"])
            assert await lcm.upload_config(token, TENANT, EDGE_IP, config) == "Success"
            status = await lcm.upload_package(token, TENANT, EDGE_IP, PACKAGE, package.data)
            assert status == "Success"
            instances = [f"00000000-0000-4000-8000-{n:012d}" for n in range(INSTANCES)]
            # lcmcontroller's AK/SK, and a namespace of its own per instance (see the doc).
            parameters = {
                i: {"ak": "A" * 20, "sk": "S" * 64, "appnamespace": f"app-{n}"}
                for n, i in enumerate(instances)
            }
            gate = asyncio.Semaphore(CONCURRENCY)

            async def timed(call: Awaitable[str], into: list[float]) -> str:
                """Await ``call`` (a coroutine not started yet) once the gate lets it in."""
                async with gate:
                    started = time.perf_counter()
                    answer = await call
                    into.append((time.perf_counter() - started) * 1000)
                    return answer

            instantiate_ms: list[float] = []
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(
                    timed(
                        lcm.instantiate(token, TENANT, EDGE_IP, i, PACKAGE, parameters[i]),
                        instantiate_ms,
                    )
                    for i in instances
                )
            )
            assert set(answers) == {"Success"}, answers
            instantiated = time.perf_counter() - started
            pending, polls = set(instances), 0
            poll_ms: list[float] = []
            while pending:
                if time.perf_counter() - started > DEADLINE:
                    raise TimeoutError(f"{len(pending)} instances not Running in {DEADLINE} s")
                documents = await asyncio.gather(
                    *(timed(lcm.query(token, TENANT, EDGE_IP, i), poll_ms) for i in sorted(pending))
                )
                polls += len(documents)
                for instance, document in zip(sorted(pending), documents, strict=True):
                    if _running(json.loads(document)):
                        pending.discard(instance)
                if pending:
                    await asyncio.sleep(POLL)
            all_running = time.perf_counter() - started

            query_ms: list[float] = []
            for _ in range(QUERY_ROUNDS):
                for instance in instances:
                    document = await timed(lcm.query(token, TENANT, EDGE_IP, instance), query_ms)
                    assert _running(json.loads(document))

            fresh_ms: list[float] = []
            for instance in instances[:FRESH_CHANNEL_QUERIES]:
                began = time.perf_counter()
                async with client() as once:
                    await once.query(token, TENANT, EDGE_IP, instance)
                fresh_ms.append((time.perf_counter() - began) * 1000)

            began = time.perf_counter()
            terminate_ms: list[float] = []
            answers = await asyncio.gather(
                *(timed(lcm.terminate(token, TENANT, EDGE_IP, i), terminate_ms) for i in instances)
            )
            assert set(answers) == {"Success"}, answers
            terminated = time.perf_counter() - began
            cpu = {
                "plugin": _cpu_seconds(plugin.pid),
                "cluster emulator": _cpu_seconds(cluster.pid),
                "client": time.process_time(),
            }
    finally:
        for child in (plugin, cluster):
            if child is not None:
                await child.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    i50, i99 = percentiles(instantiate_ms, (50, 99))
    q50, q90, q99 = percentiles(query_ms)
    result.figures.append(
        Figure(
            f"instantiate → all pods Running, {INSTANCES} app instances",
            all_running,
            "s",
            target="reported",
            note=(
                f"{INSTANCES} instantiate calls ({CONCURRENCY} in flight) answered within "
                f"{instantiated:.2f} s, each {i50:.1f} ms p50 / {i99:.1f} ms p99; then "
                f"{polls} query calls in rounds {POLL * 1000:.0f} ms apart until every pod "
                f"was reported Running"
            ),
        )
    )
    result.figures.append(
        Figure(
            f"query latency with {INSTANCES} instances running",
            q99,
            "ms p99",
            target="reported",
            note=(
                f"p50/p90/p99 {q50:.2f}/{q90:.2f}/{q99:.2f} ms over {len(query_ms)} calls, "
                "one at a time on one TLS channel; each call lists the instance's pods, "
                "their node, pod metrics and services from the kube API"
            ),
        )
    )
    (f50,) = percentiles(fresh_ms, (50,))
    t50, t99 = percentiles(terminate_ms, (50, 99))
    result.details += [
        f"a query on a new channel each time (connect, TLS handshake, call; lcmcontroller "
        f"may dial per request): p50 {f50:.1f} ms over {len(fresh_ms)} calls",
        f"terminate of the {INSTANCES} instances ({CONCURRENCY} in flight): {terminated:.2f} s, "
        f"each {t50:.1f} ms p50 / {t99:.1f} ms p99",
        f"the sample app's CSAR ({len(package.data) / 1024:.0f} KiB) uploaded once; one edge "
        "node, a namespace per instance; the plugin with default settings (TLS, JWT, info logs) "
        "in its own process",
        "CPU seconds over the whole run: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items()),
    ]
    return result


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _running(document: dict[str, Any]) -> bool:
    pods = document.get("pods") or []
    return bool(pods) and all(p.get("podstatus") == "Running" for p in pods)


async def _plugin(workdir: Path, cert: Path, key: Path) -> Child:
    """``mep-kubeedge-adapter mecm-plugin`` in its own process, once its port accepts."""
    port = free_port()
    env = {
        **os.environ,
        "MKA_MECM__HOST": "127.0.0.1",
        "MKA_MECM__PORT": str(port),
        "MKA_MECM__TLS_CERT_FILE": str(cert),
        "MKA_MECM__TLS_KEY_FILE": str(key),
        "MKA_MECM__AUTH": "jwt",
        "MKA_MECM__JWT_PUBLIC_KEY_FILE": str(workdir / "jwt.pem"),
        "MKA_MECM__DATA_DIR": str(workdir / "plugin"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mep_kubeedge_adapter",
        "mecm-plugin",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    child = Child(process, {"port": port})
    deadline = time.monotonic() + 30
    while True:
        if process.returncode is not None:
            raise RuntimeError("the plugin exited while starting")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                await child.stop()
                raise TimeoutError("the plugin did not start listening") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return child


async def serve_cluster(node: str, internal_ip: str, pods: int) -> None:
    """The child: the fake API server and its cluster with one edge node, until SIGTERM."""
    from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer
    from mep_kubeedge_adapter.emulators.kubeapi.cluster import Cluster

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeApiServer() as fake, Cluster(fake) as cluster:
        cluster.add_edge_node(node, internal_ip, cpu="64", memory="256Gi", pods=pods)
        announce({"url": fake.url})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1800)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cluster"]:
        node_name, ip, pod_count = sys.argv[2:5]
        asyncio.run(serve_cluster(node_name, ip, int(pod_count)))
    else:
        print(asyncio.run(run()))
