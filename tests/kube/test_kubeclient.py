"""The shared kube access: building clients, discovery and calls in threads, against the fake."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from mep_kubeedge_adapter.domain import ErrorKind
from mep_kubeedge_adapter.emulators.kubeapi import PROFILE_V1_14, FakeApiServer, MetricsMode
from mep_kubeedge_adapter.kubeedge.kubeclient import (
    API_ERRORS,
    KubeAccess,
    KubeClientError,
    adapter_error,
    build_api_client,
    describe_host,
    kubeconfig_api_client,
)
from mep_kubeedge_adapter.settings import KubeSettings

from .conftest import GROUP


def kubeconfig(
    server: str,
    *,
    user: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    current: str = "x",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": current,
    }


def write(path: Path, document: Any) -> Path:
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def test_client_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metaserver = build_api_client(KubeSettings(source="metaserver"))
    assert describe_host(metaserver) == "http://127.0.0.1:10550"
    assert metaserver.configuration.retries == 0
    metaserver.close()  # type: ignore[no-untyped-call]

    config_file = write(tmp_path / "kubeconfig", kubeconfig("http://127.0.0.1:6443"))
    from_file = build_api_client(KubeSettings(source="kubeconfig", kubeconfig=config_file))
    assert describe_host(from_file) == "http://127.0.0.1:6443"
    from_file.close()  # type: ignore[no-untyped-call]
    overridden = build_api_client(
        KubeSettings(source="kubeconfig", kubeconfig=config_file, url="http://127.0.0.1:7000/")
    )
    assert describe_host(overridden) == "http://127.0.0.1:7000"
    overridden.close()  # type: ignore[no-untyped-call]

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeClientError):
        build_api_client(KubeSettings(source="incluster"))
    with pytest.raises(KubeClientError):
        build_api_client(KubeSettings(source="kubeconfig", kubeconfig=tmp_path / "missing"))


async def test_uploaded_kubeconfig_reaches_its_cluster(
    fake_apiserver: FakeApiServer, tmp_path: Path
) -> None:
    config_file = write(tmp_path / "uploaded", kubeconfig(fake_apiserver.url))
    access = KubeAccess(partial(kubeconfig_api_client, config_file))
    assert access.host is None
    try:
        served = await access.served_resources(GROUP, "v1beta1")
        assert served is not None and {"devices", "devicemodels"} <= served
        assert access.host == fake_apiserver.url
        assert api_client_retries(await access.api()) == 0
        listing = await access.request(
            client.CustomObjectsApi, "list_cluster_custom_object", GROUP, "v1beta1", "devices"
        )
        assert listing["items"] == []
        assert await access.served_resources("metrics.k8s.io", "v1beta1") == {"nodes", "pods"}
        fake_apiserver.metrics.mode = MetricsMode.ABSENT  # no metrics-server APIService
        assert await access.served_resources("metrics.k8s.io", "v1beta1") is None
    finally:
        access.close()
    assert access.host is None


def api_client_retries(api: client.ApiClient) -> Any:
    return api.configuration.retries


async def test_access_builds_once_and_again_after_close(fake_apiserver: FakeApiServer) -> None:
    built: list[client.ApiClient] = []

    def build() -> client.ApiClient:
        api = build_api_client(KubeSettings(source="metaserver", url=fake_apiserver.url))
        built.append(api)
        return api

    access = KubeAccess(build)
    try:
        assert await access.api() is await access.api()
        versions = await access.call(lambda api: client.VersionApi(api).get_code())
        assert versions.major
        assert len(built) == 1
        access.close()
        fake_apiserver.serve(PROFILE_V1_14)
        assert await access.served_resources(GROUP, "v1beta1") is None
        assert len(built) == 2
    finally:
        access.close()


async def test_access_errors_map_to_kinds(fake_apiserver: FakeApiServer) -> None:
    access = KubeAccess(
        partial(build_api_client, KubeSettings(source="metaserver", url=fake_apiserver.url))
    )
    try:
        with pytest.raises(client.ApiException) as caught:
            await access.request(
                client.CustomObjectsApi,
                "get_namespaced_custom_object",
                GROUP,
                "v1beta1",
                "default",
                "devices",
                "missing",
            )
        assert adapter_error(caught.value, "device default/missing").kind is ErrorKind.NOT_FOUND
        await fake_apiserver.go_down()
        with pytest.raises(API_ERRORS) as down:
            await access.served_resources(GROUP, "v1beta1")
        assert adapter_error(down.value, "the kube API").kind is ErrorKind.UNAVAILABLE
    finally:
        access.close()


@pytest.mark.parametrize(
    ("user", "cluster", "refused"),
    [
        ({"exec": {"command": "touch", "args": ["RAN"]}}, {}, "'exec'"),
        ({"auth-provider": {"name": "oidc", "config": {}}}, {}, "'auth-provider'"),
        ({"tokenFile": "/var/run/secrets/token"}, {}, "'tokenFile'"),
        (
            {"client-certificate": "/etc/cert.pem", "client-key-data": "eA=="},
            {},
            "'client-certificate'",
        ),
        ({"client-certificate-data": "eA==", "client-key": "/etc/key.pem"}, {}, "'client-key'"),
        ({"token": "t"}, {"certificate-authority": "/etc/ca.pem"}, "'certificate-authority'"),
    ],
)
def test_uploaded_kubeconfig_may_not_run_commands_or_read_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    user: dict[str, Any],
    cluster: dict[str, Any],
    refused: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    config_file = write(
        tmp_path / "uploaded", kubeconfig("https://127.0.0.1:6443", user=user, cluster=cluster)
    )
    with pytest.raises(KubeClientError, match=refused) as exc:
        kubeconfig_api_client(config_file)
    assert "/etc/" not in str(exc.value) and "/var/" not in str(exc.value)
    assert not (tmp_path / "RAN").exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("clusters: [unclosed", "not YAML"),
        ("- a list", "not a YAML mapping"),
        (kubeconfig("http://127.0.0.1:1", current=""), "no current-context"),
        (kubeconfig("http://127.0.0.1:1", current="other"), "no context 'other'"),
        ({"current-context": "x", "contexts": "nope"}, "no contexts list"),
    ],
)
def test_unusable_kubeconfig_is_a_clear_error(tmp_path: Path, document: Any, message: str) -> None:
    with pytest.raises(KubeClientError, match=message):
        kubeconfig_api_client(write(tmp_path / "uploaded", document))
    with pytest.raises(KubeClientError, match="cannot read"):
        kubeconfig_api_client(tmp_path / "missing")


def test_uploaded_kubeconfig_context_can_be_chosen(tmp_path: Path) -> None:
    document = kubeconfig("http://127.0.0.1:6443", current="")
    api = kubeconfig_api_client(write(tmp_path / "uploaded", document), context="x")
    try:
        assert describe_host(api) == "http://127.0.0.1:6443"
    finally:
        api.close()  # type: ignore[no-untyped-call]
