"""What an unpacked CSAR must hold, in EdgeGallery's layout (the app package of MECM).

- ``TOSCA-Metadata/TOSCA.meta``: ``Key: value`` lines naming ``Entry-Definitions`` (the
  APPD's main service template), which must exist;
- a manifest (``.mf``) at the root, or the one TOSCA.meta names as ``ETSI-Entry-Manifest``:
  a ``metadata:`` block, then ``Source:`` / ``Algorithm: SHA-256`` / ``Hash:`` per file,
  optionally followed by a CMS signature; every listed file must exist and match its hash;
- what to deploy: a Helm chart archive under ``Artifacts/Deployment/Charts/`` (the first by
  name, as k8splugin picks it), or else plain Kubernetes manifests (``*.yaml``/``*.yml``)
  elsewhere under ``Artifacts/Deployment/``.

``Image/SwImageDesc.json`` is not required (only k8splugin needs it). A chart archive is
checked like the CSAR itself (entry names, links, sizes) before Helm ever reads it.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import yaml

from mep_kubeedge_adapter.mecm.unpack import PackageRefused, UnpackLimits, safe_relative_path

__all__ = [
    "CHARTS_DIR",
    "DEPLOYMENT_DIR",
    "PackageContents",
    "chart_default_values",
    "check_chart_archive",
    "inspect_package",
    "load_manifests",
]

SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""PyYAML's safe loader, in C (libyaml) where installed: charts are parsed on every instantiate."""

TOSCA_META: Final = "TOSCA-Metadata/TOSCA.meta"
DEPLOYMENT_DIR: Final = "Artifacts/Deployment"
CHARTS_DIR: Final = "Artifacts/Deployment/Charts"
_CHART_SUFFIXES: Final = (".tgz", ".tar.gz", ".tar")
_SHA256: Final = re.compile(r"^[0-9a-fA-F]{64}$")
_CMS: Final = "-----BEGIN CMS-----"


@dataclass(frozen=True, slots=True)
class PackageContents:
    """What an accepted package deploys."""

    deploy: Literal["chart", "manifests"]
    artifacts: tuple[str, ...]
    """The chart archive (one path), or the manifest files, relative to the package root."""
    entry_definitions: str
    metadata: dict[str, str] = field(default_factory=dict)
    """The manifest's ``metadata:`` block (``app_product_name``, ``app_package_version``...)."""


def inspect_package(root: Path, files: list[str], limits: UnpackLimits) -> PackageContents:
    """Check the unpacked package at ``root`` (``files``: its relative paths); PackageRefused."""
    present = set(files)
    meta = _tosca_meta(root, present)
    entry = meta.get("Entry-Definitions")
    if not entry:
        raise PackageRefused(f"{TOSCA_META} names no Entry-Definitions")
    if str(safe_relative_path(entry)) not in present:
        raise PackageRefused(f"{TOSCA_META} names Entry-Definitions {entry!r}, which is missing")
    manifest = _manifest_path(meta, present)
    metadata, sources = _parse_manifest(root / manifest, manifest)
    for source, digest in sources.items():
        if source not in present:
            raise PackageRefused(f"{manifest} lists {source!r}, which is missing")
        if _sha256(root / source) != digest.lower():
            raise PackageRefused(f"{source!r} does not match its SHA-256 hash in {manifest}")
    charts = sorted(
        f
        for f in present
        if PurePosixPath(f).parent == PurePosixPath(CHARTS_DIR) and f.endswith(_CHART_SUFFIXES)
    )
    if charts:
        check_chart_archive((root / charts[0]).read_bytes(), limits, name=charts[0])
        return PackageContents("chart", (charts[0],), entry, metadata)
    manifests = sorted(
        f
        for f in present
        if f.startswith(DEPLOYMENT_DIR + "/")
        and not f.startswith(CHARTS_DIR + "/")
        and f.endswith((".yaml", ".yml"))
    )
    if not manifests:
        raise PackageRefused(
            f"no Helm chart (.tgz) under {CHARTS_DIR}/ and no Kubernetes manifests "
            f"(.yaml) under {DEPLOYMENT_DIR}/"
        )
    for path in manifests:
        load_manifests(root / path, path)
    return PackageContents("manifests", tuple(manifests), entry, metadata)


def _tosca_meta(root: Path, present: set[str]) -> dict[str, str]:
    if TOSCA_META not in present:
        raise PackageRefused(f"{TOSCA_META} is missing")
    try:
        text = (root / TOSCA_META).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PackageRefused(f"{TOSCA_META} is not UTF-8 text") from None
    meta: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or key != key.lstrip():
            raise PackageRefused(f"{TOSCA_META} line {number} is not 'Key: value'")
        meta.setdefault(key.strip(), value.strip())
    return meta


def _manifest_path(meta: dict[str, str], present: set[str]) -> str:
    named = meta.get("ETSI-Entry-Manifest")
    if named:
        path = str(safe_relative_path(named))
        if path not in present:
            raise PackageRefused(f"{TOSCA_META} names the manifest {named!r}, which is missing")
        return path
    roots = sorted(f for f in present if "/" not in f and f.endswith(".mf"))
    if not roots:
        raise PackageRefused("no manifest (.mf) at the package root")
    if len(roots) > 1:
        raise PackageRefused(f"several manifests at the package root: {', '.join(roots)}")
    return roots[0]


def _parse_manifest(path: Path, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``metadata:`` block and ``{source: sha256}`` of an EdgeGallery ``.mf``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PackageRefused(f"{name} is not UTF-8 text") from None
    metadata: dict[str, str] = {}
    sources: dict[str, str] = {}
    current: dict[str, str] | None = None
    blocks: list[dict[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(_CMS):
            break
        if not line or line == "metadata:":
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PackageRefused(f"{name} line {number} is not 'key: value'")
        key, value = key.strip(), value.strip()
        if key == "Source":
            current = {"Source": value}
            blocks.append(current)
        elif key in ("Algorithm", "Hash"):
            if current is None:
                raise PackageRefused(f"{name} line {number}: {key} before any Source")
            current[key] = value
        elif current is None:
            metadata[key] = value
    for block in blocks:
        source = str(safe_relative_path(block["Source"]))
        algorithm = block.get("Algorithm", "").upper().replace("-", "")
        digest = block.get("Hash", "")
        if algorithm != "SHA256":
            raise PackageRefused(f"{name}: {source!r} is not hashed with SHA-256")
        if not _SHA256.match(digest):
            raise PackageRefused(f"{name}: {source!r} has no valid SHA-256 hash")
        sources[source] = digest
    return metadata, sources


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def check_chart_archive(data: bytes, limits: UnpackLimits, *, name: str = "chart") -> str:
    """Check a chart ``.tgz`` as Helm would read it; its top directory (the chart's name).

    Entries must be regular files or directories under one top directory holding
    ``Chart.yaml``, within the CSAR's limits; the declared sizes of a tar are the bytes
    inflated, so summing them bounds the work.
    """
    tops: set[str] = set()
    with_chart_yaml: set[str] = set()
    count = total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as archive:
            for member in archive:
                count += 1
                if count > limits.max_files:
                    raise PackageRefused(f"{name} holds more than {limits.max_files} entries")
                path = safe_relative_path(member.name)
                if not (member.isfile() or member.isdir()):
                    raise PackageRefused(f"{name}: entry {member.name!r} is a link or special file")
                if member.size > limits.max_file_bytes:
                    raise PackageRefused(f"{name}: entry {member.name!r} is too large")
                total += member.size
                if total > limits.max_total_bytes:
                    raise PackageRefused(f"{name} inflates beyond {limits.max_total_bytes} bytes")
                tops.add(path.parts[0])
                if member.isfile() and len(path.parts) == 2 and path.parts[1] == "Chart.yaml":
                    with_chart_yaml.add(path.parts[0])
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise PackageRefused(f"{name} is not a readable chart archive ({exc})") from None
    if len(tops) != 1:
        raise PackageRefused(f"{name} must hold one chart directory, found {len(tops)}")
    top = tops.pop()
    if top not in with_chart_yaml:
        raise PackageRefused(f"{name} has no {top}/Chart.yaml")
    return top


def chart_default_values(data: bytes, top: str) -> dict[str, Any]:
    """The chart's own ``values.yaml`` (``{}`` if it has none); the archive was checked at upload."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.lstrip("./") == f"{top}/values.yaml":
                    handle = archive.extractfile(member)
                    text = handle.read() if handle is not None else b""
                    loaded = yaml.load(text, Loader=SAFE_LOADER)
                    return loaded if isinstance(loaded, dict) else {}
    except (tarfile.TarError, EOFError, OSError, yaml.YAMLError) as exc:
        raise PackageRefused(f"the chart's values.yaml cannot be read ({exc})") from None
    return {}


def load_manifests(path: Path, name: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of a plain manifest file; PackageRefused if one is malformed."""
    try:
        documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackageRefused(f"{name} is not valid YAML ({exc})") from None
    objects: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        metadata = document.get("metadata") if isinstance(document, dict) else None
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("apiVersion"), str)
            or not isinstance(document.get("kind"), str)
            or not isinstance(metadata, dict)
            or not isinstance(metadata.get("name"), str)
        ):
            raise PackageRefused(
                f"{name} holds an object without apiVersion, kind or metadata.name"
            )
        objects.append(document)
    return objects
