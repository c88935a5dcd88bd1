"""Kustomize manifests generated from the Helm charts: one source for each pod spec.

``manifests/base`` is the adapter's chart, and ``manifests/samples/sample-app.yaml`` the
sample app's chart, rendered by Helm's own engine with fixed values (:data:`GENERATED`),
written one file per kind. ``make manifests`` rewrites them; a test regenerates them and
fails on any difference, so the charts and the kustomize manifests cannot drift. The overlays
stay hand-written patches (a test checks the edgegallery overlay against the chart too).

Rendering needs the ``mecm`` extra (helm-python-sdk), which only this generator and the tests
use; building app packages does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mep_kubeedge_adapter.packaging.archive import DEFAULT_EPOCH, PackagingError
from mep_kubeedge_adapter.packaging.charts import ADAPTER_CHART, SAMPLE_APP_CHART, chart_archive
from mep_kubeedge_adapter.packaging.yamlfmt import dump_yaml

__all__ = ["GENERATED", "Generated", "generated_manifests", "render_generated"]

LAB_NODE = "edge-node-1"
"""The node the samples are pinned to (manifests/samples/kustomization.yaml says how to
change it)."""


@dataclass(frozen=True, slots=True)
class Generated:
    """A chart rendered into kustomize files: which chart, how, and where each kind goes."""

    chart: str
    release: str
    namespace: str
    values: Mapping[str, Any]
    files: Mapping[str, str]
    """Kind to file path, relative to the manifests directory."""
    about: str
    """The values, in words, for the generated files' header."""


GENERATED = (
    Generated(
        chart=ADAPTER_CHART,
        release="mep-kubeedge-adapter",
        namespace="mep-kubeedge-adapter",
        values={"global": {"namespace": {"enabled": True}}, "mep": {"enabled": False}},
        files={
            "Namespace": "base/namespace.yaml",
            "ServiceAccount": "base/serviceaccount.yaml",
            "ClusterRole": "base/rbac.yaml",
            "ClusterRoleBinding": "base/rbac.yaml",
            "ConfigMap": "base/configmap.yaml",
            "DaemonSet": "base/daemonset.yaml",
            "Service": "base/service.yaml",
        },
        about="mep.enabled=false, global.namespace.enabled=true",
    ),
    Generated(
        chart=SAMPLE_APP_CHART,
        release="sample-edge-app",
        namespace="mep-kubeedge-adapter",
        values={
            "appconfig": {"appnamespace": "mep-kubeedge-adapter"},
            # The lab overlay's MEP emulator: plain HTTP on each edge node's loopback.
            "mep": {"url": "http://127.0.0.1:30443", "tlsServerName": ""},
            "nodeSelector": {"kubernetes.io/hostname": LAB_NODE},
        },
        files={"Deployment": "samples/sample-app.yaml"},
        about=f"the lab MEP on 127.0.0.1:30443, node {LAB_NODE}",
    ),
)


def render_generated(target: Generated) -> list[dict[str, Any]]:
    """The objects ``target``'s chart renders, from the same archive a package carries."""
    from mep_kubeedge_adapter.mecm.render import ChartError, render_chart

    archive = chart_archive(target.chart, epoch=DEFAULT_EPOCH)
    try:
        rendered = render_chart(
            archive, dict(target.values), release=target.release, namespace=target.namespace
        )
    except ChartError as exc:
        raise PackagingError(str(exc)) from exc
    return list(rendered.objects)


def generated_manifests() -> dict[str, str]:
    """Path (relative to ``manifests/``) to content of every chart-generated manifest."""
    texts: dict[str, str] = {}
    for target in GENERATED:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for obj in render_generated(target):
            path = target.files.get(str(obj["kind"]))
            if path is None:
                raise PackagingError(f"no file is meant for the {obj['kind']} of {target.chart}")
            grouped.setdefault(path, []).append(obj)
        header = (
            f"# Generated from the Helm chart mep_kubeedge_adapter/packaging/charts/{target.chart}\n"
            f"# (release {target.release}; {target.about})\n"
            "# by `make manifests`."
            " Edit the chart, not this file: a test fails while the two\n"
            "# disagree. The chart's templates say why each field is what it is.\n"
        )
        for path, objects in grouped.items():
            texts[path] = header + dump_yaml(*objects)
    return dict(sorted(texts.items()))
