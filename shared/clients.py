"""Who is asking: the client's address and scheme, read through trusted proxies only.

Behind a proxy (the documented Ingress) every connection comes from the proxy, so a
throttle keyed on the connecting address throttles everyone at once. The proxy names the
client in `X-Forwarded-For` (appending to what the client sent, which may be anything) and the
scheme in `X-Forwarded-Proto`. Those headers are believed only on a connection from an address
in CASEWIRE_TRUSTED_PROXIES; anyone else could write them.
"""

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from shared.addresses import IPAddress, IPNetwork, parse_address
from shared.inputs import header

UNKNOWN = "unknown"


class TrustedProxies:
    """The networks whose connections may say, in X-Forwarded-*, who the client is."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in networks)

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def _peer(self, request: web.BaseRequest) -> IPAddress | None:
        return parse_address(request.remote or "")

    def client(self, request: web.BaseRequest) -> str:
        """The client's address: the peer's, unless the peer is a trusted proxy; then the
        nearest address in X-Forwarded-For that is not a trusted proxy (read from the right,
        since every proxy appends, and only the entries our own proxies wrote are sure)."""
        peer = self._peer(request)
        if not self.trusts(peer):
            return request.remote or UNKNOWN
        hops = [h.strip() for value in request.headers.getall("X-Forwarded-For", [])
                for h in (value if value.isascii() else "").split(",")]
        nearest = str(peer)
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                break  # not written by a proxy of ours: what lies beyond is the client's word
            nearest = str(address)
            if not self.trusts(address):
                break
        return nearest

    def secure(self, request: web.BaseRequest) -> bool:
        """Whether the client reached us over HTTPS: directly, or as a trusted proxy says
        (any hop saying so: a false "https" only makes the client's own cookie stricter)."""
        if request.secure:
            return True
        forwarded = header(request, "X-Forwarded-Proto") or ""
        return self.trusts(self._peer(request)) and "https" in (
            scheme.strip().lower() for scheme in forwarded.split(","))


PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
