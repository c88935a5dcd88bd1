"""The Helm charts, rendered by Helm's own engine, for both of their uses.

1. A cluster operator's ``helm install``: the adapter as a DaemonSet on every edge node, its
   AK/SK in ``appconfig.aksk``.
2. An MECM app instance: the values the KubeEdge plugin for MECM passes (``appconfig.aksk``
   from lcmcontroller's ``parameters``, the instance id as release name), the placement left
   to the plugin.

Every rendered object must survive a strict round trip through the ``kubernetes`` client's
models (unknown, misplaced or mistyped fields fail), and the adapter's environment must load
as settings. Charts are rendered from the same ``.tgz`` an app package carries.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
import uuid
from typing import Any

import pytest
import yaml

from mep_kubeedge_adapter import __version__
from mep_kubeedge_adapter.mecm.render import ChartError, render_chart
from mep_kubeedge_adapter.packaging import (
    ADAPTER_CHART,
    CHARTS,
    SAMPLE_APP_CHART,
    ImageLocation,
    PackagingError,
    chart_archive,
)
from mep_kubeedge_adapter.packaging.archive import DEFAULT_EPOCH
from mep_kubeedge_adapter.packaging.charts import chart_metadata
from mep_kubeedge_adapter.settings import Settings, load_settings
from tests.deploy.conftest import (
    ROOT,
    Obj,
    container_environment,
    find_container,
    key,
    kube_roundtrip,
    one,
    unknown_fields,
)
from tests.deploy.test_kustomize import BASE as KUSTOMIZE_BASE

APP_ID = "77a7cb5b-70d4-4b43-ba9f-a4bbc5ceff6d"
AK = "GD7BLdkrj2nYW2IqhJZP"
SK = "hBwUVLvz92PrSGJzH36nWJp2ZL30fNNGhN2khpVQ3SWzGx8Zefx/sbhUKidMayod"
AKSK = {"appInsId": APP_ID, "accesskey": AK, "secretkey": SK}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"


def render(chart: str, values: dict[str, Any] | None = None, **kwargs: Any) -> list[Obj]:
    """``chart`` rendered from its packaged archive (what MECM and ``helm install`` get)."""
    release = kwargs.pop("release", chart)
    namespace = kwargs.pop("namespace", "default")
    image = kwargs.pop("image", None)
    archive = chart_archive(chart, epoch=DEFAULT_EPOCH, image=image)
    rendered = render_chart(archive, values or {}, release=release, namespace=namespace)
    assert rendered.name == chart
    return list(rendered.objects)


def strictly_valid(objects: list[Obj]) -> None:
    for obj in objects:
        roundtrip = kube_roundtrip(obj)
        assert list(unknown_fields(obj, roundtrip)) == [], key(obj)
        assert roundtrip == obj, key(obj)


def operator_values() -> dict[str, Any]:
    return {"appconfig": {"aksk": dict(AKSK)}}


def mecm_values(app_id: str) -> dict[str, Any]:
    """What the KubeEdge plugin for MECM hands the chart, as k8splugin writes it: the
    instance's identity and the Secret name the plugin would otherwise create itself (SPEC §7:
    ``<appInstanceId>-aksk``, unless the chart renders that Secret)."""
    return {
        "appconfig": {
            "appnamespace": "mep-kubeedge-adapter",
            "aksk": {
                "appInsId": app_id,
                "accesskey": AK,
                "secretkey": SK,
                "secretname": f"{app_id}-aksk",
            },
        }
    }


def adapter_settings(objects: list[Obj], workload: str) -> Settings:
    env = container_environment(objects, workload=workload)
    return load_settings(environ={k: v for k, v in env.items() if k.startswith("MKA_")})


def pod_spec(obj: Obj) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


# ------------------------------------------------------------------------------ both charts


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_versions_follow_the_release(chart: str) -> None:
    meta = chart_metadata(chart)
    assert meta["version"] == meta["appVersion"] == __version__


@pytest.mark.parametrize("chart", CHARTS)
def test_archive_renders_like_the_chart_directory(chart: str) -> None:
    from importlib import resources
    from pathlib import Path

    directory = Path(str(resources.files("mep_kubeedge_adapter.packaging") / "charts" / chart))
    values = operator_values()
    from_dir = render_chart(directory, values, release="r", namespace="n").objects
    assert list(from_dir) == render(chart, values, release="r", namespace="n")


@pytest.mark.parametrize("chart", CHARTS)
def test_eg_template_namespace_is_guarded_by_its_global_flag(chart: str) -> None:
    assert "Namespace" not in {o["kind"] for o in render(chart)}
    objects = render(chart, {"global": {"namespace": {"enabled": True}}})
    namespace = one(objects, "Namespace", chart)
    assert namespace["metadata"]["name"] == chart
    namespaced = [o for o in objects if o["kind"] not in ("Namespace", "ClusterRole")]
    namespaced = [o for o in namespaced if o["kind"] != "ClusterRoleBinding"]
    assert {o["metadata"]["namespace"] for o in namespaced} == {chart}
    strictly_valid(objects)


@pytest.mark.parametrize("chart", CHARTS)
def test_appnamespace_falls_back_to_the_release_namespace(chart: str) -> None:
    objects = render(chart, {"appconfig": {"appnamespace": ""}}, namespace="edge-apps")
    namespaced = [o for o in objects if "namespace" in o["metadata"]]
    assert namespaced and {o["metadata"]["namespace"] for o in namespaced} == {"edge-apps"}


@pytest.mark.parametrize("chart", CHARTS)
def test_imagelocation_names_the_registry(chart: str) -> None:
    plain = render(chart)
    workload = next(o for o in plain if o["kind"] in ("DaemonSet", "Deployment"))
    images = {c["image"] for c in pod_spec(workload)["containers"]}
    assert images == {f"mep-kubeedge-adapter:{__version__}"}
    by_values = render(
        chart, {"imagelocation": {"domainname": "registry.example:5000", "project": "mec"}}
    )
    by_archive = render(chart, image=ImageLocation("registry.example:5000", "mec"))
    for objects in (by_values, by_archive):
        workload = next(o for o in objects if o["kind"] in ("DaemonSet", "Deployment"))
        spec = pod_spec(workload)
        images = {c["image"] for c in [*spec["containers"], *spec.get("initContainers", [])]}
        assert images == {f"registry.example:5000/mec/mep-kubeedge-adapter:{__version__}"}


@pytest.mark.parametrize("chart", CHARTS)
def test_the_archive_keeps_values_yaml_readable(chart: str) -> None:
    import io
    import tarfile

    archive = chart_archive(chart, epoch=DEFAULT_EPOCH, image=ImageLocation("r.example", "p"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile(f"{chart}/values.yaml")
        assert member is not None
        text = member.read().decode()
    assert "# Where the image comes from" in text or "# The app runs in" in text
    values = yaml.safe_load(text)
    assert values["imagelocation"] == {"domainname": "r.example", "project": "p"}


@pytest.mark.parametrize("chart", CHARTS)
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"appconfig": {"aksk": {**AKSK, "accesskey": "short"}}}, "/appconfig/aksk/accesskey"),
        ({"appconfig": {"aksk": {**AKSK, "secretkey": "x" * 63}}}, "/appconfig/aksk/secretkey"),
        ({"appconfig": {"aksk": {**AKSK, "appInsId": "not-a-uuid"}}}, "/appconfig/aksk/appInsId"),
        ({"appconfig": {"aksk": {"accesskey": AK, "secretkey": SK}}}, "appInsId"),
        ({"appconfig": {"aksk": {"appInsId": APP_ID, "accesskey": AK}}}, "secretkey is empty"),
        ({"appconfig": {"appnamespace": "Not_A_Namespace"}}, "/appconfig/appnamespace"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"mep": {"url": "mep-api-gw.mep:8443"}}, "/mep/url"),
        ({"mep": {"ca": {"certificate": "not a PEM"}}}, "/mep/ca/certificate"),
        ({"mep": {"ca": {"secretName": "ca", "certificate": CA_PEM}}}, "not both"),
        ({"mep": {"colour": "blue"}}, "colour"),
        ({"imagelocation": {"domainname": "bad host/x"}}, "/imagelocation/domainname"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    chart: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChartError, match=message.replace("/", r"\/?")):
        render(chart, values)


def test_unknown_top_level_values_pass_for_edgegallery_tools() -> None:
    # EdgeGallery's platform adds flags of its own (global.mepagent.enabled, say).
    objects = render(ADAPTER_CHART, {"global": {"mepagent": {"enabled": True}}, "extra": 1})
    strictly_valid(objects)


# ------------------------------------------------------------------------------ the adapter


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"MKA_MEP__URL": "http://x"}}, "MKA_MEP__URL"),
        ({"settings": {"MKA_STORE__PATH": "/tmp/x"}}, "MKA_STORE__PATH"),
        ({"settings": {"mqtt_url": "x"}}, "mqtt_url"),
        ({"settings": {"MKA_LOG__LEVEL": ["debug"]}}, "/settings/MKA_LOG__LEVEL"),
        ({"api": {"port": 70000}}, "/api/port"),
        ({"state": {"hostPath": "relative"}}, "/state/hostPath"),
    ],
)
def test_adapter_settings_the_chart_decides_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChartError, match=message.replace("/", r"\/?")):
        render(ADAPTER_CHART, values)


def test_operator_install_runs_on_every_edge_node_with_its_identity() -> None:
    objects = render(ADAPTER_CHART, operator_values(), namespace="mep-kubeedge-adapter")
    strictly_valid(objects)
    # What the kustomize base has, less the Namespace (Helm creates it), plus the identity.
    namespace = ("Namespace", "", "mep-kubeedge-adapter")
    identity = ("Secret", "mep-kubeedge-adapter", "mep-kubeedge-adapter-mep-identity")
    assert {key(o) for o in objects} == (KUSTOMIZE_BASE - {namespace}) | {identity}
    assert len(objects) == len(KUSTOMIZE_BASE)
    daemonset = one(objects, "DaemonSet", "mep-kubeedge-adapter")
    spec = pod_spec(daemonset)
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "node-role.kubernetes.io/edge", "operator": "Exists"}
    ]
    assert spec["hostNetwork"] is True
    secret = one(objects, "Secret", "mep-kubeedge-adapter-mep-identity")
    assert secret["stringData"] == AKSK
    settings = adapter_settings(objects, "mep-kubeedge-adapter")
    assert settings.mep.url == "https://mep-api-gw.mep:8443"
    assert settings.mep.tls_server_name == "edgegallery"
    assert str(settings.mep.app_instance_id) == APP_ID
    assert settings.mep.ak is not None and settings.mep.ak.get_secret_value() == AK
    assert settings.mep.sk is not None and settings.mep.sk.get_secret_value() == SK
    assert settings.api.public_url == "http://192.0.2.10:8080"
    assert settings.node_name == "edge-node-1"
    refs = [
        v["valueFrom"]["secretKeyRef"]
        for v in find_container(daemonset, "adapter")["env"]
        if "secretKeyRef" in v.get("valueFrom", {})
    ]
    assert refs and all(ref["optional"] is False for ref in refs)


def test_without_aksk_values_the_adapter_needs_an_existing_identity_secret() -> None:
    objects = render(ADAPTER_CHART, {"appconfig": {"aksk": {"secretname": "my-identity"}}})
    assert "Secret" not in {o["kind"] for o in objects}
    with pytest.raises(AssertionError, match="needs Secret my-identity"):
        container_environment(objects, workload="mep-kubeedge-adapter")


def test_plain_http_mep_without_ssl_and_a_ca_for_tls() -> None:
    plain = render(ADAPTER_CHART, {**operator_values(), "global": {"ssl": {"enabled": False}}})
    assert adapter_settings(plain, "mep-kubeedge-adapter").mep.url == "http://mep-api-gw.mep:8000"
    with_ca = render(ADAPTER_CHART, {**operator_values(), "mep": {"ca": {"certificate": CA_PEM}}})
    strictly_valid(with_ca)
    ca = one(with_ca, "Secret", "mep-kubeedge-adapter-mep-ca")
    assert ca["stringData"] == {"ca.crt": CA_PEM}
    settings = adapter_settings(with_ca, "mep-kubeedge-adapter")
    daemonset = one(with_ca, "DaemonSet", "mep-kubeedge-adapter")
    mounts = {m["mountPath"] for m in find_container(daemonset, "adapter")["volumeMounts"]}
    assert str(settings.mep.ca_file).rsplit("/", 1)[0] in mounts


def test_mep_disabled_reads_no_identity_and_registers_nothing() -> None:
    objects = render(ADAPTER_CHART, {"mep": {"enabled": False}})
    settings = adapter_settings(objects, "mep-kubeedge-adapter")
    assert settings.mep.url is None and settings.mep.ak is None


def test_rbac_can_be_narrowed_or_left_out() -> None:
    read_only = render(ADAPTER_CHART, {"rbac": {"writeDevices": False}})
    rules = one(read_only, "ClusterRole", "mep-kubeedge-adapter")["rules"]
    assert {verb for rule in rules for verb in rule["verbs"]} == {"list", "watch"}
    kinds = {o["kind"] for o in render(ADAPTER_CHART, {"rbac": {"create": False}})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


def test_mecm_instance_leaves_placement_to_the_plugin() -> None:
    """As an MECM app instance: the plugin's values, release = the instance id."""
    objects = render(ADAPTER_CHART, mecm_values(APP_ID), release=APP_ID)
    strictly_valid(objects)
    fullname = f"{APP_ID}-mep-kubeedge-adapter"
    daemonset = one(objects, "DaemonSet", fullname)
    spec = pod_spec(daemonset)
    # The plugin adds nodeSelector {kubernetes.io/hostname: <node>} and its tolerations; the
    # chart claims neither field a plugin would have to merge with.
    assert "nodeSelector" not in spec and "nodeName" not in spec
    # The plugin labels everything app.kubernetes.io/instance=<appInstanceId>; the selector
    # does not use that label, so a relabelled pod template still matches it.
    selector = daemonset["spec"]["selector"]["matchLabels"]
    assert "app.kubernetes.io/instance" not in selector
    assert selector.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
    # The chart renders <appInstanceId>-aksk itself, in the plugin's own shape.
    secret = one(objects, "Secret", f"{APP_ID}-aksk")
    assert secret["stringData"] == {"appInsId": APP_ID, "accesskey": AK, "secretkey": SK}
    settings = adapter_settings(objects, fullname)
    assert str(settings.mep.app_instance_id) == APP_ID


@pytest.mark.parametrize(
    ("release", "name"),
    [
        ("mep-kubeedge-adapter", "mep-kubeedge-adapter"),  # the kustomize base's name
        (
            "ab0c4f6e-1d2e-4f3a-8b4c-5d6e7f8a9b0c",
            "ab0c4f6e-1d2e-4f3a-8b4c-5d6e7f8a9b0c-mep-kubeedge-adapter",
        ),
        (APP_ID, f"mka-{APP_ID}-mep-kubeedge-adapter"),
    ],
)
def test_the_service_name_is_a_dns_1035_label_for_any_release(release: str, name: str) -> None:
    """An MECM release is the instance's UUID; a Service name must start with a letter."""
    values = operator_values() if release == ADAPTER_CHART else mecm_values(release)
    objects = render(ADAPTER_CHART, values, release=release)
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert service["metadata"]["name"] == name
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name)


def test_two_mecm_instances_share_nothing() -> None:
    first, second = (str(uuid.uuid4()) for _ in range(2))
    a = render(ADAPTER_CHART, mecm_values(first), release=first)
    b = render(ADAPTER_CHART, mecm_values(second), release=second)
    assert not {key(o) for o in a} & {key(o) for o in b}
    selectors = [
        one(objs, "DaemonSet", f"{app}-mep-kubeedge-adapter")["spec"]["selector"]["matchLabels"]
        for objs, app in ((a, first), (b, second))
    ]
    assert selectors[0] != selectors[1]


def test_settings_map_reaches_the_adapter() -> None:
    # Numbers and booleans arrive typed from --set and from MECM's instance parameters.
    values = {
        "settings": {
            "MKA_KUBE__SOURCE": "metaserver",
            "MKA_MEP__SERVICE_MODE": "per-model",
            "MKA_MEP__HEARTBEAT_INTERVAL": 20,
            "MKA_KUBE__ALL_NODES": True,
        }
    }
    objects = render(ADAPTER_CHART, {**operator_values(), **copy.deepcopy(values)})
    data = one(objects, "ConfigMap", "mep-kubeedge-adapter-settings")["data"]
    assert (data["MKA_MEP__HEARTBEAT_INTERVAL"], data["MKA_KUBE__ALL_NODES"]) == ("20", "true")
    settings = adapter_settings(objects, "mep-kubeedge-adapter")
    assert settings.kube.source == "metaserver"
    assert settings.mep.service_mode == "per-model"
    assert settings.mep.heartbeat_interval == 20.0
    assert settings.kube.all_nodes is True


# ------------------------------------------------------------------------------ the sample app


def sample_env(objects: list[Obj], workload: str = SAMPLE_APP_CHART) -> dict[str, str]:
    return container_environment(objects, workload=workload, kind="Deployment", name="app")


def test_sample_app_operator_install() -> None:
    objects = render(
        SAMPLE_APP_CHART,
        {**operator_values(), "nodeSelector": {"kubernetes.io/hostname": "edge-node-1"}},
    )
    strictly_valid(objects)
    deployment = one(objects, "Deployment", SAMPLE_APP_CHART)
    spec = pod_spec(deployment)
    assert spec["hostNetwork"] is True
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "edge-node-1"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = sample_env(objects)
    assert env["MEP_URL"] == "https://mep-api-gw.mep:8443"
    assert (env["APPINSTID"], env["AK"], env["SK"]) == (APP_ID, AK, SK)
    # The node it runs on decides which adapter it uses: kubeedge-devices-<that node>.
    assert env["NODE_NAME"] == "edge-node-1"
    assert env["SAMPLE_CALLBACK_URL"] == f"http://{env['SAMPLE_LISTEN']}/notify"


def load_sample_app() -> Any:
    """examples/sample_app.py as a module (it is a script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("sample_app", ROOT / "examples/sample_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_sample_app_environment_is_what_the_app_parses() -> None:
    sample_app = load_sample_app()
    objects = render(SAMPLE_APP_CHART, {**operator_values(), "sample": {"discoveryTimeout": 30}})
    env = sample_env(objects)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        config = sample_app.parse_args([])
    assert config.app_instance_id == APP_ID
    assert config.ser_name == "kubeedge-devices-edge-node-1"
    assert config.device == "default/thermo-1"
    assert config.callback_url == "http://127.0.0.1:9090/notify"
    assert config.discovery_timeout == 30.0


def test_sample_app_as_mecm_instance() -> None:
    objects = render(SAMPLE_APP_CHART, mecm_values(APP_ID), release=APP_ID)
    strictly_valid(objects)
    fullname = f"{APP_ID}-sample-edge-app"
    spec = pod_spec(one(objects, "Deployment", fullname))
    assert "nodeSelector" not in spec and "nodeName" not in spec
    assert sample_env(objects, fullname)["APPINSTID"] == APP_ID


def test_sample_app_websocket_delivery_and_a_fixed_node() -> None:
    objects = render(
        SAMPLE_APP_CHART,
        {**operator_values(), "sample": {"delivery": "websocket", "node": "edge.node-2"}},
    )
    env = sample_env(objects)
    assert env["SAMPLE_DELIVERY"] == "websocket"
    assert env["NODE_NAME"] == "edge.node-2"


def test_packaging_errors_are_clear() -> None:
    with pytest.raises(PackagingError, match="needs an image registry"):
        ImageLocation("", "project")
    with pytest.raises(PackagingError, match="no chart"):
        chart_archive("nginx", epoch=DEFAULT_EPOCH)
