"""Byte-reproducible archives: a gzipped tar for Helm charts, a zip for app packages.

The same entries give the same bytes, whatever the machine's clock, umask, user or directory
order: entries are written in path order, every timestamp is the build's epoch (the
reproducible-builds ``SOURCE_DATE_EPOCH`` convention, see :func:`source_date_epoch`), owners
are root with empty names, modes are fixed (0644), the gzip header carries the epoch and no
file name, and zip entries carry the epoch as their DOS date and a Unix creator. Compression
is zlib's level 9, so the bytes also depend on the zlib build; two builds on one machine (or
one image) are identical.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
import zipfile
from collections.abc import Mapping

__all__ = ["DEFAULT_EPOCH", "PackagingError", "source_date_epoch", "tar_gz", "zip_archive"]

DEFAULT_EPOCH = 315532800
"""1980-01-01T00:00:00Z, the earliest time a zip entry can carry."""

_ZIP_MAX_EPOCH = 4354819199
"""2107-12-31T23:59:59Z, the latest DOS date."""

_FILE_MODE = 0o644


class PackagingError(Exception):
    """A package cannot be built; the message says what to change."""


def source_date_epoch(environ: Mapping[str, str] | None = None) -> int:
    """The build's timestamp: ``SOURCE_DATE_EPOCH`` if set, else :data:`DEFAULT_EPOCH`.

    ``make package`` sets it to the last commit's time, so a package says when its source was
    made, and two builds of one commit agree to the byte.
    """
    raw = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_EPOCH
    if not raw.isdigit():
        raise PackagingError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, not {raw!r}")
    return min(max(int(raw), DEFAULT_EPOCH), _ZIP_MAX_EPOCH)


def _check_paths(entries: Mapping[str, bytes]) -> list[str]:
    paths = sorted(entries)
    for path in paths:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise PackagingError(f"archive entry {path!r} is not a plain relative path")
    return paths


def tar_gz(entries: Mapping[str, bytes], *, epoch: int) -> bytes:
    """A ``.tgz`` of ``entries`` (relative path to content), as ``helm package`` lays it out
    when every path starts with the chart's name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in _check_paths(entries):
            data = entries[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = epoch
            info.mode = _FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=epoch, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def zip_archive(entries: Mapping[str, bytes], *, epoch: int) -> bytes:
    """A zip of ``entries`` (relative path to content), deflated, in path order."""
    date_time = time.gmtime(min(max(epoch, DEFAULT_EPOCH), _ZIP_MAX_EPOCH))[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in _check_paths(entries):
            info = zipfile.ZipInfo(path, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the mode below is honoured
            info.external_attr = (0o100000 | _FILE_MODE) << 16
            zf.writestr(info, entries[path], compresslevel=9)
    return out.getvalue()
