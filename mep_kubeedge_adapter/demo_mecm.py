"""The demo's second half: EdgeGallery's MECM deploys the sample app to the demo's edge node.

Beside the first half's stack, this starts the ``kubeapi`` emulator (a Kubernetes API on
loopback with its cluster: one EdgeCore edge node named after the demo's node) and the
KubeEdge plugin for MECM (``mecm-plugin``: gRPC with TLS from a demo-made RSA certificate,
accessTokens checked against a demo-made user-mgmt key). Then it plays lcmcontroller with
the same client ``mecm-call`` uses: upload the cluster's kubeconfig, upload the sample app's
app package (built by :mod:`mep_kubeedge_adapter.packaging`) in 1 KiB chunks, instantiate it
on the edge node with the AK/SK lcmcontroller would have generated and provisioned in the
MEP's mepauth, and query it once its pod runs. The app's identity is then read back from the
``<appInstanceId>-aksk`` Secret the chart rendered, which is what the pod's environment holds.

Needs the ``mecm`` extra (grpcio, Helm's engine); without it the demo runs its first half only.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shlex
import textwrap
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.emulators.pki import Pki
from mep_kubeedge_adapter.packaging import Csar, build_csar
from mep_kubeedge_adapter.packaging.csar import APPD_PATH

__all__ = [
    "EDGE_IP",
    "TENANT",
    "MecmDemo",
    "available",
    "mecm_half",
    "provisioned_services",
    "sample_app_identity",
]

EDGE_IP: Final = "127.0.0.1"
"""The demo edge node's InternalIP, MECM's hostIp: the demo's edge node is this machine."""
TENANT: Final = "8f2f6a52-3c8e-4d0b-9a7e-2d6c1f0b5e11"
"""The MECM user (tenantId) the demo acts as."""
PACKAGE_ID: Final = "sample-edge-app"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"


def available() -> str | None:
    """None when the MECM half can run, else why not (the ``mecm`` extra is missing)."""
    missing = [m for m in ("grpc", "helm_python") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"the MECM half needs the mecm extra ({', '.join(missing)} missing): "
            "pip install 'mep-kubeedge-adapter[mecm]'"
        )
    return None


def provisioned_services(files: dict[str, bytes]) -> list[str]:
    """The serNames lcmcontroller provisions for an app in mepauth, from its package's APPD
    (appServiceRequired, appServiceOptional and appServiceProduced)."""
    appd = yaml.safe_load(files[APPD_PATH])
    config = appd["topology_template"]["node_templates"]["app_configuration"]["properties"]
    groups = ("appServiceRequired", "appServiceOptional", "appServiceProduced")
    return [service["serName"] for group in groups for service in config.get(group, [])]


def sample_app_identity(node: str) -> tuple[Csar, AppIdentity]:
    """The sample app's package for ``node`` and the identity lcmcontroller makes for an
    instance of it (its AK/SK, and the serNames its APPD lets it discover)."""
    package = build_csar("sample-app", [node])
    identity = AppIdentity.generate(
        required_services=provisioned_services(package.files), app_name="sample-edge-app"
    )
    return package, identity


@dataclass(slots=True)
class MecmDemo:
    """What the MECM half set up, for the banner, the try lines and the tests."""

    kube_url: str
    plugin_target: str
    ca_file: Path
    token_file: Path
    instance_id: str
    query: dict[str, Any]
    app_identity: AppIdentity
    """The sample app's identity as its pod sees it (read from its AK/SK Secret)."""

    def mecm_call(self, verb: str = "query") -> str:
        """A ready-to-paste ``mecm-call`` line (three, joined by backslashes) for the demo."""
        ca, token = shlex.quote(str(self.ca_file)), shlex.quote(str(self.token_file))
        return (
            f"mep-kubeedge-adapter mecm-call {verb} --target {self.plugin_target} \\\n"
            f"       --host-ip {EDGE_IP} --instance-id {self.instance_id} --tenant {TENANT} \\\n"
            f"       --ca-file {ca} --server-name edgegallery.org \\\n"
            f'       --token "$(cat {token})"'
        )


def _say(out: TextIO, text: str) -> None:
    print(f"  {text}", file=out, flush=True)


@asynccontextmanager
async def mecm_half(
    workdir: Path,
    *,
    node: str,
    package: Csar,
    identity: AppIdentity,
    mep_url: str,
    out: TextIO,
    plugin_port: int = 0,
    within: float = 30.0,
) -> AsyncIterator[MecmDemo]:
    """Start the kube API emulator and the plugin, deploy ``package`` as lcmcontroller would.

    ``identity`` is the instance's (its id, AK and SK, known to the MEP); ``mep_url`` becomes
    the app's ``mep.url`` parameter. Everything stops in reverse order on exit.
    """
    from mep_kubeedge_adapter.emulators.kubeapi import FakeApiServer, kubeconfig
    from mep_kubeedge_adapter.emulators.kubeapi.cluster import Cluster
    from mep_kubeedge_adapter.emulators.pki import SERVER_NAME
    from mep_kubeedge_adapter.mecm.client import LcmClient
    from mep_kubeedge_adapter.mecm.plugin import MecmPlugin
    from mep_kubeedge_adapter.settings import MecmSettings

    secrets = await asyncio.to_thread(_prepare, workdir, package)
    token = secrets.token
    settings = MecmSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": plugin_port,
            "tls_cert_file": secrets.pki.cert_file,
            "tls_key_file": secrets.pki.key_file,
            "auth": "jwt",
            "jwt_public_key_file": secrets.jwt_key_file,
            "data_dir": workdir / "plugin",
        }
    )
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeApiServer())
        cluster = await stack.enter_async_context(Cluster(fake))
        cluster.add_edge_node(node, EDGE_IP)
        plugin = await stack.enter_async_context(MecmPlugin(settings))
        target = f"127.0.0.1:{plugin.port}"
        lcm = await stack.enter_async_context(
            LcmClient(target, ca=secrets.pki.ca_pem, server_name=SERVER_NAME)
        )
        _say(out, f"kube API (emulated)   {fake.url}   edge node {node}, InternalIP {EDGE_IP}")
        _say(out, f"KubeEdge plugin       {target}   gRPC with TLS, accessTokens checked")
        status = await lcm.upload_config(token, TENANT, EDGE_IP, kubeconfig(fake.url))
        _say(out, f"uploadConfig   the cluster's kubeconfig for host {EDGE_IP} → {status}")
        status = await lcm.upload_package(token, TENANT, EDGE_IP, PACKAGE_ID, secrets.package)
        state = await lcm.package_status(token, TENANT, EDGE_IP, PACKAGE_ID)
        kib = len(package.data) / 1024
        _say(
            out,
            f"uploadPackage  {package.filename} ({kib:.0f} KiB in 1 KiB chunks) → {status}, {state}",
        )
        instance = identity.app_instance_id
        parameters = {"ak": identity.ak, "sk": identity.sk, "mep.url": mep_url}
        started = time.perf_counter()
        status = await lcm.instantiate(token, TENANT, EDGE_IP, instance, PACKAGE_ID, parameters)
        _say(out, f"instantiate    {instance} on {EDGE_IP} → {status}")
        selector = f"{INSTANCE_LABEL}={instance}"
        await cluster.wait_for(lambda: cluster.running(None, selector) >= 1, within=within)
        query = json.loads(await lcm.query(token, TENANT, EDGE_IP, instance))
        seconds = time.perf_counter() - started
        _say(out, f"query          ({seconds:.1f} s after instantiate) →")
        print(textwrap.indent(json.dumps(query, indent=2), " " * 4), file=out, flush=True)
        yield MecmDemo(
            kube_url=fake.url,
            plugin_target=target,
            ca_file=secrets.pki.ca_file,
            token_file=secrets.token_file,
            instance_id=instance,
            query=query,
            app_identity=_identity_from_secret(fake.objects("Secret"), instance),
        )


@dataclass(frozen=True, slots=True)
class _Prepared:
    pki: Pki
    jwt_key_file: Path
    token: str
    token_file: Path
    package: Path


def _prepare(workdir: Path, package: Csar) -> _Prepared:
    """TLS material, user-mgmt's key and a week-long token, the package on disk (blocking)."""
    from mep_kubeedge_adapter.emulators.pki import make_pki
    from mep_kubeedge_adapter.emulators.usermgmt import UserMgmt

    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = make_pki(workdir / "tls", days=7)
    user_mgmt = UserMgmt()
    jwt_key_file = workdir / "user-mgmt-public.pem"
    jwt_key_file.write_bytes(user_mgmt.public_pem)
    token = user_mgmt.token(user_id=TENANT, user_name="demo", expires_in=7 * 24 * 3600)
    token_file = workdir / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    path = workdir / package.filename
    path.write_bytes(package.data)
    return _Prepared(pki, jwt_key_file, token, token_file, path)


def _identity_from_secret(secrets: Sequence[dict[str, Any]], instance: str) -> AppIdentity:
    """The identity in ``<instance>-aksk``, as the pod's APPINSTID/AK/SK come from it."""
    (secret,) = [s for s in secrets if s["metadata"]["name"] == f"{instance}-aksk"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    return AppIdentity(data["appInsId"], data["accesskey"], data["secretkey"])
