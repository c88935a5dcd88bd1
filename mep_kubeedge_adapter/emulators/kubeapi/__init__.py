"""A fake Kubernetes API server for tests, and the cluster that runs behind it (README.md)."""

from .errors import ApiError
from .kubeconfig import kubeconfig
from .metrics import MetricsApi, MetricsMode
from .resources import CRD_GROUP, PROFILE_V1_14, PROFILE_V1_22, PROFILE_V1_23, Profile
from .server import FakeApiServer
from .storage import WatchEvent

GROUP = CRD_GROUP
"""The KubeEdge device CRD group (kept under its old name)."""

__all__ = [
    "GROUP",
    "PROFILE_V1_14",
    "PROFILE_V1_22",
    "PROFILE_V1_23",
    "ApiError",
    "FakeApiServer",
    "MetricsApi",
    "MetricsMode",
    "Profile",
    "WatchEvent",
    "kubeconfig",
]
