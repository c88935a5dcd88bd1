"""Charts render with Helm's own engine, as ``helm template`` would."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mep_kubeedge_adapter.mecm.render import ChartError, render_chart

CHART_YAML = "apiVersion: v2\nname: demo\nversion: 0.3.1\n"
VALUES_YAML = """\
appconfig:
  appnamespace: default
  aksk:
    accesskey: ""
    secretkey: ""
    appInsId: ""
    secretname: ""
global:
  namespace:
    enabled: false
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
  namespace: {{ .Values.appconfig.appnamespace }}
data:
  ak: {{ .Values.appconfig.aksk.accesskey | quote }}
  upper: {{ .Chart.Name | upper | quote }}
"""
NAMESPACE = """\
{{- if .Values.global.namespace.enabled }}
apiVersion: v1
kind: Namespace
metadata:
  name: {{ .Values.appconfig.appnamespace }}
{{- end }}
"""


def _tgz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"demo/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CHART = {
    "Chart.yaml": CHART_YAML,
    "values.yaml": VALUES_YAML,
    "templates/configmap.yaml": CONFIGMAP,
    "templates/eg_template/namespace.yaml": NAMESPACE,
    "templates/NOTES.txt": "installed {{ .Release.Name }}",
}


def test_values_merge_over_the_charts_own_and_guards_apply() -> None:
    rendered = render_chart(
        _tgz(CHART),
        {"appconfig": {"appnamespace": "app-ns", "aksk": {"accesskey": "AK1"}}},
        release="inst-1",
        namespace="app-ns",
    )
    assert (rendered.name, rendered.version) == ("demo", "0.3.1")
    assert rendered.objects == (
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "inst-1-cm", "namespace": "app-ns"},
            "data": {"ak": "AK1", "upper": "DEMO"},
        },
    )


def test_a_global_flag_turns_on_the_guarded_template() -> None:
    rendered = render_chart(
        _tgz(CHART),
        {"appconfig": {"appnamespace": "app-ns"}, "global": {"namespace": {"enabled": True}}},
        release="inst-1",
        namespace="app-ns",
    )
    assert [o["kind"] for o in rendered.objects] == ["ConfigMap", "Namespace"]


def test_a_chart_directory_renders_too(tmp_path: Path) -> None:
    for name, text in CHART.items():
        path = tmp_path / "demo" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    rendered = render_chart(tmp_path / "demo", release="r", namespace="default")
    assert rendered.objects[0]["metadata"]["name"] == "r-cm"


def test_a_template_error_is_a_chart_error() -> None:
    broken = dict(CHART, **{"templates/bad.yaml": "x: {{ .Values.nope.deeper }}\n"})
    with pytest.raises(ChartError, match="does not render"):
        render_chart(_tgz(broken), release="r", namespace="default")


def test_garbage_is_not_a_chart() -> None:
    with pytest.raises(ChartError, match="cannot load"):
        render_chart(b"not a tarball", release="r", namespace="default")


def test_an_object_without_a_name_is_refused() -> None:
    nameless = dict(CHART, **{"templates/x.yaml": "apiVersion: v1\nkind: ConfigMap\n"})
    with pytest.raises(ChartError, match=r"metadata\.name"):
        render_chart(_tgz(nameless), release="r", namespace="default")
