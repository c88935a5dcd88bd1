"""The three patch types the fake applies: RFC 6902 JSON patch, RFC 7386 merge patch, and
Kubernetes' strategic merge patch for the built-in kinds.

Kept apart from the server so the error split the real API server makes is visible in one
place: a patch document that cannot be decoded is a ``400 BadRequest``
(:class:`MalformedPatch`), a well-formed patch whose operation cannot be applied (a failing
``test``, a missing path) is a ``422`` (:class:`PatchFailed`) — see ``README.md``.

Strategic merge patch, as far as it goes here: maps merge key by key and ``null`` deletes; a
list whose field declares a merge key (``containers`` by ``name``, ``conditions`` by ``type``,
see :data:`MERGE_KEYS`) merges item by item on that key, new items appended; ``finalizers``
and ``podCIDRs`` merge as sets; every other list is replaced whole. Directives: ``$patch:
replace`` and ``$patch: delete`` on a map or on a list item, ``$retainKeys``,
``$deleteFromPrimitiveList/<field>``; ``$setElementOrder/<field>`` is accepted and ignored
(new items keep the order described above).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MERGE_KEYS",
    "MalformedPatch",
    "PatchFailed",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
]


class MalformedPatch(ValueError):
    """The patch document is not a list of valid operations."""


class PatchFailed(ValueError):
    """An operation of a well-formed patch could not be applied to the object."""


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise MalformedPatch(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool, path: str) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchFailed(f"invalid array index {token!r} in {path}")
    i = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if i > limit:
        raise PatchFailed(f"array index {i} out of range in {path}")
    return i


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchFailed(f"missing path {path}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False, path=path)]
        else:
            raise PatchFailed(f"missing path {path}")
    return node


def _get(doc: Any, tokens: list[str], path: str) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"missing path {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False, path=path)]
    raise PatchFailed(f"missing path {path}")


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True, path=path), value)
    else:
        raise PatchFailed(f"missing path {path}")
    return doc


def _remove(doc: Any, tokens: list[str], path: str) -> Any:
    if not tokens:
        raise PatchFailed("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchFailed(f"missing path {path}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False, path=path))
    raise PatchFailed(f"missing path {path}")


def apply_json_patch(doc: Any, patch: Any) -> Any:
    """Apply ``patch`` to a deep copy of ``doc`` and return the result; ``doc`` is untouched."""
    if not isinstance(patch, list):
        raise MalformedPatch("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for n, op in enumerate(patch):
        if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
            raise MalformedPatch(f"operation {n} has no op")
        kind = op["op"]
        path = op.get("path")
        tokens = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise MalformedPatch(f"operation {n} ({kind}) has no value")
        if kind == "add":
            result = _add(result, tokens, copy.deepcopy(op["value"]), str(path))
        elif kind == "remove":
            _remove(result, tokens, str(path))
        elif kind == "replace":
            _get(result, tokens, str(path))
            if tokens:
                _remove(result, tokens, str(path))
            result = _add(result, tokens, copy.deepcopy(op["value"]), str(path))
        elif kind in ("move", "copy"):
            source = op.get("from")
            from_tokens = _pointer(source)
            value = _get(result, from_tokens, str(source))
            if kind == "move":
                if tokens[: len(from_tokens)] == from_tokens and tokens != from_tokens:
                    raise PatchFailed(f"cannot move {source} into its own child {path}")
                _remove(result, from_tokens, str(source))
            result = _add(result, tokens, copy.deepcopy(value), str(path))
        elif kind == "test":
            actual = _get(result, tokens, str(path))
            if actual != op["value"]:
                raise PatchFailed(f"testing value {path} failed: test failed")
        else:
            raise MalformedPatch(f"unexpected op {kind!r}")
    return result


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else (lists too) replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
}
"""Fields whose lists merge on a key (``patchMergeKey`` in the core and apps types).

``ports`` is keyed by ``containerPort`` under a container and by ``port`` in a Service.
"""
_SET_LISTS = frozenset({"finalizers", "podCIDRs"})
_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ELEMENT_ORDER = "$setElementOrder/"


def _merge_key(name: str, path: tuple[str, ...]) -> str | None:
    if name == "ports":
        return "containerPort" if any(p.endswith("ontainers") for p in path) else "port"
    return MERGE_KEYS.get(name)


def apply_strategic_merge_patch(doc: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to a deep copy of ``doc`` (see the module docstring)."""
    if not isinstance(patch, Mapping):
        raise MalformedPatch("a strategic merge patch must be a JSON object")
    return _merge_map(doc if isinstance(doc, dict) else {}, patch, ())


def _merge_map(doc: Mapping[str, Any], patch: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge", "delete"):
        raise MalformedPatch(f"unknown patch directive {directive!r}")
    result: dict[str, Any] = copy.deepcopy(dict(doc))
    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise MalformedPatch("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            if value.get(_DIRECTIVE) == "delete":
                result.pop(key, None)
            else:
                current = result.get(key)
                result[key] = _merge_map(
                    current if isinstance(current, dict) else {}, value, (*path, key)
                )
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value, (*path, key))
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(name: str, current: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    original = current if isinstance(current, list) else []
    if name in _SET_LISTS:
        merged = list(original)
        merged.extend(v for v in patch if v not in merged)
        return copy.deepcopy(merged)
    key = _merge_key(name, path)
    if key is None or not all(isinstance(item, Mapping) for item in patch):
        return copy.deepcopy(patch)
    if any(item.get(_DIRECTIVE) == "replace" for item in patch):
        return [
            {k: copy.deepcopy(v) for k, v in item.items() if k != _DIRECTIVE}
            for item in patch
            if item.get(_DIRECTIVE) != "replace"
        ]
    result: list[Any] = copy.deepcopy(original)
    for item in patch:
        if key not in item:
            raise MalformedPatch(f"a {name} item of the patch has no merge key {key!r}")
        index = next(
            (
                i
                for i, existing in enumerate(result)
                if isinstance(existing, Mapping) and existing.get(key) == item[key]
            ),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(_merge_map({}, item, path))
        else:
            result[index] = _merge_map(result[index], item, path)
    return result
