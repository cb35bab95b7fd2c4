"""Who is asking, by address: the peer of the connection, or behind trusted proxies the
address the nearest untrusted hop connected from.

Every proxy appends the address it received the request from to `X-Forwarded-For`, so the
right end of the list is written by our own proxies and the left end by whoever sent the
request, who can put anything there. The client is therefore the right-most address that is
not one of our proxies (TRUSTED_PROXIES), and the header is read only when the connection
itself comes from one of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted_proxies
        )

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address, from the connection's peer and its X-Forwarded-For header."""
        address = peer or "unknown"
        if not self.trusted or not forwarded_for or not self._trusted(address):
            return address
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not hop:
                continue
            if not self._trusted(hop):
                return hop
            address = hop
        return address  # every hop is one of ours: the left-most of them
