"""manifests/mecm-plugin: the KubeEdge plugin for MECM, deployed as k8splugin is.

EdgeGallery's mecm-mepm chart gives k8splugin the Secret ``mecm-mepm-ssl-secret`` (``ca.crt``,
``server_tls.crt``, ``server_tls.key``) and user-mgmt's public key from
``mecm-mepm-jwt-public-secret`` (``publicKey``); lcmcontroller finds a plugin through
``<VIM>_PLUGIN`` and ``<VIM>_PLUGIN_PORT`` (reference: mecm-applcm.md §1.3). The plugin's
settings are the ``MKA_MECM__*`` names of the product contract.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from tests.deploy.conftest import OVERLAYS, find_container, kustomize, one
from tests.deploy.test_dockerfile import _stage

NAME = "mecm-mepm-kubeedge-plugin"
CONTRACT_SETTINGS = {
    "MKA_MECM__HOST",
    "MKA_MECM__PORT",
    "MKA_MECM__TLS_CERT_FILE",
    "MKA_MECM__TLS_KEY_FILE",
    "MKA_MECM__INSECURE",
    "MKA_MECM__AUTH",
    "MKA_MECM__JWT_PUBLIC_KEY_FILE",
    "MKA_MECM__DATA_DIR",
    "MKA_MECM__MAX_PACKAGE_BYTES",
    "MKA_MECM__MAX_UNPACKED_BYTES",
    "MKA_MECM__MAX_PACKAGE_FILES",
}
"""The plugin's settings as the product contract names them (SPEC §7)."""


def _objects() -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in kustomize(OVERLAYS["mecm-plugin"])}


def _env() -> dict[str, str]:
    plugin = find_container(_objects()["Deployment"], "plugin")
    return {e["name"]: e["value"] for e in plugin["env"]}


def _mounted_file(path: str) -> tuple[str, str]:
    """(secret name, key) of the Secret item mounted at ``path`` in the plugin container."""
    deployment = _objects()["Deployment"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    target = PurePosixPath(path)
    for mount in find_container(deployment, "plugin")["volumeMounts"]:
        if target.parent == PurePosixPath(mount["mountPath"]):
            secret = volumes[mount["name"]]["secret"]
            item = next(i for i in secret["items"] if i["path"] == target.name)
            return secret["secretName"], item["key"]
    raise AssertionError(f"nothing mounted at {path}")


def test_settings_are_the_contract_names() -> None:
    env = _env()
    mecm = {name for name in env if name.startswith("MKA_MECM__")}
    assert mecm <= CONTRACT_SETTINGS
    assert env["MKA_MECM__AUTH"] == "jwt"
    assert "MKA_MECM__INSECURE" not in env  # TLS, as lcmcontroller's client_ssl_enable wants


def test_tls_and_jwt_key_come_from_the_secrets_k8splugin_uses() -> None:
    env = _env()
    assert _mounted_file(env["MKA_MECM__TLS_CERT_FILE"]) == (
        "mecm-mepm-ssl-secret",
        "server_tls.crt",
    )
    assert _mounted_file(env["MKA_MECM__TLS_KEY_FILE"]) == (
        "mecm-mepm-ssl-secret",
        "server_tls.key",
    )
    assert _mounted_file(env["MKA_MECM__JWT_PUBLIC_KEY_FILE"]) == (
        "mecm-mepm-jwt-public-secret",
        "publicKey",
    )


def test_state_lives_on_the_claim_and_one_pod_holds_it() -> None:
    objects = _objects()
    deployment = objects["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1
    claim = objects["PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = find_container(deployment, "plugin")["volumeMounts"]
    data = next(m for m in mounts if m["mountPath"] == _env()["MKA_MECM__DATA_DIR"])
    assert volumes[data["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The plugin's own service account is never used: kubeconfigs come from lcmcontroller.
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_lcmcontroller_reaches_it_by_service_name_and_port() -> None:
    objects = _objects()
    service, deployment = objects["Service"], objects["Deployment"]
    assert service["metadata"]["name"] == NAME  # KUBEEDGE_PLUGIN
    (port,) = service["spec"]["ports"]
    plugin = find_container(deployment, "plugin")
    (container_port,) = plugin["ports"]
    assert port["targetPort"] == container_port["name"]
    assert port["port"] == container_port["containerPort"] == int(_env()["MKA_MECM__PORT"])
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert _stage("mecm-plugin").all("EXPOSE") == [str(port["port"])]
    assert plugin["readinessProbe"]["tcpSocket"]["port"] == container_port["name"]
    assert one(list(objects.values()), "Service", NAME)["spec"]["type"] == "ClusterIP"


def test_runs_the_plugin_image_and_verb() -> None:
    plugin = find_container(_objects()["Deployment"], "plugin")
    assert plugin["image"].startswith("mep-kubeedge-adapter-mecm:")
    assert plugin["args"] == ["mecm-plugin"]
    assert plugin["securityContext"]["readOnlyRootFilesystem"] is True
