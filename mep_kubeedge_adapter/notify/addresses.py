"""Where callbacks may point: the allow and deny networks, and never the adapter itself.

A ``callbackReference`` makes the adapter send requests on a subscriber's behalf,
so it is checked twice: when the subscription is created (every address the host
resolves to must be allowed, else the request is refused with INVALID), and
again whenever the delivery client resolves the host (a name that later resolves
elsewhere is not followed there). Link-local networks (cloud metadata services)
are denied by default; the adapter's own listener always is, so a subscriber
cannot make it call its own API.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from mep_kubeedge_adapter.domain import AdapterError, ErrorKind

__all__ = ["AddressPolicy", "IpAddress", "OwnAddresses", "parse_address"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
OwnAddresses = Callable[[], Iterable[tuple[str, int]]]

RESOLVE_TIMEOUT = 5.0


def parse_address(text: str) -> IpAddress | None:
    """An IP address (IPv4-mapped IPv6 unwrapped, zone id dropped), or None if not one."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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
        self._local_addresses = local_addresses or _host_addresses
        self._local_cache: frozenset[IpAddress] | None = None

    async def prepare(self) -> None:
        """Learn this host's addresses once, off the event loop (name resolution may block)."""
        if self._local_cache is None:
            found = await asyncio.get_running_loop().run_in_executor(
                None, lambda: list(self._local_addresses())
            )
            self._local_cache = frozenset(a for a in map(parse_address, found) if a is not None)

    def set_own_addresses(self, addresses: OwnAddresses) -> None:
        """The listener's (host, port) pairs; read on every check, so a late bind is seen."""
        self._own = addresses

    def refusal(self, address: str, port: int) -> str | None:
        """Why the adapter must not connect to ``address``:``port``, or None if it may."""
        ip = parse_address(address)
        if ip is None:
            return f"{address} is not an IP address"
        if any(ip in net for net in self._deny if net.version == ip.version):
            return f"{ip} is in a denied network"
        if not any(ip in net for net in self._allow if net.version == ip.version):
            return f"{ip} is outside the allowed callback networks"
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

    async def check_url(self, url: str) -> None:
        """Refuse (``AdapterError(INVALID)``) a callback URL the adapter must not call."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise AdapterError(ErrorKind.INVALID, f"callbackReference: {exc}") from exc
        if parts.scheme not in ("http", "https"):
            raise AdapterError(ErrorKind.INVALID, "callbackReference must be an http or https URL")
        host = parts.hostname
        if not host:
            raise AdapterError(ErrorKind.INVALID, "callbackReference has no host")
        port = port or (443 if parts.scheme == "https" else 80)
        await self.prepare()
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise AdapterError(
                ErrorKind.INVALID, f"callbackReference host {host!r} does not resolve"
            ) from exc
        addresses = {str(info[4][0]) for info in infos}
        if not addresses:
            raise AdapterError(
                ErrorKind.INVALID, f"callbackReference host {host!r} does not resolve"
            )
        for address in sorted(addresses):
            reason = self.refusal(address, port)
            if reason is not None:
                raise AdapterError(ErrorKind.INVALID, f"callbackReference refused: {reason}")

    def _locals(self) -> frozenset[IpAddress]:
        """This host's addresses once ``prepare()`` ran; loopback is covered separately."""
        return self._local_cache or frozenset()


def _host_addresses() -> list[str]:
    """This host's own addresses, as its name resolves (empty if it does not)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]
