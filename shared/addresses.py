"""Which IP addresses outgoing webhooks may reach: public ones, and explicitly allowed networks.

Pure address policy, shared by casestore (it refuses an automation whose URL is an internal IP
literal when it is saved) and the dispatcher (it checks every address it connects to).
"""

import errno
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Set by ingest on the calls it forwards to casestore: the address of the webhook's client.
CLIENT_HEADER = "X-Casewire-Client"
# Set by a caller of the admin API that acts for someone (the CLI, ingest forwarding a webhook
# user's login): the audit log notes it beside the token's owner.
VIA_HEADER = "X-Casewire-Via"
# The standard library leaves CGNAT out of is_private (it is "shared", not private).
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Well-known NAT64 prefix: the IPv4 address inside is what a DNS64 network really reaches.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class TargetRefused(OSError):
    """The target resolves to an address outgoing webhooks may not reach."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host, self.address, self.reason = host, address, reason
        where = address if host == address else f"{host} ({address})"
        # An errno and strerror, so aiohttp's ClientConnectorError can show the message.
        super().__init__(errno.EACCES, f"target refused: {where} is {reason}; outgoing "
                                       "webhooks only reach public addresses")

    def __str__(self) -> str:
        return str(self.strerror)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really leads to (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def not_public(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = not_public(inner)
            return f"an IPv6 form of {inner}, which is {why}" if why else None
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata lives there)"),
        # fec0::/10 is deprecated but still routed inside some networks, and Python 3.11 calls
        # it global.
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (ip in CGNAT, "shared address space (CGNAT)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    return next((reason for failed, reason in checks if failed), None)


def parse_address(text: str) -> IPAddress | None:
    """An IP address (brackets and IPv6 zone allowed), or None for a host name."""
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


class AddressPolicy:
    """Public addresses pass; others only inside an explicitly allowed network."""

    def __init__(self, allow_networks: Iterable[str]) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in allow_networks)

    def _allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                candidates.append(inner)
        # Membership ignores an IPv6 zone (%eth0); a version mismatch is simply False.
        return any(c in net for c in candidates for net in self.allowed)

    def check(self, host: str, address: str) -> None:
        """Raise TargetRefused unless connecting to `address` (for `host`) is allowed."""
        ip = parse_address(address)
        if ip is None:
            raise TargetRefused(host, address, "not an IP address")
        if self._allowed(ip):
            return
        reason = not_public(ip)
        if reason is not None:
            raise TargetRefused(host, address, reason)

    def check_literal(self, host: str) -> None:
        """Check a URL host now if it is an IP literal (those are never resolved)."""
        # "127.0.0.1." is still the loopback address to a resolver.
        address = host.removesuffix(".")
        if parse_address(address) is not None:
            self.check(host, address)
