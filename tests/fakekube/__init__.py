"""A fake Kubernetes API server for the KubeEdge device CRDs (see README.md)."""

from .server import (
    GROUP,
    PROFILE_V1_14,
    PROFILE_V1_22,
    PROFILE_V1_23,
    ApiError,
    FakeApiServer,
    WatchEvent,
)

__all__ = [
    "GROUP",
    "PROFILE_V1_14",
    "PROFILE_V1_22",
    "PROFILE_V1_23",
    "ApiError",
    "FakeApiServer",
    "WatchEvent",
]
