"""The kustomize base and overlays resolve to the expected objects."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from mep_kubeedge_adapter import __version__
from tests.deploy.conftest import OVERLAYS, Key, canonical, key, kustomize

NS = "mep-kubeedge-adapter"
BASE: set[Key] = {
    ("Namespace", "", NS),
    ("ServiceAccount", NS, "mep-kubeedge-adapter"),
    ("ClusterRole", "", "mep-kubeedge-adapter"),
    ("ClusterRoleBinding", "", "mep-kubeedge-adapter"),
    ("ConfigMap", NS, "mep-kubeedge-adapter-settings"),
    ("DaemonSet", NS, "mep-kubeedge-adapter"),
    ("Service", NS, "mep-kubeedge-adapter"),
}
SAMPLES: set[Key] = {
    ("DeviceModel", "default", "thermometer"),
    ("DeviceModel", "default", "pump"),
    ("DeviceModel", "default", "valve"),
    ("Device", "default", "thermo-1"),
    ("Device", "default", "pump-1"),
    ("Device", "default", "valve-1"),
    ("Deployment", NS, "demo-device-simulators"),
    ("Deployment", NS, "sample-edge-app"),
}
LAB_EXTRA: set[Key] = {
    ("DaemonSet", NS, "mep-emulator"),
    ("Secret", NS, "mep-kubeedge-adapter-mep-identity"),
    ("Secret", NS, "sample-edge-app-mep-identity"),
    ("Secret", NS, "mep-emulator-identities"),
}
MECM_NS = "default"
MECM_PLUGIN: set[Key] = {
    ("PersistentVolumeClaim", MECM_NS, "mecm-mepm-kubeedge-plugin-data"),
    ("Deployment", MECM_NS, "mecm-mepm-kubeedge-plugin"),
    ("Service", MECM_NS, "mecm-mepm-kubeedge-plugin"),
}
EXPECTED = {
    "base": BASE,
    "samples": SAMPLES,
    # No Secret: the operator creates the identity (manifests/secrets/) outside git.
    "edgegallery": BASE,
    "lab": BASE | SAMPLES | LAB_EXTRA,
    "mecm-plugin": MECM_PLUGIN,
}
IMAGES = {name: "mep-kubeedge-adapter" for name in EXPECTED} | {
    "mecm-plugin": "mep-kubeedge-adapter-mecm"
}
"""The image each set runs: the adapter's, or the MECM plugin's (Dockerfile target)."""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_overlay_resolves_to_the_expected_objects(name: str) -> None:
    objects = kustomize(OVERLAYS[name])
    assert {key(o) for o in objects} == EXPECTED[name]
    assert len(objects) == len(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_image_is_the_released_one(name: str) -> None:
    for obj in kustomize(OVERLAYS[name]):
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
            assert container["image"] == f"{IMAGES[name]}:{__version__}", key(obj)


def test_edgegallery_overlay_patches_settings_and_daemonset() -> None:
    objects = {key(o): o for o in kustomize(OVERLAYS["edgegallery"])}
    base = {key(o): o for o in kustomize(OVERLAYS["base"])}
    settings = objects[("ConfigMap", NS, "mep-kubeedge-adapter-settings")]["data"]
    base_settings = base[("ConfigMap", NS, "mep-kubeedge-adapter-settings")]["data"]
    changed = {k for k in settings if settings[k] != base_settings.get(k)}
    assert changed == {
        "MKA_MEP__URL",
        "MKA_MEP__CA_FILE",
        "MKA_MEP__TLS_SERVER_NAME",
        "MKA_KUBE__SOURCE",
    }
    pod = objects[("DaemonSet", NS, "mep-kubeedge-adapter")]["spec"]["template"]["spec"]
    adapter = pod["containers"][0]
    base_env = base[("DaemonSet", NS, "mep-kubeedge-adapter")]["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert sorted(e["name"] for e in adapter["env"]) == sorted(e["name"] for e in base_env)
    assert {v["name"] for v in pod["volumes"]} == {"state", "tmp", "mep-ca"}


def test_lab_overlay_points_the_adapter_at_its_mep_emulator() -> None:
    objects = {key(o): o for o in kustomize(OVERLAYS["lab"])}
    settings = objects[("ConfigMap", NS, "mep-kubeedge-adapter-settings")]["data"]
    assert settings["MKA_MEP__URL"] == "http://127.0.0.1:30443"
    app = objects[("Deployment", NS, "sample-edge-app")]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in app["containers"][0]["env"]}
    assert env["MEP_URL"] == settings["MKA_MEP__URL"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_resolver_agrees_with_kubectl_kustomize(name: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAYS[name])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    theirs = {key(o): canonical(o) for o in yaml.safe_load_all(result.stdout) if o}
    ours = {key(o): canonical(o) for o in kustomize(OVERLAYS[name])}
    assert theirs == ours
