"""Where webhooks may go: public addresses only, unless AGENTBILLING_WEBHOOK_ALLOW_PRIVATE=1.
Checked when an endpoint is made (`check_url`) and again before every delivery (`pinned_address`)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from agentbilling.domain.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REFUSED = "webhook endpoints must be on public addresses (AGENTBILLING_WEBHOOK_ALLOW_PRIVATE=1 allows others)"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata.google.internal", "metadata")


class DestinationRefused(InvalidInput):
    """The URL's host is, or resolves to, an address that webhooks may not reach."""


def public(ip: IPAddress) -> bool:
    """Whether webhooks may reach `ip`.

    Refused: loopback, private, link-local (the cloud metadata address 169.254.169.254 among them),
    shared, multicast and reserved addresses, and IPv4 addresses embedded in IPv6 ones."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not public(embedded):
            return False
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without DNS, in any form a resolver takes (decimal, hex, octal, short)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:  # inet_aton takes the legacy IPv4 forms: 2130706433, 0x7f000001, 0177.0.0.1, 127.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int) -> list[IPAddress]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_url(url: str) -> None:
    """At creation: a literal or well-known local host is refused; a name that resolves now to a
    refused address too. A name that does not resolve yet is kept (delivery checks it again)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        raise DestinationRefused(REFUSED)
    ip = literal_address(host)
    if ip is not None:
        if not public(ip):
            raise DestinationRefused(REFUSED)
        return
    try:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError):
        return
    if any(not public(a) for a in addresses):
        raise DestinationRefused(REFUSED)


def pinned_address(url: str) -> IPAddress:
    """At delivery: the one address to connect to, checked; DestinationRefused if any is not public
    (a name with one private address among public ones is refused whole).

    The delivery connects to the address checked here, so the name cannot be rebound in between."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    ip = literal_address(host)
    addresses = [ip] if ip is not None else resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not addresses or any(not public(a) for a in addresses):
        raise DestinationRefused(REFUSED)
    return addresses[0]
