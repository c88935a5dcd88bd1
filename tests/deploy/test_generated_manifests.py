"""The kustomize manifests and the Helm charts are one source: regenerate and compare.

``manifests/base`` and ``manifests/samples/sample-app.yaml`` are the charts rendered by
Helm's engine (``make manifests``); the edgegallery overlay is a hand-written patch, so it is
checked against the chart rendered with the MEP on, object for object.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mep_kubeedge_adapter.mecm.render import render_chart
from mep_kubeedge_adapter.packaging import ADAPTER_CHART, chart_archive
from mep_kubeedge_adapter.packaging.__main__ import main as packaging_main
from mep_kubeedge_adapter.packaging.archive import DEFAULT_EPOCH
from mep_kubeedge_adapter.packaging.kustomize import GENERATED, generated_manifests
from tests.deploy.conftest import MANIFESTS, OVERLAYS, canonical, key, kustomize

NS = "mep-kubeedge-adapter"


def test_generated_manifests_are_up_to_date() -> None:
    stale = [
        path
        for path, text in generated_manifests().items()
        if (MANIFESTS / path).read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"run `make manifests`: {stale} differ from the charts"


def test_every_generated_file_is_used_by_a_kustomization() -> None:
    generated = {(MANIFESTS / path).resolve() for path in generated_manifests()}
    listed = {
        (path.parent / resource).resolve()
        for path in MANIFESTS.rglob("kustomization.yaml")
        for resource in yaml.safe_load(path.read_text(encoding="utf-8"))["resources"]
    }
    assert generated <= listed
    assert {t.chart for t in GENERATED} == {ADAPTER_CHART, "sample-edge-app"}


def test_check_mode_reports_a_drifted_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert packaging_main(["manifests", "--out", str(tmp_path)]) == 0
    assert packaging_main(["manifests", "--out", str(tmp_path), "--check"]) == 0
    daemonset = tmp_path / "base" / "daemonset.yaml"
    daemonset.write_text(daemonset.read_text().replace("hostNetwork: true", "hostNetwork: false"))
    capsys.readouterr()
    assert packaging_main(["manifests", "--out", str(tmp_path), "--check"]) == 1
    assert "differs: " in capsys.readouterr().out
    assert "hostNetwork: false" in daemonset.read_text()  # --check changed nothing


EDGEGALLERY_VALUES = {
    "global": {"namespace": {"enabled": True}},
    "mep": {
        "url": "https://mep-api-gw.mep:8443",
        "ca": {"secretName": "mep-kubeedge-adapter-mep-ca"},
    },
    "settings": {"MKA_KUBE__SOURCE": "metaserver"},
}
"""The chart's values for what overlays/edgegallery deploys."""


def test_edgegallery_overlay_is_the_chart_with_the_mep_on() -> None:
    archive = chart_archive(ADAPTER_CHART, epoch=DEFAULT_EPOCH)
    chart = render_chart(archive, EDGEGALLERY_VALUES, release=ADAPTER_CHART, namespace=NS)
    ours = {key(o): canonical(o) for o in chart.objects}
    overlay = {key(o): canonical(o) for o in kustomize(OVERLAYS["edgegallery"])}
    assert set(ours) == set(overlay)
    for object_key in ours:
        assert overlay[object_key] == ours[object_key], object_key
