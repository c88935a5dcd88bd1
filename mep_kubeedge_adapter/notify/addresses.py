"""Where callbacks may point: the allow and deny networks, and never the adapter itself.

A ``callbackReference`` makes the adapter send requests on a subscriber's behalf, so it
is checked at every step:

* its form, when the subscription is created: an http(s) URL of RFC 3986 characters
  whose host is a canonical address (``a.b.c.d`` or a bracketed IPv6 address without a
  zone) or a host name of letters, digits, ``-`` and ``_``. Forms that other parsers read
  differently (``127.1``, ``2130706433``, ``0x7f.0.0.1``, a backslash or a second ``@``
  in the authority) are refused, so the host checked here is the host the delivery
  client connects to;
* its addresses, when created: every address the host resolves to must be allowed, else
  INVALID; when loaded from the store at start (allow and deny lists may have changed
  since), its form and an address literal are checked again, without name lookups (a
  thousand stored names must not hold the start up for a slow DNS); a refused one is
  removed and logged;
* again at every connection: the delivery client's resolver drops refused addresses (a
  name that later resolves elsewhere is not followed there), and address literals, which
  aiohttp connects to without resolving, are checked by the client itself.

Link-local networks (cloud metadata services) are denied by default. The adapter's own
listener is always refused: its address, and when it is bound to a wildcard (``0.0.0.0``,
``::``) every address of every interface of this host and the whole loopback range, so a
subscriber cannot make the adapter call its own API.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from yarl import URL

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = [
    "AddressPolicy",
    "CallbackTarget",
    "IpAddress",
    "OwnAddresses",
    "host_addresses",
    "parse_address",
    "parse_callback",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
OwnAddresses = Callable[[], Iterable[tuple[str, int]]]

RESOLVE_TIMEOUT = 5.0
LOCAL_ADDRESSES_TTL = 60.0
"""Seconds this host's interface addresses are cached (an interface may get a new one)."""

_URL_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


class CallbackTarget:
    """A callback URL's host (an address literal, or a name) and port, as the client sees it."""

    __slots__ = ("address", "host", "port")

    def __init__(self, host: str, port: int, address: IpAddress | None) -> None:
        self.host = host
        self.port = port
        self.address = address
        """Set when the host is an address literal (the client connects without resolving)."""


def parse_callback(url: str) -> CallbackTarget:
    """The host and port of a callback URL of an acceptable form; AdapterError INVALID if not.

    Parsed with yarl, the parser of the delivery client, so the host checked is the host
    that will be connected to.
    """

    def invalid(reason: str) -> AdapterError:
        return AdapterError(ErrorKind.INVALID, f"callbackReference {reason}")

    if not _URL_CHARACTERS.match(url):
        raise invalid(
            "may only hold the characters of RFC 3986 (percent-encode others; no spaces, "
            "backslashes or control characters)"
        )
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError as exc:
        raise invalid(f"is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise invalid("must be an http or https URL")
    host = parsed.raw_host
    if not host:
        raise invalid("has no host")
    authority = url.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if authority.count("@") > 1:
        raise invalid("has more than one '@' in its authority")
    if port is None:
        raise invalid("has no port")
    address = _address_literal(host)
    if address is None:
        name = host[:-1] if host.endswith(".") else host
        labels = name.split(".")
        if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise invalid(f"host {host!r} is neither an address nor a host name")
        if labels[-1].isdigit() or _inet_aton_accepts(name):
            raise invalid(
                f"host {host!r} is an IPv4 address in a shorthand form; write it as a.b.c.d"
            )
    return CallbackTarget(host, port, address)


def _address_literal(host: str) -> IpAddress | None:
    """The address of a canonical literal (``a.b.c.d``, an IPv6 address), None for a name."""
    if ":" in host:
        if "%" in host:
            raise AdapterError(
                ErrorKind.INVALID, "callbackReference must not carry an IPv6 zone id"
            )
        return parse_address(host)
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return address if str(address) == host else None


def _inet_aton_accepts(name: str) -> bool:
    """True for the legacy IPv4 forms the C resolver understands (``127.1``, ``0x7f.1``)."""
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def parse_address(text: str) -> IpAddress | None:
    """An IP address (IPv4-mapped IPv6 unwrapped, zone id dropped), or None if not one."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


NETWORK_REFUSALS_KEPT = 4096
"""Addresses whose allow/deny answer is kept; beyond, others are checked every time."""


class AddressPolicy:
    """Decides whether the adapter may connect to an address and port on a subscriber's behalf."""

    def __init__(
        self,
        allow: Sequence[str],
        deny: Sequence[str],
        *,
        local_addresses: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._allow: list[IpNetwork] = [ipaddress.ip_network(n, strict=False) for n in allow]
        self._deny: list[IpNetwork] = [ipaddress.ip_network(n, strict=False) for n in deny]
        self._own: OwnAddresses = lambda: ()
        self._local_addresses = local_addresses or host_addresses
        self._local_cache: frozenset[IpAddress] | None = None
        self._local_learned = 0.0
        self._learning = asyncio.Lock()
        self._network_refusals: dict[IpAddress, str | None] = {}

    async def prepare(self) -> None:
        """Learn this host's addresses off the event loop (name resolution may block);
        again after ``LOCAL_ADDRESSES_TTL`` seconds. Every connection calls this, so one
        lookup runs at a time and the callers that arrive meanwhile share its answer."""
        if self._locals_fresh():
            return
        async with self._learning:
            if self._locals_fresh():
                return
            now = time.monotonic()
            found = await asyncio.get_running_loop().run_in_executor(
                None, lambda: list(self._local_addresses())
            )
            self._local_cache = frozenset(a for a in map(parse_address, found) if a is not None)
            self._local_learned = now

    def _locals_fresh(self) -> bool:
        return (
            self._local_cache is not None
            and time.monotonic() - self._local_learned <= LOCAL_ADDRESSES_TTL
        )

    def set_own_addresses(self, addresses: OwnAddresses) -> None:
        """The listener's (host, port) pairs; read on every check, so a late bind is seen."""
        self._own = addresses

    def refusal(self, address: str, port: int) -> str | None:
        """Why the adapter must not connect to ``address``:``port``, or None if it may."""
        ip = parse_address(address)
        if ip is None:
            return f"{address} is not an IP address"
        return self.refusal_of(ip, port)

    def refusal_of(self, ip: IpAddress, port: int) -> str | None:
        """``refusal`` for a parsed address. The allow and deny networks are fixed, so their
        answer is kept per address (a bounded table); the listener's own addresses are
        read on every check."""
        try:
            reason = self._network_refusals[ip]
        except KeyError:
            reason = self._network_refusal(ip)
            if len(self._network_refusals) < NETWORK_REFUSALS_KEPT:
                self._network_refusals[ip] = reason
        if reason is not None:
            return reason
        for own_host, own_port in self._own():
            if own_port != port:
                continue
            own_ip = parse_address(own_host)
            if (
                ip.is_loopback
                or ip.is_unspecified
                or ip == own_ip
                or ((own_ip is None or own_ip.is_unspecified) and ip in self._locals())
            ):
                return f"{ip}:{port} is the adapter's own listener"
        return None

    def _network_refusal(self, ip: IpAddress) -> str | None:
        if any(ip in net for net in self._deny if net.version == ip.version):
            return f"{ip} is in a denied network"
        if not any(ip in net for net in self._allow if net.version == ip.version):
            return f"{ip} is outside the allowed callback networks"
        return None

    async def check_url(self, url: str, *, resolve: bool = True) -> None:
        """Refuse (``AdapterError(INVALID)``) a callback URL the adapter must not call.

        With ``resolve`` off a host name is not looked up (a stored subscription at start;
        every connection checks the addresses the name has then).
        """
        target = parse_callback(url)
        await self.prepare()
        if target.address is not None:
            addresses = {str(target.address)}
        elif resolve:
            addresses = await self._resolve(target)
        else:
            return
        for address in sorted(addresses):
            reason = self.refusal(address, target.port)
            if reason is not None:
                raise AdapterError(ErrorKind.INVALID, f"callbackReference refused: {reason}")

    async def _resolve(self, target: CallbackTarget) -> set[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise AdapterError(
                ErrorKind.INVALID, f"callbackReference host {target.host!r} does not resolve"
            ) from exc
        addresses = {str(info[4][0]) for info in infos}
        if not addresses:
            raise AdapterError(
                ErrorKind.INVALID, f"callbackReference host {target.host!r} does not resolve"
            )
        return addresses

    def _locals(self) -> frozenset[IpAddress]:
        """This host's addresses once ``prepare()`` ran; loopback is covered separately."""
        return self._local_cache or frozenset()


def host_addresses() -> list[str]:
    """Every address of this host: each interface's (Linux ``/proc``), and what its name
    resolves to. Loopback is refused separately, as a whole range."""
    found = _interface_addresses()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        infos = []
    found.extend(str(info[4][0]) for info in infos)
    return found


def _interface_addresses() -> list[str]:
    """The local addresses of every interface, from the kernel's routing tables."""
    found: list[str] = []
    try:
        trie = Path("/proc/net/fib_trie").read_text(encoding="ascii")
    except OSError:
        trie = ""
    previous = ""
    for line in trie.splitlines():
        text = line.strip(" |-+`")
        if "/32 host LOCAL" in line:
            found.append(previous)
        elif text and text[0].isdigit() and " " not in text:
            previous = text
    try:
        inet6 = Path("/proc/net/if_inet6").read_text(encoding="ascii")
    except OSError:
        inet6 = ""
    for line in inet6.splitlines():
        digits = line.split(" ", 1)[0]
        if len(digits) == 32:
            found.append(str(ipaddress.IPv6Address(int(digits, 16))))
    return found
