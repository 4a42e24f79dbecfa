"""The gateway side of a full tunnel, and what any node forwards between its networks: the
nftables table of ours that does both (pure; routing/exit_linux.py applies it).

A node is asked to be an exit when a network routes a default route (0.0.0.0/0 or ::/0) via
one of its addresses. It serves only with the local opt-in `settings.allowExitNode`: a
controller alone cannot turn a machine into someone's internet uplink. What it forwards for a
network goes out of its physical uplinks only: never into another virtual network (ours or
another VPN's, or a container bridge), nor to hosts of its own LAN unless
`settings.allowExitNodeLan` says so. And no node forwards from one of its networks into
another, exit or not. What is refused is counted (named counters, FORWARD_COUNTERS).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import field

from ..records import record
from .nft import delete_table, match, named_counters, replace_table
from .nft import prefixes as prefix_set
from .planner import FAMILY_NAMES, NetworkRouting

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TABLE_NAME = "oneservice"
# Forwarded packets refused, by why: the table's named counters, as the API names them.
FORWARD_COUNTERS = {
    "between_networks": "betweenNetworks",  # from one of our networks into another
    "not_to_uplink": "notToUplink",  # an exit's traffic towards anything but an uplink
    "to_lan": "toLan",  # an exit's traffic to a host of the exit's own LAN
}


@record
class ExitPlan:
    sources: tuple[IPNetwork, ...] = ()  # network subnets whose traffic we forward and masquerade
    families: frozenset[int] = frozenset()  # 4, 6: forwarding needed
    status: dict[str, str] = field(default_factory=dict)  # network id -> what we do and why
    devices: tuple[str, ...] = ()  # every network's device: none forwards into another
    exit_devices: tuple[str, ...] = ()  # the devices of the networks we are the exit of
    lan: tuple[IPNetwork, ...] = ()  # where an exit's traffic may not go (its own LAN)
    networks: tuple[str, ...] = ()  # the ids of the networks we are the exit node of

    @property
    def active(self) -> bool:
        """Serving as an exit node (forwarding turned on)."""
        return bool(self.sources)

    @property
    def needs_table(self) -> bool:
        return self.active or len(self.devices) > 1


def plan_exit_node(
    networks: Sequence[NetworkRouting], own_address: str, allowed: bool,
    lan: Iterable[IPNetwork] = (), lan_allowed: bool = False,
) -> ExitPlan:  # fmt: skip
    sources: list[IPNetwork] = []
    families: set[int] = set()
    status: dict[str, str] = {}
    exit_devices: list[str] = []
    served: list[str] = []
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
        exit_devices.append(network.device)
        served.append(config.id)
        where = "the internet and this node's LAN" if lan_allowed else (
            "the internet only, not this node's LAN (settings.allowExitNodeLan)")
        status[config.id] = (f"serving as {names} exit node for {', '.join(map(str, subnets))},"
                             f" through the physical uplinks to {where}")  # fmt: skip
    devices = tuple(sorted({n.device for n in networks}))
    blocked_lan = () if lan_allowed or not sources else tuple(lan)
    return ExitPlan(tuple(sources), frozenset(families), status, devices,
                    tuple(sorted(exit_devices)), blocked_lan, tuple(sorted(served)))  # fmt: skip


def nft_ruleset(plan: ExitPlan, uplinks: Iterable[str]) -> dict:
    """The whole table, replaced in one transaction (`nft -j -f -`): no forwarding from one
    of our networks into another; as an exit, the networks' traffic only out of the physical
    interfaces (and not to the LAN), masqueraded there, and the TCP MSS of the connections it
    forwards clamped to the route's MTU."""
    commands: list[dict] = [
        *replace_table(TABLE_NAME),
        {"add": {"chain": {**_in_table(), "name": "postrouting", "type": "nat",
                           "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        {"add": {"chain": {**_in_table(), "name": "forward", "type": "filter",
                           "hook": "forward", "prio": -150, "policy": "accept"}}},
        *({"add": {"counter": {**_in_table(), "name": name}}} for name in FORWARD_COUNTERS),
    ]  # fmt: skip
    devices = sorted(set(uplinks))
    for device in plan.devices:
        others = [d for d in plan.devices if d != device]
        if others:
            commands.append(_drop("between_networks", [
                match({"meta": {"key": "iifname"}}, device),
                match({"meta": {"key": "oifname"}}, {"set": others}),
            ]))  # fmt: skip
    if plan.exit_devices:
        from_exit = match({"meta": {"key": "iifname"}}, {"set": list(plan.exit_devices)})
        commands.append(_drop("not_to_uplink", [from_exit, {"match": {
            "op": "!=", "left": {"meta": {"key": "oifname"}}, "right": {"set": devices}}}]
            if devices else [from_exit]))  # fmt: skip
        for version, protocol in ((4, "ip"), (6, "ip6")):
            lan = [n for n in plan.lan if n.version == version]
            if lan:
                commands.append(_drop("to_lan", [from_exit, match(
                    {"payload": {"protocol": protocol, "field": "daddr"}}, prefix_set(lan))]))
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


def counters_of(listed: dict) -> dict[str, int]:
    """The refusals counted, as the API names them, from `nft -j list table`'s output."""
    found = named_counters(listed)
    return {shown: found.get(name, 0) for name, shown in FORWARD_COUNTERS.items()}


def _drop(counter: str, expression: list) -> dict:
    return {"add": {"rule": {**_in_table(), "chain": "forward",
                             "expr": [*expression, {"counter": counter}, {"drop": None}]}}}


def nft_delete() -> dict:
    return delete_table(TABLE_NAME)


def _in_table() -> dict:
    return {"family": "inet", "table": TABLE_NAME}
