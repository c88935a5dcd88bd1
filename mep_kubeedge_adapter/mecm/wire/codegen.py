"""Regenerate the gRPC and protobuf stubs (and their type stubs) from ``lcmservice.proto``.

Development only: it needs grpcio-tools and mypy-protobuf (the ``dev`` extra), pinned so that
the generated files are reproducible. ``make proto`` writes them into the package; the tests
write them to a scratch directory and compare byte for byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["GENERATED", "PROTO", "generate"]

PROTO = "mep_kubeedge_adapter/mecm/wire/lcmservice.proto"
"""The proto, relative to the source root (the path also fixes the generated imports)."""

GENERATED = tuple(
    f"mep_kubeedge_adapter/mecm/wire/lcmservice_{suffix}"
    for suffix in ("pb2.py", "pb2.pyi", "pb2_grpc.py", "pb2_grpc.pyi")
)


def _plugin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def generate(source_root: Path, out_dir: Path) -> None:
    """Run protoc on ``source_root/PROTO``, writing the four files under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{source_root}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        str(source_root / PROTO),
    ]
    subprocess.run(command, check=True, capture_output=True, env=dict(os.environ))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[3]
    generate(root, root)
    print("\n".join(GENERATED))
