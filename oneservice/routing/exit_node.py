"""The gateway side of a full tunnel: whether this node serves as an exit, and the nftables
ruleset that does it (pure; routing/exit_linux.py applies it).

A node is asked to be an exit when a network routes a default route (0.0.0.0/0 or ::/0) via
one of its addresses. It serves only with the local opt-in `settings.allowExitNode`: a
controller alone cannot turn a machine into someone's internet uplink.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .nft import delete_table, match, replace_table
from .nft import prefixes as prefix_set
from .planner import FAMILY_NAMES, NetworkRouting

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TABLE_NAME = "oneservice"


@dataclass(frozen=True)
class ExitPlan:
    sources: tuple[IPNetwork, ...] = ()  # network subnets whose traffic we forward and masquerade
    families: frozenset[int] = frozenset()  # 4, 6: forwarding needed
    status: dict[str, str] = field(default_factory=dict)  # network id -> what we do and why

    @property
    def active(self) -> bool:
        return bool(self.sources)


def plan_exit_node(networks: Sequence[NetworkRouting], own_address: str, allowed: bool) -> ExitPlan:
    sources: list[IPNetwork] = []
    families: set[int] = set()
    status: dict[str, str] = {}
    for network in networks:
        config = network.config
        own = config.member(own_address)
        if own is None:
            continue
        ours = {a.ip for a in own.addresses}
        asked = sorted({r.target.version for r in config.routes
                        if r.via in ours and r.target.prefixlen == 0})  # fmt: skip
        if not asked:
            continue
        names = " and ".join(FAMILY_NAMES[f] for f in asked)
        if not allowed:
            status[config.id] = (
                f"refused: the network names this node as {names} gateway, but "
                "settings.allowExitNode is not true in local.conf"
            )
            continue
        subnets = [s for s in config.subnets() if s.version in asked]
        sources.extend(s for s in subnets if s not in sources)
        families.update(asked)
        status[config.id] = f"serving as {names} exit node for {', '.join(map(str, subnets))}"
    return ExitPlan(tuple(sources), frozenset(families), status)


def nft_ruleset(plan: ExitPlan, uplinks: Iterable[str]) -> dict:
    """The whole table, replaced in one transaction (`nft -j -f -`): masquerade traffic from
    the networks' subnets leaving through the physical interfaces, and clamp the TCP MSS of
    the connections it forwards to the route's MTU."""
    commands: list[dict] = [
        *replace_table(TABLE_NAME),
        {"add": {"chain": {**_in_table(), "name": "postrouting", "type": "nat",
                           "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        {"add": {"chain": {**_in_table(), "name": "forward", "type": "filter",
                           "hook": "forward", "prio": -150, "policy": "accept"}}},
    ]  # fmt: skip
    devices = sorted(set(uplinks))
    for version, protocol in ((4, "ip"), (6, "ip6")):
        sources = [n for n in plan.sources if n.version == version]
        if not sources or not devices:
            continue
        expression = [
            match({"payload": {"protocol": protocol, "field": "saddr"}}, prefix_set(sources)),
            match({"meta": {"key": "oifname"}}, {"set": devices}),
            {"masquerade": None},
        ]
        commands.append({"add": {"rule": {**_in_table(), "chain": "postrouting",
                                          "expr": expression}}})  # fmt: skip
        # PMTU black holes: connections set up through us announce at most what the route
        # they take next carries (the tunnel one way, the uplink's path the other), so a
        # smaller MTU behind either side never depends on ICMP getting back.
        for direction in ("saddr", "daddr"):
            commands.append({"add": {"rule": {**_in_table(), "chain": "forward", "expr": [
                match({"payload": {"protocol": protocol, "field": direction}}, prefix_set(sources)),
                {"match": {"op": "in", "left": {"payload": {"protocol": "tcp", "field": "flags"}},
                           "right": "syn"}},
                {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}},
                            "value": {"rt": {"key": "mtu"}}}},
            ]}}})  # fmt: skip
    return {"nftables": commands}


def nft_delete() -> dict:
    return delete_table(TABLE_NAME)


def _in_table() -> dict:
    return {"family": "inet", "table": TABLE_NAME}
