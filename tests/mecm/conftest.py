"""The plugin as a real gRPC server with TLS on loopback, the emulated cluster, and lcmcontroller.

The cluster is the ``kubeapi`` emulator's: the fake API server with its ``Cluster`` (the
controllers, the scheduler, EdgeCore's edged on the edge node, a kubelet on the cloud node,
metrics-server), so the plugin meets the same moving parts the demo and the benchmark use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer, kubeconfig
from mep_kubeedge_adapter.emulators.kubeapi.cluster import Cluster, ClusterNode
from mep_kubeedge_adapter.emulators.pki import SERVER_NAME, Pki, make_pki
from mep_kubeedge_adapter.emulators.usermgmt import UserMgmt
from mep_kubeedge_adapter.mecm.client import LcmClient
from mep_kubeedge_adapter.mecm.plugin import MecmPlugin
from mep_kubeedge_adapter.settings import MecmSettings

TENANT = "tenant-1"
EDGE_NODE = "edge-node-1"
EDGE_IP = "192.168.10.11"
CLOUD_NODE = "cloud-1"
CLOUD_IP = "192.168.10.1"
CONTAINER_USAGE = ("5m", "20Mi")
"""What metrics-server reports for every running container of the tests' apps."""
EDGE_NODE_OWN_USAGE = {"cpu": "1490m", "memory": "2008Mi"}
"""The edge node's use besides its pods: with one two-container app pod running, the node
uses 1.5 CPUs and 2 GiB in all (metrics-server adds the pods' use to the node's own)."""


class ManualClock:
    """The plugin's clock in the tests (ms since the epoch): it moves when a test moves it."""

    def __init__(self, now: int = 1_800_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture(scope="session")
def user_mgmt() -> UserMgmt:
    return UserMgmt()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def plugin_settings(tmp_path: Path, pki: Pki, user_mgmt: UserMgmt, **extra: object) -> MecmSettings:
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(user_mgmt.public_pem)
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "tls_cert_file": pki.cert_file,
        "tls_key_file": pki.key_file,
        "auth": "jwt",
        "jwt_public_key_file": key_file,
        "data_dir": tmp_path / "data",
    }
    values.update(extra)
    return MecmSettings.model_validate(values)


def lcm_client(plugin: MecmPlugin, pki: Pki) -> LcmClient:
    """lcmcontroller's client: TLS, its ServerName, the 180 s deadline."""
    return LcmClient(f"127.0.0.1:{plugin.port}", ca=pki.ca_pem, server_name=SERVER_NAME)


@dataclass
class Setup:
    fake: FakeApiServer
    cluster: Cluster
    plugin: MecmPlugin
    lcm: LcmClient
    user_mgmt: UserMgmt
    token: str
    settings: MecmSettings
    clock: ManualClock

    async def register_host(self) -> None:
        """What MECM does when the operator adds the host and uploads its kubeconfig."""
        assert (
            await self.lcm.upload_config(self.token, TENANT, EDGE_IP, kubeconfig(self.fake.url))
            == "Success"
        )

    @property
    def edge(self) -> ClusterNode:
        return self.cluster.node(EDGE_NODE)


@pytest.fixture
async def fake_cluster() -> AsyncIterator[tuple[FakeApiServer, Cluster]]:
    """One edge node (EdgeCore, reportEvent off) and one cloud node behind the fake."""
    async with FakeApiServer() as fake, Cluster(fake) as cluster:
        edge = cluster.add_edge_node(EDGE_NODE, EDGE_IP)
        edge.usage = dict(EDGE_NODE_OWN_USAGE)
        cluster.add_cloud_node(CLOUD_NODE, CLOUD_IP)
        cluster.set_usage(*CONTAINER_USAGE)
        yield fake, cluster
        assert cluster.errors == []


@pytest.fixture
async def setup(
    tmp_path: Path, pki: Pki, user_mgmt: UserMgmt, fake_cluster: tuple[FakeApiServer, Cluster]
) -> AsyncIterator[Setup]:
    fake, cluster = fake_cluster
    settings = plugin_settings(tmp_path, pki, user_mgmt)
    clock = ManualClock()
    async with MecmPlugin(settings, clock=clock) as plugin, lcm_client(plugin, pki) as lcm:
        yield Setup(fake, cluster, plugin, lcm, user_mgmt, user_mgmt.token(), settings, clock)
