"""A kubeconfig for a :class:`~.server.FakeApiServer`, as an operator hands one to a client.

The fake checks no credentials; the file carries a bearer token anyway, in the shape a
cloud cluster's kubeconfig has (one cluster, one user, one current context), so a client
that refuses tokenless or exec-based configs takes it like a real one.
"""

from __future__ import annotations

import yaml

__all__ = ["kubeconfig"]


def kubeconfig(url: str, *, token: str = "cloud-token", name: str = "cloud") -> bytes:
    """A self-contained kubeconfig (YAML bytes) for the API server at ``url``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": url}}],
            "users": [{"name": "mecm", "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": "mecm"}}],
            "current-context": name,
        }
    ).encode()
