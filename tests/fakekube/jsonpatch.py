"""RFC 6902 JSON patch and RFC 7386 merge patch, as the fake API server applies them.

Kept apart from the server so the error split the real API server makes is visible in one
place: a patch document that cannot be decoded is a ``400 BadRequest``
(:class:`MalformedPatch`), a well-formed patch whose operation cannot be applied (a failing
``test``, a missing path) is a ``422`` (:class:`PatchFailed`) — see ``README.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["MalformedPatch", "PatchFailed", "apply_json_patch", "apply_merge_patch"]


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
