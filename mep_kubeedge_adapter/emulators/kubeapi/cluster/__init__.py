"""The moving parts of an edge cluster behind the fake API server (see ``cluster.py``)."""

from .cluster import EDGE_KUBELET_VERSION, Cluster
from .metrics_server import UsageRule
from .nodes import EDGE_KUBELET_PORT, ClusterNode

__all__ = ["EDGE_KUBELET_PORT", "EDGE_KUBELET_VERSION", "Cluster", "ClusterNode", "UsageRule"]
