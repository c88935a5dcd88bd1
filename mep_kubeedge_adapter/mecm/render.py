"""Helm charts rendered with Helm's own engine, in-process, behind one function.

No helm binary is needed: ``helm-python-sdk`` binds Helm v4's Go SDK through a C ABI, so a
chart renders exactly as ``helm template`` would (sprig functions, ``.Release``, ``.Values``
merged over the chart's own values.yaml, templates guarded by ``if``). The library is young,
so nothing else in the project imports it: a change of engine is a change of this module.

The call blocks (tens of milliseconds); async callers run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mep_kubeedge_adapter.mecm.csar import SAFE_LOADER

__all__ = ["ChartError", "RenderedChart", "render_chart"]


class ChartError(Exception):
    """The chart cannot be loaded or rendered; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class RenderedChart:
    """What a chart renders to: its identity and the objects, in template-path order."""

    name: str
    version: str
    objects: tuple[dict[str, Any], ...]


def render_chart(
    chart: bytes | Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str,
    namespace: str,
) -> RenderedChart:
    """Render ``chart`` (a ``.tgz`` archive's bytes, or a chart directory or archive path).

    ``values`` are merged over the chart's values.yaml, as ``helm install --values`` does.
    Objects are the YAML documents of every template (``NOTES.txt`` and empty documents
    left out), in the order of their template paths; each is a mapping with ``apiVersion``,
    ``kind`` and ``metadata.name``, or the whole chart is refused with :class:`ChartError`.
    """
    import helm_python  # the native library loads on first use only

    try:
        loaded = (
            helm_python.Chart.load_archive(chart)
            if isinstance(chart, bytes)
            else helm_python.Chart.load(chart)
        )
    except helm_python.HelmError as exc:
        raise ChartError(f"cannot load the chart: {exc}") from exc
    with loaded:
        try:
            rendered = loaded.render(
                dict(values or {}), name=release, namespace=namespace, is_install=True
            )
        except helm_python.HelmError as exc:
            raise ChartError(f"chart {loaded.name} does not render: {exc}") from exc
        name, version = loaded.name, loaded.version
    objects: list[dict[str, Any]] = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml", ".json")):
            continue
        objects.extend(_documents(path, rendered[path]))
    return RenderedChart(name=name, version=version, objects=tuple(objects))


def _documents(path: str, text: str) -> list[dict[str, Any]]:
    try:
        documents = list(yaml.load_all(text, Loader=SAFE_LOADER))
    except yaml.YAMLError as exc:
        raise ChartError(f"{path} renders to invalid YAML: {exc}") from exc
    objects: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ChartError(f"{path} renders a document that is not a mapping")
        metadata = document.get("metadata")
        if (
            not isinstance(document.get("apiVersion"), str)
            or not isinstance(document.get("kind"), str)
            or not isinstance(metadata, dict)
            or not isinstance(metadata.get("name"), str)
        ):
            raise ChartError(f"{path} renders an object without apiVersion, kind or metadata.name")
        objects.append(document)
    return objects
