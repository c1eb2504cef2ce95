"""SSRF guard for outgoing webhooks: only public addresses, unless an allowed network says so.

Administrators type the target URL, so without this an automation could make the dispatcher
call the cloud metadata service, the database or anything else on its own network. The check
runs on the addresses actually connected to: the resolver hands aiohttp only checked addresses
(so a second, rebinding DNS answer is never used), and the socket factory checks every address
again right before `connect()`, which also covers IP literals that aiohttp never resolves.
Which addresses pass is `shared.addresses` (casestore checks IP literals with it on save).
"""

import socket

from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from shared import addresses
from shared.addresses import TargetRefused, not_public, parse_address

__all__ = ["AddressPolicy", "GuardedResolver", "TargetRefused", "not_public", "parse_address"]


class AddressPolicy(addresses.AddressPolicy):
    """The shared policy, plus the socket factory aiohttp calls for every connection."""

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """The last check, on the exact address about to be connected to."""
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        self.check(address, address)
        return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses if any address is not allowed.

    Refusing on any (not only on all) bad address: a name that mixes public and internal
    addresses is exactly what a rebinding or split-horizon attack looks like.
    """

    def __init__(self, policy: addresses.AddressPolicy,
                 inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.policy.check(host, result["host"])
        return results

    async def close(self) -> None:
        await self.inner.close()
