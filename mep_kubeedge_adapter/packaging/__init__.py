"""Deliverables built from the adapter's Helm charts: app packages, chart archives, kustomize.

* :func:`build_csar` makes the EdgeGallery app package (CSAR) of the adapter or of the
  sample edge app for a list of edge nodes, byte for byte the same on every build of the same
  tree (:mod:`.csar`); ``make package`` and the MECM demo call it.
* :func:`chart_archive` is a chart's ``.tgz`` for ``helm install`` (:mod:`.charts`).
* :func:`~.kustomize.generated_manifests` renders ``manifests/base`` and the lab sample app
  from the charts (needs the ``mecm`` extra).

The charts are package data (``charts/<name>/``), found through :mod:`importlib.resources`,
so all of this works from a source checkout and from an installed wheel alike.
"""

from mep_kubeedge_adapter.packaging.archive import PackagingError, source_date_epoch
from mep_kubeedge_adapter.packaging.charts import (
    ADAPTER_CHART,
    CHARTS,
    SAMPLE_APP_CHART,
    ImageLocation,
    chart_archive,
    chart_files,
)
from mep_kubeedge_adapter.packaging.csar import (
    APPS,
    Csar,
    build_csar,
    produced_services,
    required_services,
    write_csar,
)

__all__ = [
    "ADAPTER_CHART",
    "APPS",
    "CHARTS",
    "SAMPLE_APP_CHART",
    "Csar",
    "ImageLocation",
    "PackagingError",
    "build_csar",
    "chart_archive",
    "chart_files",
    "produced_services",
    "required_services",
    "source_date_epoch",
    "write_csar",
]
