"""Which routes and rules this node wants in the kernel, and why.

A pure function of the network configs, the user's flags, which members have a live
authenticated path, and this machine's own addresses and LAN subnets; the kernel applier
(routing/linux.py) only makes the kernel match what this returns. Every route in a config gets
a status with the reason it is or is not installed, for the API.

Full tunnel: a default route becomes the halves 0.0.0.0/1 + 128.0.0.0/1 (::/1 + 8000::/1) via
the gateway, more specific than the machine's own default route, which stays untouched. The
node's UDP sockets are pinned to their physical interfaces, so these routes never catch the
tunnel's own traffic. The halves are there only while the gateway has a live path, unless the
user chose fail-closed: then they stay and traffic waits in the tunnel instead of leaking. A
family the gateway offers no default for is blocked with unreachable routes (applications
fail at once and fall back to the other family) rather than leaked around the tunnel.

Per-port split (fullTunnelOnly, fullTunnelExcept): the default via the gateway goes into a
table of ours instead, and policy rules choose by protocol and destination port: first the
main table for anything more specific than a default (the LAN, managed routes), then the
ports listed (to our table for "only", to the main table's own default for "except"), and for
"except" everything else to our table. The node's sockets are pinned to their uplinks, and a
lookup bound to an uplink finds no route in our table (its default is on the tunnel's device),
so the node's own traffic is never caught.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field

from ..marks import FULL_TUNNEL_TABLE, RULE_PRIORITIES
from ..network.config import NetworkConfig, Route, forbidden_target
from ..records import record
from .flags import NetworkFlags

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAIN_TABLE = 254
LAN_RULE_PRIORITY = RULE_PRIORITIES[0]
# Per-port split: more specific routes of the main table first, then the listed ports, then
# (fullTunnelExcept) everything else into the tunnel.
SPECIFIC_RULE_PRIORITY = RULE_PRIORITIES[1]
PORT_RULE_PRIORITY = RULE_PRIORITIES[2]
SPLIT_CATCH_ALL_PRIORITY = RULE_PRIORITIES[3]

_net = ipaddress.ip_network
DEFAULT_HALVES = {
    4: (_net("0.0.0.0/1"), _net("128.0.0.0/1")),
    6: (_net("::/1"), _net("8000::/1")),
}
# fullTunnelQuarters: more specific than another VPN's halves, so ours win over them.
DEFAULT_QUARTERS = {
    family: tuple(q for half in halves for q in half.subnets(new_prefix=2))
    for family, halves in DEFAULT_HALVES.items()
}


def catch_all(family: int, quarters: bool) -> tuple[IPNetwork, ...]:
    """The routes that together stand for a default route of ``family``."""
    return (DEFAULT_QUARTERS if quarters else DEFAULT_HALVES)[family]


def catch_all_samples(family: int) -> list[str]:
    """Addresses the kernel is asked to route, to check that the full tunnel takes them: two
    in each quarter (so in each half), at its 1/8 and 1/4 marks, which keeps them clear of
    loopback, multicast and link-local space (8.0.0.0, 16.0.0.0, ... 200.0.0.0, 208.0.0.0;
    800::, 1000::, ... c800::, d000::). A route lookup sends nothing anywhere."""
    return [str(part.network_address + part.num_addresses // divisor)
            for part in DEFAULT_QUARTERS[family] for divisor in (8, 4)]  # fmt: skip


def overridden(family: int, device: str, routed: dict[str, str | None]) -> str:
    """Why the kernel does not send a family's traffic where the full tunnel wants it ("" if it
    does): ``device`` is the tunnel's (or "" for a family we block), ``routed`` the device the
    kernel chose for each sample (None: unreachable)."""
    elsewhere = {a: d for a, d in routed.items() if d != (device or None)}
    if not elsewhere:
        return ""
    address, other = next(iter(elsewhere.items()))
    what = f"via {other}" if other else "unreachable"
    return (f"{FAMILY_NAMES[family]} traffic does not take the tunnel: the kernel routes "
            f"{address} {what} (and {len(elsewhere) - 1} more of {len(routed)} samples), so a "
            "more specific route or a rule of another VPN wins; fullTunnelQuarters=1 wins over "
            "another VPN's /1 halves")  # fmt: skip
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
# Address space that is not the public internet: routes inside it need only allowManaged.
PRIVATE_SPACE = tuple(_net(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15",
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "fc00::/7", "2001:db8::/32",
))  # fmt: skip


# A route kind that answers at once: applications get "no route to host" and fall back (to
# IPv4, say) instead of waiting for a timeout. The node's own sockets are pinned to their
# uplinks, and device-bound lookups pass it by, so the tunnel's own UDP is not caught.
UNREACHABLE = "unreachable"


@record(order=True)
class KernelRoute:
    family: int  # 4 or 6
    target: str  # CIDR
    via: str | None  # None: straight onto the device
    device: str  # "" for an unreachable route
    table: int = MAIN_TABLE
    kind: str = "unicast"  # or UNREACHABLE


def blocked(family: int, target: str, table: int = MAIN_TABLE) -> KernelRoute:
    return KernelRoute(family, target, None, "", table, UNREACHABLE)


@record(order=True)
class KernelRule:
    family: int
    target: str  # "to" CIDR
    table: int
    priority: int
    protocol: int = 0  # IP protocol (6 TCP, 17 UDP); 0: any
    ports: str = ""  # destination ports, "first:last" (as the kernel reports them); "": any
    # Lookups that find a route of at most this prefix length go on to the next rule; -1: none
    suppress_prefixlength: int = -1


def default_target(family: int) -> str:
    return "0.0.0.0/0" if family == 4 else "::/0"


def split_rules(family: int, flags: NetworkFlags) -> set[KernelRule]:
    """The rules of a per-port split (none without one): see the module's docstring."""
    if not (flags.full_tunnel_only or flags.full_tunnel_except):
        return set()
    everything = default_target(family)
    rules = {KernelRule(family, everything, MAIN_TABLE, SPECIFIC_RULE_PRIORITY,
                        suppress_prefixlength=0)}  # fmt: skip
    listed_to = FULL_TUNNEL_TABLE if flags.full_tunnel_only else MAIN_TABLE
    for spec in flags.full_tunnel_only or flags.full_tunnel_except:
        rules.add(KernelRule(family, everything, listed_to, PORT_RULE_PRIORITY, spec.number,
                             f"{spec.first}:{spec.last}"))  # fmt: skip
    if flags.full_tunnel_except:
        rules.add(KernelRule(family, everything, FULL_TUNNEL_TABLE, SPLIT_CATCH_ALL_PRIORITY))
    return rules


def catches_everything(plan_rules: Iterable[KernelRule], routes: Iterable[KernelRoute],
                       family: int) -> bool:  # fmt: skip
    """Whether the family's traffic at large goes to the tunnel (or is blocked): halves or
    quarters in the main table, or rules sending every destination to our table. The reverse
    path of arriving datagrams then leads there too (strict rp_filter drops them)."""
    parts = {str(p) for quarters in (False, True) for p in catch_all(family, quarters)}
    everything = default_target(family)
    return any(r.family == family and r.target in parts and r.table == MAIN_TABLE
               for r in routes) or any(
        r.family == family and r.target == everything and r.table == FULL_TUNNEL_TABLE
        for r in plan_rules)  # fmt: skip


@record
class RouteStatus:
    network_id: str
    target: str
    via: str | None
    installed: bool
    reason: str
    # What it stands on in the kernel: if any of it is refused, it is not installed.
    needs: frozenset[KernelRoute | KernelRule] = field(default=frozenset(), compare=False)

    def document(self) -> dict:
        return {"target": self.target, "via": self.via, "installed": self.installed,
                "reason": self.reason}  # fmt: skip


@record
class Refusal:
    """What the kernel refused of a plan (None: a leftover of ours it would not delete)."""

    item: KernelRoute | KernelRule | None
    message: str


@record
class NetworkRouting:
    config: NetworkConfig
    device: str
    flags: NetworkFlags


# Full tunnel states, per network (shown in its status).
TUNNEL_OFF = "off"
TUNNEL_ON = "on"
TUNNEL_HELD = "held"  # fail-closed, gateway silent: traffic waits in the tunnel
TUNNEL_WITHDRAWN = "withdrawn"  # gateway silent: the machine uses its own connection
# A network's state when its families differ: the strongest wins.
_TUNNEL_STRENGTH = {TUNNEL_OFF: 0, TUNNEL_WITHDRAWN: 1, TUNNEL_HELD: 2, TUNNEL_ON: 3}
# A more preferred gateway that comes back takes over only after answering this long.
FAILBACK_S = 10.0


@record
class RoutingPlan:
    routes: frozenset[KernelRoute]
    rules: frozenset[KernelRule]
    status: tuple[RouteStatus, ...]
    full_tunnel: dict[str, str]
    # (network id, family) -> the member the full tunnel goes through
    gateways: dict[tuple[str, int], str] = field(default_factory=dict)
    # Networks whose full tunnel the kernel refused (as_installed): shown as not on.
    refused: frozenset[str] = frozenset()

    def for_network(self, network_id: str) -> list[dict]:
        return [s.document() for s in self.status if s.network_id == network_id]


def plan_routing(
    networks: Sequence[NetworkRouting],
    own_address: str,
    live_members: Iterable[str],
    local_addresses: Iterable[IPAddress],
    lan_subnets: Iterable[IPNetwork],
    fail_closed: bool = False,
    previous: Mapping[tuple[str, int], str] | None = None,
    live_since: Mapping[str, float] | None = None,
    now: float = 0.0,
) -> RoutingPlan:
    """``previous``: the gateway each (network, family) used so far; ``live_since``: since
    when each live member has been live (both for moving back only to a gateway that has
    answered for a while)."""
    previous, live_since = previous or {}, live_since or {}
    gateways: dict[tuple[str, int], str] = {}
    live = frozenset(live_members)
    local = frozenset(local_addresses)
    lan = [s for s in lan_subnets if not s.is_link_local]
    routes: set[KernelRoute] = set()
    rules: set[KernelRule] = set()
    status: list[RouteStatus] = []
    tunnels: dict[str, str] = {}
    tunnel_owner: str | None = None
    for network in sorted(networks, key=lambda n: n.config.id):
        config = network.config
        own = config.member(own_address)
        if own is None:
            continue
        ours = local | {a.ip for a in own.addresses}
        holders = config.holders()
        on_link = [*config.subnets(), *(r.target for r in config.routes if r.via is None)]
        defaults: dict[int, str | None] = {}  # family -> gateway ip (None: blocked)
        candidates: dict[int, list[tuple[Route, str]]] = {}  # family -> default routes
        state = TUNNEL_OFF
        for route in config.routes:

            def verdict(installed: bool, reason: str, needs: KernelRoute | None = None,
                        route: Route = route, nwid: str = config.id) -> None:  # fmt: skip
                via = str(route.via) if route.via else None
                status.append(RouteStatus(nwid, str(route.target), via, installed, reason,
                                          frozenset([needs] if needs else [])))  # fmt: skip

            refusal = _refusal(route, on_link, ours, network.flags)
            if refusal:
                verdict(False, refusal)
                continue
            family = route.target.version
            if route.via is None:
                if any(route.target == a.network for a in own.addresses):
                    verdict(True, "the network's own subnet, on its device")
                    continue
                on_device = KernelRoute(family, str(route.target), None, network.device)
                routes.add(on_device)
                verdict(True, "on the network's device", on_device)
                continue
            gateway = holders.get(route.via)
            if gateway is None:
                verdict(False, f"no member has the address {route.via}")
                continue
            if route.target.prefixlen > 0:
                via_member = KernelRoute(family, str(route.target), str(route.via),
                                         network.device)  # fmt: skip
                routes.add(via_member)
                verdict(True, f"via member {gateway}", via_member)
                continue
            if tunnel_owner not in (None, config.id):
                verdict(False, f"network {tunnel_owner} already carries the full tunnel")
                continue
            candidates.setdefault(family, []).append((route, gateway))
        for family, offered in candidates.items():
            choice = choose_gateway(offered, live, previous.get((config.id, family)),
                                    live_since, now)  # fmt: skip
            held = choice is None and fail_closed
            if held:
                choice = offered_in_order(offered)[0]
            family_state = TUNNEL_HELD if held else TUNNEL_ON if choice else TUNNEL_WITHDRAWN
            state = max(state, family_state, key=_TUNNEL_STRENGTH.__getitem__)
            tunnel = _full_tunnel_parts(family, choice, network) if choice else frozenset()
            for route, gateway in offered_in_order(offered):
                via = str(route.via)
                chosen = choice is not None and route is choice[0]
                status.append(RouteStatus(config.id, str(route.target), via, chosen,
                                          _gateway_reason(route, gateway, chosen, held, live,
                                                          choice),
                                          tunnel if chosen else frozenset()))  # fmt: skip
            if choice is None:
                continue
            tunnel_owner = config.id
            defaults[family] = str(choice[0].via)
            gateways[(config.id, family)] = choice[1]
            routes.update(part for part in tunnel if isinstance(part, KernelRoute))
            rules.update(part for part in tunnel if isinstance(part, KernelRule))
        if defaults:
            for family in (4, 6):
                if family not in defaults:
                    defaults[family] = None
                    closed = _full_tunnel_parts(family, None, network)
                    routes.update(part for part in closed if isinstance(part, KernelRoute))
                    rules.update(part for part in closed if isinstance(part, KernelRule))
                    status.append(RouteStatus(
                        config.id, default_target(family), None, True,
                        f"{FAMILY_NAMES[family]} blocked: the gateway offers no "
                        f"{FAMILY_NAMES[family]} default route, so it may not leak around the "
                        "tunnel", closed,
                    ))  # fmt: skip
            if not network.flags.allow_lan_access:
                _send_lan_through_tunnel(lan, defaults, network.device, routes, rules)
        tunnels[config.id] = state
    return RoutingPlan(frozenset(routes), frozenset(rules), tuple(status), tunnels, gateways)


def _full_tunnel_parts(family: int, choice: tuple[Route, str] | None,
                       network: NetworkRouting) -> frozenset[KernelRoute | KernelRule]:  # fmt: skip
    """What a family's full tunnel puts in the kernel: its default (to the chosen gateway;
    None: blocked, so it cannot leak around the tunnel) as /1 halves (or quarters), or in the
    full-tunnel table with the rules of a per-port split."""
    via = str(choice[0].via) if choice else None
    split = split_rules(family, network.flags)
    if split:  # (blocked: what the split sends to the tunnel is blocked, no more)
        default = default_target(family)
        table_route = (KernelRoute(family, default, via, network.device, FULL_TUNNEL_TABLE)
                       if via else blocked(family, default, FULL_TUNNEL_TABLE))  # fmt: skip
        return frozenset([table_route, *split])
    return frozenset(KernelRoute(family, str(part), via, network.device) if via
                     else blocked(family, str(part))
                     for part in catch_all(family, network.flags.full_tunnel_quarters))  # fmt: skip


def as_installed(plan: RoutingPlan, refusals: Sequence[Refusal]) -> RoutingPlan:
    """The plan as the kernel has it after ``refusals``: what was refused is neither listed
    nor shown as installed, and a full tunnel that stands on a refused route is ``refused``
    (its state, which DNS, the leak test and the portal watch go by, stays what was meant)."""
    refused = {r.item: r.message for r in refusals if r.item is not None}
    if not refused:
        return plan
    status: list[RouteStatus] = []
    tunnels: set[str] = set()
    for shown in plan.status:
        why = [refused[part] for part in shown.needs if part in refused]
        if shown.installed and why:
            shown = dataclasses.replace(shown, installed=False,
                                        reason=f"the kernel refused it: {why[0]}")  # fmt: skip
            if ipaddress.ip_network(shown.target).prefixlen == 0:
                tunnels.add(shown.network_id)
        status.append(shown)
    return RoutingPlan(plan.routes - refused.keys(), plan.rules - refused.keys(),
                       tuple(status), plan.full_tunnel, plan.gateways,
                       frozenset(tunnels))  # fmt: skip


def offered_in_order(offered: list[tuple[Route, str]]) -> list[tuple[Route, str]]:
    """Default routes by preference: the lowest metric first, then in the config's order."""
    return sorted(offered, key=lambda candidate: candidate[0].metric)


def choose_gateway(
    offered: list[tuple[Route, str]],
    live: frozenset[str],
    previous: str | None,
    live_since: Mapping[str, float],
    now: float,
) -> tuple[Route, str] | None:
    """The most preferred live gateway; but the one in use stays while it is live until a
    more preferred one has answered for FAILBACK_S (no flapping). None: none is live."""
    live_ones = [c for c in offered_in_order(offered) if c[1] in live]
    if not live_ones:
        return None
    best = live_ones[0]
    current = next((c for c in live_ones if c[1] == previous), None)
    recent = now - live_since.get(best[1], now) < FAILBACK_S
    return current if current is not None and current is not best and recent else best


def _gateway_reason(route: Route, gateway: str, chosen: bool, held: bool, live: frozenset[str],
                    choice: tuple[Route, str] | None) -> str:  # fmt: skip
    metric = f" (metric {route.metric})" if route.metric else ""
    if held and chosen:
        return (f"gateway {gateway}{metric} has no live path, nor has any other: traffic held "
                "in the tunnel (fullTunnelFailClosed)")  # fmt: skip
    if chosen:
        return f"full tunnel via member {gateway}{metric}"
    if gateway not in live:
        what = "withdrawn until one answers" if choice is None else "not used"
        return f"gateway {gateway}{metric} has no live path: {what}"
    in_use = choice[1] if choice else "none"
    return f"standby{metric}: member {gateway} answers; the tunnel uses member {in_use}"


def full_tunnel_gateways(networks: Sequence[NetworkRouting], own_address: str) -> set[str]:
    """The members a full tunnel would go through (where the user allowed the default)."""
    gateways = set()
    for network in networks:
        if not network.flags.allow_default:
            continue
        holders = network.config.holders()
        for route in network.config.routes:
            gateway = holders.get(route.via) if route.via is not None else None
            if route.target.prefixlen == 0 and gateway not in (None, own_address):
                gateways.add(gateway)
    return gateways


def _send_lan_through_tunnel(
    lan: list[IPNetwork],
    defaults: dict[int, str | None],
    device: str,
    routes: set[KernelRoute],
    rules: set[KernelRule],
) -> None:
    """LAN subnets are more specific than the halves, so rules send them to a table of ours
    that holds the tunnel (the node's pinned sockets fall through it: no route on their
    device there)."""
    for family, via in defaults.items():
        default = "0.0.0.0/0" if family == 4 else "::/0"
        routes.add(KernelRoute(family, default, via, device, FULL_TUNNEL_TABLE) if via
                   else blocked(family, default, FULL_TUNNEL_TABLE))  # fmt: skip
    for subnet in lan:
        rules.add(KernelRule(subnet.version, str(subnet), FULL_TUNNEL_TABLE, LAN_RULE_PRIORITY))


def _refusal(
    route: Route, on_link: list[IPNetwork], ours: frozenset[IPAddress], flags: NetworkFlags
) -> str:
    """Why a route may not be installed at all ("" if it may)."""
    target, via = route.target, route.via
    forbidden = forbidden_target(target)
    if forbidden:
        return f"refused: {forbidden}"
    if via is not None:
        if via.version != target.version:
            return f"refused: gateway {via} is not an {FAMILY_NAMES[target.version]} address"
        if via in ours:
            if target.prefixlen == 0:
                return "this node is the gateway for it (see exitNode)"
            return f"refused: {via} is this node's own address"
        if not any(via in subnet for subnet in on_link if subnet.version == via.version):
            return f"refused: gateway {via} is outside the network's subnets"
    if target.prefixlen == 0:
        return "" if flags.allow_default else "needs allowDefault"
    if not any(
        target.version == space.version and target.subnet_of(space)  # type: ignore[arg-type]
        for space in PRIVATE_SPACE
    ):
        return "" if flags.allow_global else "public address space: needs allowGlobal"
    managed = flags.allow_managed
    if managed is True:
        return ""
    if managed is False:
        return "needs allowManaged"
    if any(target.version == n.version and target.subnet_of(n) for n in managed):  # type: ignore[arg-type]
        return ""
    return "outside the CIDRs allowManaged lists"
