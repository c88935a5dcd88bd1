"""EdgeGallery MEP over MP1: AK/SK token signing, ServiceInfo models, the client, discovery.

See :mod:`.client` for the error tree and :mod:`.models` for EdgeGallery's wire quirks.
"""

from mep_kubeedge_adapter.mep.client import (
    BadReply,
    Conflict,
    CredentialsRejected,
    Forbidden,
    InvalidRequest,
    LimitReached,
    Locked,
    Mp1Client,
    Mp1Error,
    NotFound,
    Unauthorized,
    Unavailable,
)
from mep_kubeedge_adapter.mep.models import BodyTooLarge, ServiceInfo, ServiceState

__all__ = [
    "BadReply",
    "BodyTooLarge",
    "Conflict",
    "CredentialsRejected",
    "Forbidden",
    "InvalidRequest",
    "LimitReached",
    "Locked",
    "Mp1Client",
    "Mp1Error",
    "NotFound",
    "ServiceInfo",
    "ServiceState",
    "Unauthorized",
    "Unavailable",
]
