"""The Helm charts this package ships, read as package data, and their ``.tgz`` archives.

The charts live inside the Python package (``mep_kubeedge_adapter/packaging/charts/``) and
are read through :mod:`importlib.resources`, so the same code finds them in a source
checkout, an editable install and an installed wheel. A chart archive is the chart's files
under ``<chart>/``, as ``helm package`` writes it, with the image location optionally set in
its values.yaml (EdgeGallery's ``imagelocation.domainname`` / ``imagelocation.project``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import yaml

from mep_kubeedge_adapter.packaging.archive import PackagingError, tar_gz

__all__ = [
    "ADAPTER_CHART",
    "CHARTS",
    "SAMPLE_APP_CHART",
    "ImageLocation",
    "chart_archive",
    "chart_files",
    "chart_metadata",
    "chart_root",
    "chart_values",
]

ADAPTER_CHART = "mep-kubeedge-adapter"
SAMPLE_APP_CHART = "sample-edge-app"
CHARTS = (ADAPTER_CHART, SAMPLE_APP_CHART)

_DOMAIN = re.compile(r"^[A-Za-z0-9.:-]*$")
_PROJECT = re.compile(r"^[a-z0-9._/-]*$")


@dataclass(frozen=True, slots=True)
class ImageLocation:
    """Where the image is pulled from: ``<domain>/<project>/<name>:<tag>`` (EdgeGallery's
    ``imagelocation``); both empty means the bare image name."""

    domain: str = ""
    project: str = ""

    def __post_init__(self) -> None:
        if not _DOMAIN.match(self.domain):
            raise PackagingError(f"image registry {self.domain!r}: letters, digits, '.', ':', '-'")
        if not _PROJECT.match(self.project):
            raise PackagingError(f"image project {self.project!r}: a-z, 0-9, '.', '_', '/', '-'")
        if self.project and not self.domain:
            raise PackagingError("an image project needs an image registry")

    def reference(self, name: str, tag: str) -> str:
        prefix = "".join(f"{part}/" for part in (self.domain, self.project) if part)
        return f"{prefix}{name}:{tag}"


def chart_root(name: str) -> Traversable:
    """The chart directory ``name`` inside the installed package."""
    if name not in CHARTS:
        raise PackagingError(f"no chart {name!r}; the charts are {', '.join(CHARTS)}")
    root = resources.files("mep_kubeedge_adapter.packaging") / "charts" / name
    if not root.is_dir():
        raise PackagingError(f"chart {name} is missing from the installed package")
    return root


def chart_files(name: str) -> dict[str, bytes]:
    """Every file of chart ``name``, by path relative to the chart directory."""
    files: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.name.startswith((".", "__")) or child.name.endswith(".pyc"):
                continue
            path = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{path}/")
            else:
                files[path] = child.read_bytes()

    walk(chart_root(name), "")
    for required in ("Chart.yaml", "values.yaml", "values.schema.json"):
        if required not in files:
            raise PackagingError(f"chart {name} has no {required}")
    return files


def chart_metadata(name: str) -> dict[str, Any]:
    """The chart's Chart.yaml."""
    data = yaml.safe_load(chart_files(name)["Chart.yaml"])
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise PackagingError(f"chart {name}: Chart.yaml has no version")
    return data


def chart_values(name: str) -> dict[str, Any]:
    """The chart's default values (values.yaml)."""
    data = yaml.safe_load(chart_files(name)["values.yaml"])
    if not isinstance(data, dict):
        raise PackagingError(f"chart {name}: values.yaml is not a mapping")
    return data


def _set_image_location(values_yaml: str, location: ImageLocation) -> str:
    """values.yaml with ``imagelocation`` set, comments and layout kept."""
    lines = values_yaml.splitlines(keepends=True)
    try:
        start = lines.index("imagelocation:\n")
    except ValueError:
        raise PackagingError("values.yaml has no top-level imagelocation block") from None
    wanted = {"domainname": location.domain, "project": location.project}
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not line.startswith((" ", "\n", "#")):
            break
        key = line.strip().partition(":")[0]
        if line.startswith("  ") and not line.startswith("   ") and key in wanted:
            lines[index] = f"  {key}: {json.dumps(wanted.pop(key))}\n"
    if wanted:
        raise PackagingError(f"values.yaml imagelocation lacks {', '.join(sorted(wanted))}")
    return "".join(lines)


def chart_archive(name: str, *, epoch: int, image: ImageLocation | None = None) -> bytes:
    """The ``.tgz`` of chart ``name`` (what ``helm install`` and a CSAR take)."""
    files = chart_files(name)
    if image is not None and (image.domain or image.project):
        values = files["values.yaml"].decode("utf-8")
        files["values.yaml"] = _set_image_location(values, image).encode("utf-8")
    return tar_gz({f"{name}/{path}": data for path, data in files.items()}, epoch=epoch)
