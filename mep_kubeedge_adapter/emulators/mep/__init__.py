"""An EdgeGallery-flavoured MEP for labs and tests: ``mep-kubeedge-adapter mep-emulator``.

It plays mepauth (AK/SK-signed tokens, lock-out), Kong (bearer check, IP binding, per-service
gateway routes) and mepserver (MEC 011 service management with EdgeGallery's rules, liveness,
discovery, service-availability notifications) in one aiohttp server. It is written from the
EdgeGallery and ETSI references and deliberately shares no code with the adapter's MP1 client,
so a misunderstanding on one side shows up as a failing test instead of passing twice.

Running it::

    mep-kubeedge-adapter mep-emulator --port 30443              # demo identity, HTTP
    mep-kubeedge-adapter mep-emulator --cert srv.pem --key srv.key --identities apps.json

``apps.json`` is a list of ``{"appInstanceId", "ak", "sk", "requiredServices": [...]}``
(AK 20 and SK 64 characters of ``[A-Za-z0-9_+/=]``, appInstanceId a UUID). Without it the
emulator knows one identity, EdgeGallery's public demo pair (appInstanceId
``5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f``), or the one given by ``--app-instance-id/--ak/--sk``.
``--required-services`` (comma separated, default ``*``) sets what that identity may discover;
real EdgeGallery gives its demo identity none. The token-signing public key is at ``GET
/admin/jwt-public-key`` (PEM), or written by ``--jwt-public-key-out``.

One module per part, each documenting what an app sees of it (all paths as on EdgeGallery's
API gateway):

- ``mepauth``: ``POST /mep/token`` and the ``/mep/appMng/v1/.../confs`` provisioning call;
- ``mepserver``: ``/mep/mec_service_mgmt/v1/...`` behind Kong's token check, with its own
  input rules in ``rules``;
- ``gateway``: Kong's per-service routes, websocket upgrades included;
- ``spec``: the ETSI MEC 011 v2.1.1 OpenAPI check of MP1 requests and replies;
- ``admin``: ``/admin/...``, the controls below over HTTP;
- ``emulator``: :class:`MepEmulator`, which puts them on one server; ``identities``:
  :class:`AppIdentity`; ``replies``: the error shapes of each component; ``cli``: the verb.

In Python, :class:`MepEmulator` is an async context manager with the same controls as methods
(``wipe()``, ``down()``, ``up()``, ``provision()``, ``issue_token()``, ``calls``...).
"""

from mep_kubeedge_adapter.emulators.mep.cli import add_arguments, run, running
from mep_kubeedge_adapter.emulators.mep.emulator import MepEmulator
from mep_kubeedge_adapter.emulators.mep.identities import (
    DEMO_AK,
    DEMO_APP_INSTANCE_ID,
    DEMO_SK,
    AppIdentity,
)

__all__ = [
    "DEMO_AK",
    "DEMO_APP_INSTANCE_ID",
    "DEMO_SK",
    "AppIdentity",
    "MepEmulator",
    "add_arguments",
    "run",
    "running",
]
