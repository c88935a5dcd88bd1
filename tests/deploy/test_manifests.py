"""Every manifest parses, validates against its schema and agrees with the adapter it deploys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mep_kubeedge_adapter.emulators.mep import AppIdentity
from mep_kubeedge_adapter.kubeedge.crds import decode_device, decode_device_model
from mep_kubeedge_adapter.mep.models import to_ser_name
from mep_kubeedge_adapter.settings import Settings, load_settings
from tests.deploy.conftest import (
    LAB_NODE,
    MANIFESTS,
    OVERLAYS,
    ROOT,
    Obj,
    container_environment,
    crd_validator,
    find_container,
    key,
    kube_roundtrip,
    kustomize,
    load_documents,
    one,
    patch_files,
    unknown_fields,
)

YAML_FILES = sorted(MANIFESTS.rglob("*.yaml"))
CR_KINDS = {"Device", "DeviceModel", "DeviceStatus"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _objects() -> list[tuple[str, Obj]]:
    """Every complete object in the tree (patches are partial and checked once applied)."""
    patches = patch_files()
    found: list[tuple[str, Obj]] = []
    for path in YAML_FILES:
        if path.name == "kustomization.yaml" or path in patches:
            continue
        found.extend((_rel(path), doc) for doc in load_documents(path))
    for name, directory in OVERLAYS.items():
        found.extend((f"kustomize:{name}", obj) for obj in kustomize(directory))
    return found


OBJECTS = _objects()
BUILTIN = [(where, obj) for where, obj in OBJECTS if obj["kind"] not in CR_KINDS]
CUSTOM = [(where, obj) for where, obj in OBJECTS if obj["kind"] in CR_KINDS]


def _ids(items: list[tuple[str, Obj]]) -> list[str]:
    return [f"{where}:{'/'.join(key(obj))}" for where, obj in items]


# ------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("path", YAML_FILES, ids=_rel)
def test_every_manifest_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    docs = load_documents(path)
    assert docs, f"{path} holds no document"
    # Anchors and aliases are not portable across kustomize versions.
    assert not re.search(r"(^|\s)[&*][A-Za-z]", text), "no YAML anchors or aliases"
    assert "\t" not in text


def test_no_manifest_is_orphaned() -> None:
    """A manifest is used by a kustomization, or is a documented stand-alone file."""
    used: set[Path] = set()
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        for entry in data.get("resources", []):
            used.add((kustomization.parent / entry).resolve())
    used |= patch_files()
    standalone = {
        MANIFESTS / "secrets" / "mep-identity.template.yaml",
        MANIFESTS / "kubeedge" / "mosquitto.yaml",
    }
    orphans = [
        p
        for p in YAML_FILES
        if p.name != "kustomization.yaml" and p not in used and p not in standalone
    ]
    assert not orphans


# ------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(("where", "obj"), BUILTIN, ids=_ids(BUILTIN))
def test_builtin_object_matches_its_kubernetes_model(where: str, obj: Obj) -> None:
    roundtrip = kube_roundtrip(obj)
    assert list(unknown_fields(obj, roundtrip)) == []
    assert roundtrip == obj


@pytest.mark.parametrize(("where", "obj"), CUSTOM, ids=_ids(CUSTOM))
def test_custom_resource_matches_the_kubeedge_crd(where: str, obj: Obj) -> None:
    group, version = obj["apiVersion"].split("/")
    assert group == "devices.kubeedge.io"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in crd_validator(obj["kind"], version).iter_errors(obj)
    ]
    assert errors == []
    meta = kube_roundtrip(obj["metadata"], "V1ObjectMeta")
    assert list(unknown_fields(obj["metadata"], meta)) == []


def test_patches_hold_only_known_fields() -> None:
    """A patch's fields exist in the model even before they are merged."""
    for path in patch_files():
        for doc in load_documents(path):
            roundtrip = kube_roundtrip_lenient(doc)
            assert list(unknown_fields(doc, roundtrip)) == [], path


def kube_roundtrip_lenient(doc: Obj) -> Any:
    """Round trip of a partial object: fill the required fields the patch leaves out."""
    filled = yaml.safe_load(yaml.safe_dump(doc))
    if doc["kind"] == "DaemonSet":
        spec = filled.setdefault("spec", {})
        spec.setdefault("selector", {})
        for container in spec["template"]["spec"].get("containers", []):
            container.setdefault("image", "x")
    return kube_roundtrip(filled)


# ------------------------------------------------------------------------------- samples


def _demo_devices() -> list[dict[str, Any]]:
    data = yaml.safe_load(
        (ROOT / "mep_kubeedge_adapter" / "demo_devices.yaml").read_text(encoding="utf-8")
    )
    return list(data["devices"])


_TYPES = {"int": "INT", "float": "FLOAT", "boolean": "BOOLEAN", "string": "STRING"}


def test_sample_crs_decode_in_the_adapter_and_match_the_demo_devices() -> None:
    objects = kustomize(OVERLAYS["samples"])
    models = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): decode_device_model(o)
        for o in objects
        if o["kind"] == "DeviceModel"
    }
    devices = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): decode_device(o)
        for o in objects
        if o["kind"] == "Device"
    }
    demo = {(d["namespace"], d["name"]): d for d in _demo_devices()}
    assert set(devices) == set(demo)
    for device_key, device in devices.items():
        assert device.api_version == "v1beta1"
        assert device.node == LAB_NODE
        model = models[(device.namespace, device.model)]
        twins = demo[device_key]["twins"]
        assert [p.name for p in device.properties] == list(twins)
        for prop in device.properties:
            model_prop = model.property(prop.name)
            assert model_prop is not None, f"{device_key} {prop.name} not in {model.name}"
            assert model_prop.type == _TYPES[twins[prop.name]["type"]]
            expected = twins[prop.name].get("expected")
            assert (prop.desired.value if prop.desired else None) == expected


def test_simulators_play_exactly_the_sample_devices() -> None:
    objects = kustomize(OVERLAYS["samples"])
    simulators = one(objects, "Deployment", "demo-device-simulators")
    spec = simulators["spec"]["template"]["spec"]
    played = sorted(
        arg.split("=", 1)[1]
        for c in spec["containers"]
        for arg in c["args"]
        if arg.startswith("--device=")
    )
    assert played == sorted(f"{d['namespace']}/{d['name']}" for d in _demo_devices())
    assert spec["hostNetwork"] is True
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": LAB_NODE}
    assert all("--spec=/opt/mka/share/demo_devices.yaml" in c["args"] for c in spec["containers"])


# ------------------------------------------------------------------------------- settings


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(environ={k: v for k, v in env.items() if k.startswith("MKA_")})


def test_base_settings_load_and_need_no_mep() -> None:
    settings = _settings(container_environment(kustomize(OVERLAYS["base"])))
    assert settings.node_name == LAB_NODE
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.mep.url is None
    assert settings.kube.source == "none"
    assert settings.api.public_url == "http://192.0.2.10:8080"
    assert str(settings.store.path) == "/var/lib/mka/state.sqlite3"


def test_edgegallery_settings_load_with_the_identity_secret() -> None:
    objects = kustomize(OVERLAYS["edgegallery"])
    template = load_documents(MANIFESTS / "secrets" / "mep-identity.template.yaml")
    settings = _settings(container_environment([*objects, *template]))
    assert settings.mep.url == "https://mep-api-gw.mep:8443"
    assert settings.mep.tls_server_name == "edgegallery"
    assert settings.kube.source == "metaserver"
    assert settings.kube.effective_url == "http://127.0.0.1:10550"
    daemonset = one(objects, "DaemonSet", "mep-kubeedge-adapter")
    container = find_container(daemonset, "adapter")
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(str(settings.mep.ca_file)).parent) in mounts
    refs = [
        v["valueFrom"]["secretKeyRef"]
        for v in container["env"]
        if "secretKeyRef" in v.get("valueFrom", {})
    ]
    assert refs and all(ref["optional"] is False for ref in refs)


def test_edgegallery_without_the_secret_cannot_start() -> None:
    with pytest.raises(AssertionError, match="needs Secret"):
        container_environment(kustomize(OVERLAYS["edgegallery"]))


def test_lab_settings_use_identities_the_lab_mep_knows() -> None:
    objects = kustomize(OVERLAYS["lab"])
    settings = _settings(container_environment(objects))
    assert settings.mep.url == "http://127.0.0.1:30443"
    identities_secret = one(objects, "Secret", "mep-emulator-identities")
    identities = [
        AppIdentity.from_json(i)
        for i in yaml.safe_load(identities_secret["stringData"]["identities.json"])
    ]
    by_id = {i.app_instance_id: i for i in identities}
    assert settings.mep.ak is not None and settings.mep.sk is not None
    adapter = by_id[str(settings.mep.app_instance_id)]
    assert (adapter.ak, adapter.sk) == (
        settings.mep.ak.get_secret_value(),
        settings.mep.sk.get_secret_value(),
    )
    app_secret = one(objects, "Secret", "sample-edge-app-mep-identity")["stringData"]
    app = by_id[app_secret["appInsId"]]
    assert (app.ak, app.sk) == (app_secret["accesskey"], app_secret["secretkey"])
    assert app.may_discover(to_ser_name("kubeedge-devices", settings.node_name))
    emulator = find_container(one(objects, "DaemonSet", "mep-emulator"), "mep-emulator")
    assert "--port=30443" in emulator["args"] and "--host=127.0.0.1" in emulator["args"]


def test_secret_template_matches_what_the_daemonset_reads() -> None:
    template = {
        d["metadata"]["name"]: d
        for d in load_documents(MANIFESTS / "secrets" / "mep-identity.template.yaml")
    }
    daemonset = one(kustomize(OVERLAYS["edgegallery"]), "DaemonSet", "mep-kubeedge-adapter")
    for var in find_container(daemonset, "adapter")["env"]:
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in template[ref["name"]]["stringData"]
    volumes = daemonset["spec"]["template"]["spec"]["volumes"]
    ca = next(v for v in volumes if v["name"] == "mep-ca")["secret"]
    assert ca["items"][0]["key"] in template[ca["secretName"]]["stringData"]
    placeholders = template["mep-kubeedge-adapter-mep-identity"]["stringData"]
    assert len(placeholders["accesskey"]) == 20 and len(placeholders["secretkey"]) == 64


# ------------------------------------------------------------------------------- the DaemonSet


def test_adapter_daemonset_runs_next_to_edgecore() -> None:
    objects = kustomize(OVERLAYS["base"])
    daemonset = one(objects, "DaemonSet", "mep-kubeedge-adapter")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0] == {
        "key": "node-role.kubernetes.io/edge",
        "operator": "Exists",
    }
    assert any(t["key"] == "node-role.kubernetes.io/edge" for t in pod["tolerations"])
    container = find_container(daemonset, "adapter")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert (
        container["ports"][0]["containerPort"] == _settings(container_environment(objects)).api.port
    )
    assert {"requests", "limits"} <= set(container["resources"])
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    # Shutdown deregisters from the MEP; the kubelet must not kill the adapter first.
    settings = Settings()
    assert pod["terminationGracePeriodSeconds"] >= settings.mep.deregister_timeout + 30
    state = next(m for m in container["volumeMounts"] if m["name"] == "state")
    assert state["mountPath"] == str(_settings(container_environment(objects)).store.path.parent)


def test_rbac_grants_what_the_adapter_needs_and_no_more() -> None:
    objects = kustomize(OVERLAYS["base"])
    role = one(objects, "ClusterRole", "mep-kubeedge-adapter")
    granted = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert all(rule["apiGroups"] == ["devices.kubeedge.io"] for rule in role["rules"])
    # The kube source lists and watches all three; the write paths get, patch, replace,
    # create and delete Devices (kubeedge/crwrites.py). Nothing else.
    needed = {
        (r, v) for r in ("devices", "devicemodels", "devicestatuses") for v in ("list", "watch")
    }
    needed |= {("devices", v) for v in ("get", "patch", "update", "create", "delete")}
    assert granted == needed
    binding = one(objects, "ClusterRoleBinding", "mep-kubeedge-adapter")
    daemonset = one(objects, "DaemonSet", "mep-kubeedge-adapter")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": daemonset["spec"]["template"]["spec"]["serviceAccountName"],
            "namespace": daemonset["metadata"]["namespace"],
        }
    ]


def test_service_selects_the_adapter_pods_on_the_same_node() -> None:
    objects = kustomize(OVERLAYS["base"])
    service = one(objects, "Service", "mep-kubeedge-adapter")
    labels = one(objects, "DaemonSet", "mep-kubeedge-adapter")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= labels["labels"].items()
    assert service["spec"]["internalTrafficPolicy"] == "Local"


def test_broker_daemonset_listens_on_loopback_only() -> None:
    docs = {d["kind"]: d for d in load_documents(MANIFESTS / "kubeedge" / "mosquitto.yaml")}
    config = docs["ConfigMap"]["data"]["mosquitto.conf"]
    assert "listener 1883 127.0.0.1" in config
    daemonset = docs["DaemonSet"]
    assert daemonset["metadata"]["name"] == "edge-eclipse-mosquitto"
    assert daemonset["spec"]["template"]["spec"]["hostNetwork"] is True
