"""Unpacking an uploaded CSAR (a zip archive) without trusting it.

Every entry is checked before a byte is written: no absolute paths, no ``..``, no drive
letters or backslashes, no links or special files, no duplicates, no encryption, at most
``max_files`` entries. While writing, the bytes actually inflated are counted (a zip's
declared sizes can lie): a file over ``max_file_bytes``, a total over ``max_total_bytes`` or
an entry that inflates more than ``MAX_RATIO`` times beyond ``RATIO_FLOOR`` bytes is a bomb.
Any refusal removes what was written; the message names the entry and the rule.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["MAX_RATIO", "PackageRefused", "UnpackLimits", "safe_relative_path", "unpack_zip"]

MAX_RATIO: Final = 200
"""Inflated/compressed bytes beyond which an entry counts as a zip bomb (text rarely exceeds 20)."""
RATIO_FLOOR: Final = 1 << 20
"""Entries smaller than this (inflated) are never judged by their ratio."""
_CHUNK: Final = 64 * 1024


class PackageRefused(AdapterError):
    """The package is refused; ``detail`` says precisely why."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorKind.INVALID, f"package refused: {detail}")


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    max_files: int
    max_file_bytes: int
    max_total_bytes: int


def safe_relative_path(name: str) -> PurePosixPath:
    """``name`` as a relative path inside the archive, or PackageRefused."""
    if not name or "\\" in name or "\x00" in name:
        raise PackageRefused(f"entry {name!r} has an invalid name")
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise PackageRefused(f"entry {name!r} is an absolute path")
    if any(part == ".." for part in path.parts):
        raise PackageRefused(f"entry {name!r} leaves the package (..)")
    if not path.parts or all(part == "." for part in path.parts):
        raise PackageRefused(f"entry {name!r} has an invalid name")
    return path


def _check_entry(info: zipfile.ZipInfo) -> PurePosixPath:
    path = safe_relative_path(info.filename)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise PackageRefused(f"entry {info.filename!r} is a symbolic link")
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise PackageRefused(f"entry {info.filename!r} is not a regular file")
    if info.flag_bits & 0x1:
        raise PackageRefused(f"entry {info.filename!r} is encrypted")
    return path


def unpack_zip(archive: Path, destination: Path, limits: UnpackLimits) -> list[str]:
    """Unpack ``archive`` into the new directory ``destination``; the files' relative paths.

    Blocking; run it in a worker thread. On any refusal ``destination`` is removed.
    """
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageRefused(f"not a zip archive ({exc})") from None
    destination.mkdir(mode=0o700)
    try:
        with zipped:
            return _unpack(zipped, destination, limits)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def _unpack(zipped: zipfile.ZipFile, destination: Path, limits: UnpackLimits) -> list[str]:
    entries = zipped.infolist()
    if len(entries) > limits.max_files:
        raise PackageRefused(f"{len(entries)} entries, more than the limit of {limits.max_files}")
    checked: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    for info in entries:
        path = _check_entry(info)
        if path in seen:
            raise PackageRefused(f"entry {info.filename!r} appears twice")
        seen.add(path)
        if info.file_size > limits.max_file_bytes:
            raise PackageRefused(
                f"entry {info.filename!r} is {info.file_size} bytes, "
                f"more than the limit of {limits.max_file_bytes}"
            )
        checked.append((info, path))
    files: list[str] = []
    total = 0
    for info, path in checked:
        target = destination.joinpath(*path.parts)
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            total = _inflate(zipped, info, target, total, limits)
        except FileExistsError:
            raise PackageRefused(f"entry {info.filename!r} clashes with another entry") from None
        except (NotADirectoryError, IsADirectoryError):
            raise PackageRefused(f"entry {info.filename!r} clashes with another entry") from None
        files.append(str(path))
    return files


def _inflate(
    zipped: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, total: int, limits: UnpackLimits
) -> int:
    written = 0
    compressed = max(info.compress_size, 1)
    try:
        with zipped.open(info) as source, target.open("xb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                if written > limits.max_file_bytes:
                    raise PackageRefused(
                        f"entry {info.filename!r} inflates beyond the limit of "
                        f"{limits.max_file_bytes} bytes"
                    )
                if total > limits.max_total_bytes:
                    raise PackageRefused(
                        f"the package inflates beyond the limit of {limits.max_total_bytes} bytes"
                    )
                if written > RATIO_FLOOR and written > MAX_RATIO * compressed:
                    raise PackageRefused(
                        f"entry {info.filename!r} inflates more than {MAX_RATIO} times (a zip bomb)"
                    )
                sink.write(chunk)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError) as exc:
        raise PackageRefused(f"entry {info.filename!r} cannot be read ({exc})") from None
    return total
