"""YAML as this project writes it for people: block style, sequences indented under their key,
keys in the order given, no line folding."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["dump_yaml"]


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_yaml(*documents: Any) -> str:
    """``documents`` as one YAML stream (``---`` between them)."""
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )
