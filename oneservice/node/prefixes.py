"""Who is where in one network (pure): destination address -> member, and who may send from
a source address. Looked up once per packet (or per super-packet), so on packed bytes."""

from __future__ import annotations

import ipaddress

from ..network.config import NetworkConfig


class PrefixTable:
    """Routing for one network: destination address -> peer (members' own addresses first,
    then the routes via gateways, most specific first)."""

    def __init__(self, config: NetworkConfig, own_address: str,
                 in_use: dict[int, str] | None = None) -> None:  # fmt: skip
        """``in_use``: the one home of which gateway each default goes through now (packed
        address length -> gateway), kept by the peer registry across rebuilds of the table; a
        gateway that is no longer one of this config's is replaced by the most preferred."""
        self.config = config
        holders = config.holders()
        self.by_destination: dict[bytes, str] = {
            ip.packed: address for ip, address in holders.items() if address != own_address
        }
        # Only the packets the kernel routed into the tap reach these (the route planner
        # decides which routes exist), so every gateway route of the config can be here.
        self.gateways = sorted(
            ((route.target, holders[route.via]) for route in config.routes
             if route.via in holders and holders[route.via] != own_address),
            key=lambda entry: -entry[0].prefixlen,
        )  # fmt: skip
        # The full tunnel sends everything here: default routes are found by the packed
        # address's length alone (4 or 16 bytes), no per-packet address object.
        self._specific = [(prefix(t), g) for t, g in self.gateways if t.prefixlen > 0]
        # Packed address length -> the default's gateways, most preferred first; the one in
        # use (routing/planner.py chooses it: use_gateway) alone carries and may send
        # everything that no more specific route covers.
        self.default_gateways: dict[int, list[str]] = {}
        for route in sorted(config.routes, key=lambda r: r.metric):
            if route.target.prefixlen == 0 and route.via in holders:
                length = 4 if route.target.version == 4 else 16
                self.default_gateways.setdefault(length, []).append(holders[route.via])
        self._in_use = {} if in_use is None else in_use
        for length in (4, 16):
            gateways = self.default_gateways.get(length, ())
            if not gateways:
                self._in_use.pop(length, None)
            elif self._in_use.get(length) not in gateways:
                self._in_use[length] = gateways[0]
        # Who may send from a source address (WireGuard's rule, longest prefix wins): a
        # member's own address is that member's alone; else the most specific route covering
        # it names its gateway; the network's own subnets belong to their members only, so
        # a gateway of a wider route cannot speak for an address in them.
        self.member_sources: dict[bytes, str] = {ip.packed: a for ip, a in holders.items()}
        owners: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = [
            (route.target, holders[route.via]) for route in config.routes
            if route.via in holders and route.target.prefixlen > 0
        ]  # fmt: skip
        owners += [(subnet, "") for subnet in config.subnets()]
        owners += [(route.target, "") for route in config.routes if route.via is None]
        self.routers = frozenset(
            [*(owner for _, owner in owners if owner),
             *(g for gateways in self.default_gateways.values() for g in gateways)]
        )  # fmt: skip
        self.source_owners = [(prefix(target), owner) for target, owner in
                              sorted(owners, key=lambda entry: -entry[0].prefixlen)]  # fmt: skip

    def gateway_for(self, destination: bytes) -> str | None:
        if self._specific:
            gateway = first_match(destination, self._specific)
            if gateway is not None:
                return gateway
        return self._in_use.get(len(destination))

    def source_owner(self, source: bytes) -> str | None:
        """The member that may send from this packed address (None: nobody may)."""
        member = self.member_sources.get(source)
        if member is not None:
            return member
        owner = first_match(source, self.source_owners)
        if owner is None:  # no route covers it but a default: the gateway in use
            return self._in_use.get(len(source))
        return owner or None  # "": the network's own subnets, where only members may send

    def use_gateway(self, family: int, gateway: str) -> None:
        """The default route of this family goes through ``gateway`` (one of its gateways)."""
        length = 4 if family == 4 else 16
        if gateway in self.default_gateways.get(length, ()):
            self._in_use[length] = gateway


# A network as integers: (packed address length: 4 or 16, network address, mask). Matching a
# packed address against it costs one int.from_bytes, not an ipaddress object per packet.
Prefix = tuple[int, int, int]


def prefix(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Prefix:
    return (4 if network.version == 4 else 16, int(network.network_address), int(network.netmask))


def first_match(packed: bytes, entries: list[tuple[Prefix, str]]) -> str | None:
    """The value of the first entry whose network holds the packed address."""
    size, value = len(packed), int.from_bytes(packed, "big")
    for (length, network, mask), found in entries:
        if length == size and value & mask == network:
            return found
    return None
