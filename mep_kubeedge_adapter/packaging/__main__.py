"""``python -m mep_kubeedge_adapter.packaging``: app packages, or the chart-made manifests.

    python -m mep_kubeedge_adapter.packaging build --out dist --node edge-node-1 [--node ...]
        [--app adapter|sample-app] [--image-registry HOST[:PORT] [--image-project P]]
    python -m mep_kubeedge_adapter.packaging manifests --out manifests [--check]

``build`` writes ``<chart>-<version>.csar`` (the EdgeGallery app package) and
``<chart>-<version>.tgz`` (the Helm chart) for each app; the file times come from
``SOURCE_DATE_EPOCH``. ``manifests`` (re)writes the kustomize files generated from the
charts (:mod:`.kustomize`); with ``--check`` it changes nothing and exits 1 when they differ.
Exit status 2: bad arguments, or a package that cannot be built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mep_kubeedge_adapter.packaging.archive import PackagingError, source_date_epoch
from mep_kubeedge_adapter.packaging.charts import ImageLocation, chart_archive, chart_metadata
from mep_kubeedge_adapter.packaging.csar import APPS, build_csar, write_csar


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mep_kubeedge_adapter.packaging",
        description="EdgeGallery app packages and Helm charts of mep-kubeedge-adapter.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    build = verbs.add_parser("build", help="app packages (CSAR) and chart archives")
    build.add_argument("--out", type=Path, default=Path("dist"), help="directory (default dist)")
    build.add_argument(
        "--node",
        action="append",
        required=True,
        help="an edge node the packages serve (repeatable): the APPD's serNames are per node",
    )
    build.add_argument(
        "--app", action="append", choices=sorted(APPS), help="only this app (repeatable)"
    )
    build.add_argument("--image-registry", default="", help="imagelocation.domainname")
    build.add_argument("--image-project", default="", help="imagelocation.project")
    manifests = verbs.add_parser("manifests", help="the kustomize files made from the charts")
    manifests.add_argument("--out", type=Path, default=Path("manifests"))
    manifests.add_argument(
        "--check", action="store_true", help="only compare; exit 1 on a difference"
    )
    return parser


def _build(args: argparse.Namespace) -> int:
    image = ImageLocation(args.image_registry, args.image_project)
    epoch = source_date_epoch()
    for app in args.app or sorted(APPS):
        csar = build_csar(app, args.node, image=image, epoch=epoch)
        print(write_csar(csar, args.out))
        chart = APPS[app]
        archive = args.out / f"{chart}-{chart_metadata(chart)['version']}.tgz"
        partial = archive.with_name(f".{archive.name}.partial")
        partial.write_bytes(chart_archive(chart, epoch=epoch, image=image))
        partial.replace(archive)
        print(archive)
    return 0


def _manifests(args: argparse.Namespace) -> int:
    from mep_kubeedge_adapter.packaging.kustomize import generated_manifests

    stale = []
    for name, text in generated_manifests().items():
        path = args.out / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'differs' if args.check else 'wrote'}: {path}")
    return 1 if args.check and stale else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _build(args) if args.verb == "build" else _manifests(args)
    except PackagingError as exc:
        print(f"packaging: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
