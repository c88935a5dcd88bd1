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
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from aiohttp import web

_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~-]+)(?::\d{1,5})?$")
_PORT = re.compile(r"^\d{1,5}$")
_PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*$")
_SCHEMES = frozenset({"http", "https"})
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
