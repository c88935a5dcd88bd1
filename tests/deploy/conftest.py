"""Helpers for the deployment tests: loading manifests, a small kustomize, schema checks.

The resolver implements the part of kustomize these manifests use (``resources`` as files or
directories, ``patches`` with a strategic-merge ``path``, ``images``) and refuses anything else,
so a kustomization that grows a feature also grows a test. Where ``kubectl`` is installed a
test compares its output with ``kubectl kustomize``.

Built-in objects are checked against the Kubernetes client's models: deserialising enforces
required fields and a round trip back to JSON must give the same document, so a misspelt or
misplaced field (which the API server would silently drop) is an error. Device and DeviceModel
CRs are checked against the CRD's OpenAPI schema from the KubeEdge v1.23.1 CRD files, with
unknown fields refused for the same reason.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient

# jsonschema ships without type information; it comes with openapi-core (a dev dependency).
jsonschema: Any = importlib.import_module("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRD_DIR = ROOT / "tests" / "kube" / "data"
LAB_NODE = "edge-node-1"
"""The node the lab samples are pinned to."""
OVERLAYS = {
    "base": MANIFESTS / "base",
    "samples": MANIFESTS / "samples",
    "edgegallery": MANIFESTS / "overlays" / "edgegallery",
    "lab": MANIFESTS / "overlays" / "lab",
    "mecm-plugin": MANIFESTS / "mecm-plugin",
}

Obj = dict[str, Any]
Key = tuple[str, str, str]
"""(kind, namespace, name) of an object; namespace is ``""`` for cluster-scoped kinds."""


def load_documents(path: Path) -> list[Obj]:
    """Every non-empty YAML document of ``path``; each must be a mapping."""
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise AssertionError(f"{path}: a document is not a mapping")
    return docs


def key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


# ----------------------------------------------------------------------- kustomize subset

_SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "envFrom": None,
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "tolerations": None,
    "imagePullSecrets": "name",
}
"""Lists merged by key in a strategic-merge patch (``None``: replaced), as Kubernetes does."""


def _strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = dict(target)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = _strategic_merge(merged[name], value, name)
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if isinstance(target, list) and isinstance(patch, list):
        merge_key = _MERGE_KEYS.get(field)
        if merge_key is None:
            return copy.deepcopy(patch)
        merged_list = list(target)
        for item in patch:
            index = next(
                (
                    i
                    for i, old in enumerate(merged_list)
                    if old.get(merge_key) == item.get(merge_key)
                ),
                None,
            )
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = _strategic_merge(merged_list[index], item, field)
        return merged_list
    return copy.deepcopy(patch)


def _set_images(obj: Obj, images: list[Mapping[str, str]]) -> None:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        image = str(container.get("image", ""))
        name = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
        for rule in images:
            if rule["name"] == name:
                container["image"] = f"{rule.get('newName', name)}:{rule['newTag']}"


def kustomize(directory: Path) -> list[Obj]:
    """The objects ``kustomize build directory`` yields, for the features listed above."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unsupported = set(kustomization) - _SUPPORTED
    if unsupported:
        raise AssertionError(f"{directory}: kustomization uses {sorted(unsupported)}")
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        objects.extend(kustomize(path) if path.is_dir() else load_documents(path))
    seen: set[Key] = set()
    for obj in objects:
        if key(obj) in seen:
            raise AssertionError(f"{directory}: {key(obj)} defined twice")
        seen.add(key(obj))
    for patch_ref in kustomization.get("patches", []):
        if set(patch_ref) != {"path"}:
            raise AssertionError(f"{directory}: only path patches are supported: {patch_ref}")
        for patch in load_documents(directory / patch_ref["path"]):
            index = next((i for i, o in enumerate(objects) if key(o) == key(patch)), None)
            if index is None:
                raise AssertionError(f"{directory}: patch target {key(patch)} not found")
            objects[index] = _strategic_merge(objects[index], patch)
    for obj in objects:
        _set_images(obj, kustomization.get("images", []))
    return objects


def patch_files() -> set[Path]:
    """Every file some kustomization uses as a patch (partial objects, not resources)."""
    found: set[Path] = set()
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        for patch_ref in data.get("patches", []):
            found.add((kustomization.parent / patch_ref["path"]).resolve())
    return found


def canonical(value: Any, field: str = "") -> Any:
    """Order-independent form: lists keyed by name are sorted, as kustomize may reorder them."""
    if isinstance(value, dict):
        return {k: canonical(v, k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [canonical(v, field) for v in value]
        if items and all(isinstance(i, dict) for i in items) and field in _MERGE_KEYS:
            return sorted(items, key=lambda i: json.dumps(i, sort_keys=True))
        return items
    return value


# ----------------------------------------------------------------------- Kubernetes models

_API_CLIENT = ApiClient()


def model_name(obj: Mapping[str, Any]) -> str:
    """``V1DaemonSet`` for ``apps/v1`` ``DaemonSet``: the client's model class of the object."""
    version = str(obj["apiVersion"]).split("/")[-1]
    return version[0].upper() + version[1:] + str(obj["kind"])


def kube_roundtrip(obj: Mapping[str, Any], model: str | None = None) -> Any:
    """Deserialise into the client's model (required fields, enums) and serialise back."""
    # The name-mangled private method is the one stable entry point: the public deserialize()
    # takes a response object in older clients and the response text in newer ones.
    deserialize = _API_CLIENT._ApiClient__deserialize  # type: ignore[attr-defined]
    instance = deserialize(json.loads(json.dumps(obj)), model or model_name(obj))
    sanitize: Any = _API_CLIENT.sanitize_for_serialization
    return sanitize(instance)


def unknown_fields(original: Any, roundtrip: Any, path: str = "") -> Iterator[str]:
    """Paths present in ``original`` that did not survive the model round trip."""
    if isinstance(original, dict):
        if not isinstance(roundtrip, dict):
            yield path or "."
            return
        for name, value in original.items():
            if name not in roundtrip:
                yield f"{path}.{name}"
            else:
                yield from unknown_fields(value, roundtrip[name], f"{path}.{name}")
    elif isinstance(original, list):
        if not isinstance(roundtrip, list) or len(roundtrip) != len(original):
            yield path
            return
        for index, (a, b) in enumerate(zip(original, roundtrip, strict=True)):
            yield from unknown_fields(a, b, f"{path}[{index}]")


# ----------------------------------------------------------------------- CRD schemas

_CRD_FILES = {
    "Device": "v1.23.1_devices_v1beta1_device.yaml",
    "DeviceModel": "v1.23.1_devices_v1beta1_devicemodel.yaml",
    "DeviceStatus": "v1.23.1_devices_v1beta1_devicestatus.yaml",
}


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD does not preserve them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def crd_validator(kind: str, version: str) -> Any:
    """A Draft 7 validator of the CRD's schema for ``kind`` at ``version``."""
    crd = yaml.safe_load((CRD_DIR / _CRD_FILES[kind]).read_text(encoding="utf-8"))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema = copy.deepcopy(entry["schema"]["openAPIV3Schema"])
            # metadata is an ObjectMeta, checked with the Kubernetes model instead.
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            return jsonschema.Draft7Validator(_strict(schema))
    raise AssertionError(f"{kind} {version} is not in {_CRD_FILES[kind]}")


# ----------------------------------------------------------------------- rendered pods


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def find_container(obj: Obj, name: str) -> dict[str, Any]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = next(c for c in containers if c["name"] == name)
    return found


def container_environment(
    objects: list[Obj],
    host_ip: str = "192.0.2.10",
    *,
    workload: str = "mep-kubeedge-adapter",
    kind: str = "DaemonSet",
    name: str = "adapter",
) -> dict[str, str]:
    """What a container's environment would be on node :data:`LAB_NODE`, Secrets included."""
    pod_container = find_container(one(objects, kind, workload), name)
    env: dict[str, str] = {}
    for source in pod_container.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    secrets = {
        o["metadata"]["name"]: o.get("stringData", {}) for o in objects if o["kind"] == "Secret"
    }
    for var in pod_container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
        elif "fieldRef" in var["valueFrom"]:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = {"spec.nodeName": LAB_NODE, "status.hostIP": host_ip}[path]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets.get(ref["name"], {}).get(ref["key"])
            if value is None:
                assert ref.get("optional") is True, f"{var['name']} needs Secret {ref['name']}"
            else:
                env[var["name"]] = value
    return env
