"""The base URL a caller used to reach the API, for ``Location``, ``_links`` and ``websocketUri``.

Apps reach the adapter through the MEP's Kong gateway at ``https://<gw>/<gwName>/...``; Kong
strips ``/<gwName>`` before forwarding and the gateway name changes on every re-registration.
A link must therefore be built from the request that is being answered, not from settings:

1. ``Forwarded`` (RFC 7239): ``proto`` and ``host`` of the first element (the hop nearest the
   client);
2. ``X-Forwarded-Proto``, ``X-Forwarded-Host``, ``X-Forwarded-Port`` (first value of each),
   used for what ``Forwarded`` did not say;
3. ``X-Forwarded-Prefix``: the path the proxy stripped (Kong's ``/<gwName>``);
4. with no forwarded host: ``MKA_API__PUBLIC_URL`` (its path counts as the prefix when no
   ``X-Forwarded-Prefix`` came), and then the request's own scheme and ``Host``.

Header values are untrusted: a value that is not a plain scheme, host[:port], port or path is
ignored rather than copied into a URL.

Kong forwards ``/<gwName>/rest`` to ``<registered URI> + /rest``: the stripped prefix stands
for the *registered* path (``/kubeedge_devices/v1`` for the node service, ``/iots/v1`` for the
MEC 033 service, ``…/devices/{ns}/{name}`` in per-device mode), not for the root. ``links()``
recognises a gateway name (``<serName><20 hex>``, reference edgegallery-mep.md §10) and maps
paths under that registered path through the gateway; a link outside it (a subscription seen
through a per-device route) points at the adapter directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$")
_PORT = re.compile(r"^\d{1,5}$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*$")
_SCHEMES = frozenset({"http", "https"})
_GATEWAY_NAME = re.compile(r"^(?P<ser>[A-Za-z0-9][A-Za-z0-9_-]*?)[0-9a-f]{20}$")
DEVICE_API = "/kubeedge_devices/v1"
IOTS_API = "/iots/v1"
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _first(value: str | None) -> str | None:
    if value is None:
        return None
    head = value.split(",", 1)[0].strip()
    return head or None


def parse_forwarded(value: str) -> dict[str, str]:
    """The parameters of the first element of a ``Forwarded`` header (names lower-cased)."""
    element = _split_outside_quotes(value, ",")[0] if value else ""
    params: dict[str, str] = {}
    for pair in _split_outside_quotes(element, ";"):
        name, sep, raw = pair.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name.strip().lower(), raw)
    return params


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _scheme(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower()
    return value if value in _SCHEMES else None


def _host(value: str | None) -> str | None:
    return value if value is not None and _HOST.match(value) else None


def _prefix(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value.startswith("/"):
        value = "/" + value
    value = value.rstrip("/")
    return value if _PREFIX.match(value) and "//" not in value else None


def _with_port(scheme: str, host: str, port: str | None) -> str:
    has_port = host.rsplit("]", 1)[-1].count(":") == 1
    if port is None or has_port or port == _DEFAULT_PORTS.get(scheme):
        return host
    return f"{host}:{port}"


def base_url(request: web.Request, public_url: str | None = None) -> str:
    """The URL of this service's root as the caller sees it, without a trailing slash.

    Append an API path (``/kubeedge_devices/v1/...``) to get an absolute link.
    """
    headers = request.headers
    forwarded = parse_forwarded(headers.get("Forwarded", ""))
    scheme = _scheme(forwarded.get("proto")) or _scheme(_first(headers.get("X-Forwarded-Proto")))
    host = _host(forwarded.get("host")) or _host(_first(headers.get("X-Forwarded-Host")))
    port_header = _first(headers.get("X-Forwarded-Port"))
    port = port_header if port_header is not None and _PORT.match(port_header) else None
    prefix = _prefix(_first(headers.get("X-Forwarded-Prefix")))

    if host is None:
        port = None
    if host is None and public_url:
        configured = urlsplit(public_url)
        if configured.scheme in _SCHEMES and configured.netloc:
            scheme = scheme or configured.scheme
            host = configured.netloc
            if prefix is None:
                prefix = _prefix(configured.path) or ""
    if host is None:
        host = _host(request.host) or "localhost"
    scheme = scheme or request.scheme
    return f"{scheme}://{_with_port(scheme, host, port)}{prefix or ''}"


def websocket_url(http_url: str) -> str:
    """``ws://`` / ``wss://`` for an ``http://`` / ``https://`` URL."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


@dataclass(frozen=True, slots=True)
class Links:
    """Absolute URLs for paths of this service, as the caller of one request sees them."""

    base: str
    """Where the caller reached ``root``."""
    root: str = ""
    """The path ``base`` stands for (a gateway's registered path); ``""`` = the service root."""
    direct: str = ""
    """The service root without the gateway, for paths outside ``root``."""

    def url(self, path: str) -> str:
        if not self.root:
            return self.base + path
        if path == self.root or path.startswith(self.root + "/"):
            return self.base + path[len(self.root) :]
        return (self.direct or self.base) + path


def _registered_path(ser_name: str, path: str) -> str | None:
    """The path a gateway route of this service name forwards to, if ``path`` lies under it."""
    segments = path.split("/")
    if ser_name.startswith("kubeedge-devices-"):
        root = DEVICE_API
    elif ser_name.startswith("iots-"):
        root = IOTS_API
    elif ser_name.startswith(("kubeedge-device-", "kubeedge-model-")) and len(segments) >= 6:
        root = "/".join(segments[:6])
    else:
        return None
    return root if path == root or path.startswith(root + "/") else None


def links(request: web.Request, public_url: str | None = None) -> Links:
    """How to link to this service's paths in the answer to ``request``."""
    base = base_url(request, public_url)
    prefix = _prefix(_first(request.headers.get("X-Forwarded-Prefix")))
    if prefix:
        match = _GATEWAY_NAME.match(prefix.rsplit("/", 1)[-1])
        root = _registered_path(match.group("ser"), request.path) if match else None
        if root is not None:
            direct = public_url.rstrip("/") if public_url else f"{request.scheme}://{request.host}"
            return Links(base, root, direct)
    return Links(base)


LinkBuilder = Callable[[str], str]
