"""Outbound URL safety (SSRF defence) for webhooks and any URL genq fetches for a user.

A URL must be http(s), carry no userinfo, and its host must resolve only to global
addresses. IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64)
are unwrapped and the embedded address checked too. The caller then connects to the
checked address itself (`pinned_request`), so a second DNS answer cannot differ.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from genq.errors import InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeURL(InvalidInput):
    """This URL is not allowed: it must be a public http(s) address."""

    code = "unsafe_url"
    title = "Unsafe URL"


def embedded(addr: IP) -> list[IP]:
    """The address and every IPv4 address it carries inside."""
    found: list[IP] = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            found.append(addr.ipv4_mapped)
        if addr.sixtofour:
            found.append(addr.sixtofour)
        if addr.teredo:
            found.extend(addr.teredo)
        if addr in _NAT64 or addr in _NAT64_LOCAL:
            found.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return found


def is_public(addr: IP) -> bool:
    return all(a.is_global and not a.is_multicast for a in embedded(addr))


def literal_ip(host: str) -> IP | None:
    """The address a host names literally, in any form the C resolver accepts
    (dotted, decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IP, ...]


def _parse(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("URLs with user information are not allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURL("the URL has no host")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def check_plainly(url: str, *, allow_private: bool) -> None:
    """At submission: refuse URLs whose host is plainly not public (no DNS lookup)."""
    _scheme, host, _port = _parse(url)
    if allow_private:
        return
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise UnsafeURL(f"{host} is not a public address")
    ip = literal_ip(host)
    if ip is not None and not is_public(ip):
        raise UnsafeURL(f"{ip} is not a public address")


async def resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve and check every address; raises UnsafeURL."""
    scheme, host, port = _parse(url)
    ip = literal_ip(host)
    if ip is not None:
        addresses: tuple[IP, ...] = (ip,)
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise UnsafeURL(f"cannot resolve {host}: {exc}") from exc
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
    if not addresses:
        raise UnsafeURL(f"{host} has no address")
    if not allow_private:
        bad = [a for a in addresses if not is_public(a)]
        if bad:
            raise UnsafeURL(f"{host} resolves to a non-public address ({bad[0]})")
    return Target(url, scheme, host, port, addresses)


def pinned(target: Target) -> tuple[str, dict[str, str], dict[str, str]]:
    """(URL with the checked IP as host, headers, httpx extensions) to connect to exactly
    the address that was checked; TLS still verifies the certificate for the real host."""
    parts = urlsplit(target.url)
    ip = target.addresses[0]
    host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) else str(ip)
    netloc = f"{host}:{target.port}"
    url = parts._replace(netloc=netloc).geturl()
    default = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return url, {"Host": host_header}, extensions
