"""Label and field selectors, and the filter a list or a watch applies with them.

Label selectors: equality (``a=b``, ``a==b``, ``a!=b``) and set based (``a in (x,y)``,
``a notin (x)``, ``a``, ``!a``). Field selectors: ``=``, ``==``, ``!=`` on the labels the
resource's field-label conversion accepts (see :mod:`.resources`); any other label is a
``400 BadRequest`` in the server's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request
from .resources import ResourceType

__all__ = ["Filter", "LabelRequirement", "parse_field_selector", "parse_label_selector"]


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    op: str  # = != in notin exists !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:
                return not present


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def parse_label_selector(selector: str) -> list[LabelRequirement]:
    """Equality- and set-based label selectors (``a=b,c!=d,e in (f,g),!h``)."""
    reqs: list[LabelRequirement] = []
    for term in _split_terms(selector):
        for word in (" notin ", " in "):
            if word in term:
                key, rest = term.split(word, 1)
                rest = rest.strip()
                if not (rest.startswith("(") and rest.endswith(")")):
                    raise bad_request(f"unable to parse requirement: {term}")
                values = frozenset(v.strip() for v in rest[1:-1].split(",") if v.strip())
                reqs.append(LabelRequirement(key.strip(), word.strip(), values))
                break
        else:
            if "!=" in term:
                key, value = term.split("!=", 1)
                reqs.append(LabelRequirement(key.strip(), "!=", frozenset({value.strip()})))
            elif "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                reqs.append(LabelRequirement(key.strip(), "=", frozenset({value.strip()})))
            elif term.startswith("!"):
                reqs.append(LabelRequirement(term[1:].strip(), "!exists"))
            else:
                reqs.append(LabelRequirement(term, "exists"))
    return reqs


def parse_field_selector(rtype: ResourceType, selector: str) -> list[tuple[str, bool, str]]:
    """``(label, equal, value)`` terms; a label the resource does not support is a 400."""
    out: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        if "!=" in term:
            key, value = term.split("!=", 1)
            equal = False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            equal = True
        else:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        key = key.strip()
        if not rtype.supports_field(key):
            raise bad_request(rtype.field_label_error(key))
        out.append((key, equal, value.strip()))
    return out


@dataclass(frozen=True)
class Filter:
    """What a list or a watch selects: one resource, maybe one namespace, and selectors."""

    rtype: ResourceType
    namespace: str | None
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def parse(
        cls, rtype: ResourceType, namespace: str | None, label_selector: str, field_selector: str
    ) -> Filter:
        return cls(
            rtype,
            namespace,
            tuple(parse_label_selector(label_selector)),
            tuple(parse_field_selector(rtype, field_selector)),
        )

    def matches(self, key: str, obj: Mapping[str, Any]) -> bool:
        if key != self.rtype.key:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        if self.fields:
            values = self.rtype.selectable_fields(obj)
            for label, equal, value in self.fields:
                if (values.get(label, "") == value) != equal:
                    return False
        return True
