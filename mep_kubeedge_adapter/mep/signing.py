"""AK/SK signing of EdgeGallery's ``POST /mep/token`` request (pure, no I/O).

mepauth does not trust a client-computed canonical form: it rebuilds the request from what it
received (``https://`` + the received ``Host`` + path and query, an *empty* body, only the
headers named in ``SignedHeaders``) and signs that again. So the one thing a client must get
right besides the algorithm is to sign exactly the ``Host`` and ``Content-Type`` values it puts
on the wire. :func:`token_request_headers` returns the full header set to send, so the caller
cannot drift from what was signed.

Algorithm (``SDK-HMAC-SHA256``, an AWS-SigV4 relative without key derivation):

* canonical URI: path segments (empty, ``.`` and ``..`` dropped) escaped like Go's
  ``url.QueryEscape`` and joined with ``/``, with a leading **and trailing** ``/``;
* canonical query: ``escape(k)=escape(v)`` pairs, sorted, joined with ``&``;
* canonical headers: ``name:value`` lines (lower-case names, trimmed values), sorted, each
  followed by ``\\n``;
* the body hash is always that of the empty body;
* the HMAC key is the SK string as raw ASCII bytes (not base64-decoded).

Three bad signatures for one AK within 300 s lock it for 900 s, so a signing bug must be caught
by the unit test against the published vector, never by trial against a live MEP.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote_plus

__all__ = [
    "ALGORITHM",
    "EMPTY_BODY_SHA256",
    "SIGNED_HEADERS",
    "TOKEN_CONTENT_TYPE",
    "TOKEN_PATH",
    "authorization_header",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "sdk_date",
    "signature",
    "string_to_sign",
    "token_request_headers",
]

ALGORITHM = "SDK-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host;x-sdk-date"
TOKEN_PATH = "/mep/token"
TOKEN_CONTENT_TYPE = "application/json"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def sdk_date(now: datetime | None = None) -> str:
    """Format ``now`` (default: current time) as mepauth's ``x-sdk-date``: ``YYYYMMDDTHHMMSSZ`` UTC.

    mepauth checks only the format, not the clock skew; UTC is used anyway so the value is true.
    """
    moment = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _query_escape(value: str) -> str:
    """Go ``url.QueryEscape``: space becomes ``+``, only ``A-Za-z0-9-_.~`` stay literal."""
    return quote_plus(value, safe="")


def canonical_uri(path: str) -> str:
    """Canonical URI of ``path``; ``/mep/token`` becomes ``/mep/token/`` (note the trailing ``/``)."""
    segments = [s for s in path.split("/") if s not in ("", ".", "..")]
    if not segments:
        return "/"
    return "/" + "/".join(_query_escape(s) for s in segments) + "/"


def canonical_query(pairs: Iterable[tuple[str, str]] = ()) -> str:
    """Canonical query string of ``(name, value)`` pairs (repeated names allowed)."""
    return "&".join(sorted(f"{_query_escape(k)}={_query_escape(v)}" for k, v in pairs))


def canonical_headers(headers: Mapping[str, str | Iterable[str]]) -> tuple[str, str]:
    """Return ``(canonical_headers, signed_headers)`` for the headers to be signed.

    A header given several values has them trimmed, sorted and joined with ``,``. The canonical
    block ends with ``\\n``, which puts a blank line before the signed-header list in the
    canonical request.
    """
    lines: list[str] = []
    names: list[str] = []
    for name, value in headers.items():
        lower = name.strip().lower()
        values = [value] if isinstance(value, str) else list(value)
        joined = ",".join(sorted(v.strip() for v in values))
        lines.append(f"{lower}:{joined}")
        names.append(lower)
    return "".join(line + "\n" for line in sorted(lines)), ";".join(sorted(names))


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str | Iterable[str]],
    body_sha256: str = EMPTY_BODY_SHA256,
) -> str:
    """The canonical request, the six parts joined with ``\\n``."""
    header_block, signed = canonical_headers(headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_block,
            signed,
            body_sha256,
        ]
    )


def string_to_sign(date: str, canonical: str) -> str:
    """``SDK-HMAC-SHA256\\n<x-sdk-date>\\n<hex sha256 of the canonical request>``."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def signature(sk: str, to_sign: str) -> str:
    """Hex HMAC-SHA256 of ``to_sign`` keyed with the SK string's raw bytes."""
    return hmac.new(sk.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization_header(ak: str, signed_headers: str, sig: str) -> str:
    """The ``Authorization`` value in the exact spacing mepauth's regex demands."""
    return f"{ALGORITHM} Access={ak}, SignedHeaders={signed_headers}, Signature={sig}"


def token_request_headers(
    ak: str,
    sk: str,
    host: str,
    *,
    path: str = TOKEN_PATH,
    content_type: str = TOKEN_CONTENT_TYPE,
    now: datetime | None = None,
) -> dict[str, str]:
    """Headers for ``POST <path>`` with an empty body, signed for ``host``.

    ``host`` must be the exact ``Host`` header that goes on the wire (``host:port`` unless the
    port is the scheme's default). The result contains ``Host``, ``Content-Type``,
    ``X-Sdk-Date`` and ``Authorization``; send all four unchanged and no body.
    """
    date = sdk_date(now)
    signed = {"content-type": content_type, "host": host, "x-sdk-date": date}
    canonical = canonical_request("POST", path, (), signed)
    sig = signature(sk, string_to_sign(date, canonical))
    return {
        "Host": host,
        "Content-Type": content_type,
        "X-Sdk-Date": date,
        "Authorization": authorization_header(ak, SIGNED_HEADERS, sig),
    }
