"""The kill switch of a fail-closed full tunnel: a block that lives in the kernel.

With `settings.fullTunnelFailClosed` and a full tunnel on (or held), an nftables table of ours
drops every packet this machine sends except: into the tunnel's devices, the tunnel's own UDP
(from the node's port, over the pinned sockets), loopback, DHCP and IPv6 neighbour discovery,
and the LAN when the network allows LAN access. With a per-port split it follows the split:
the ports of fullTunnelExcept go out directly too; with fullTunnelOnly only the listed ports
are held to the tunnel (everything else goes direct by the user's choice). It is in the
kernel, so it holds when the
process dies (SIGKILL, a crash): nothing leaves in the clear until the node is back, and the
next start takes the table over without a gap. Only a clean stop, leaving the network,
`allowDefault=0` (or fail-closed turned off) and `oneservice-cli killswitch off` lift it.

``plan_kill_switch`` and ``ruleset`` are pure; ``LinuxKillSwitch`` applies them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from ..records import record
from .flags import PortSpec
from .nft import NftError, delete_table, match, prefixes, replace_table, run_nft, table_exists
from .planner import TUNNEL_HELD, TUNNEL_ON, NetworkRouting, RoutingPlan

__all__ = ["TABLE_NAME", "KillSwitch", "LinuxKillSwitch", "NftError", "lift", "plan_kill_switch",
           "ruleset", "table_exists"]  # fmt: skip

TABLE_NAME = "oneservice-killswitch"
# What a machine needs on its links while everything else waits for the tunnel.
DHCP_PORTS = ((68, 67), (546, 547))  # (client, server): DHCPv4, DHCPv6
NEIGHBOUR_DISCOVERY = ["nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert",
                       "mld2-listener-report"]  # fmt: skip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@record
class KillSwitch:
    devices: tuple[str, ...]  # the tunnel's TUN devices
    port: int  # the node's UDP port
    lan: tuple[IPNetwork, ...] = ()  # reached directly (allowLanAccess)
    direct_ports: tuple[PortSpec, ...] = ()  # fullTunnelExcept: these go out directly
    only_ports: tuple[PortSpec, ...] = ()  # fullTunnelOnly: only these are held to the tunnel
    probe: tuple[str, int] | None = None  # the captive portal probe's address and TCP port


def plan_kill_switch(
    networks: Sequence[NetworkRouting],
    plan: RoutingPlan,
    fail_closed: bool,
    port: int,
    lan: Sequence[IPNetwork],
    probe: tuple[str, int] | None = None,
) -> KillSwitch | None:
    """Armed while a fail-closed full tunnel is on or held; None otherwise."""
    if not fail_closed:
        return None
    carrying = [n for n in networks
                if plan.full_tunnel.get(n.config.id) in (TUNNEL_ON, TUNNEL_HELD)]  # fmt: skip
    if not carrying:
        return None
    direct = tuple(s for s in lan if all(n.flags.allow_lan_access for n in carrying))
    return KillSwitch(
        tuple(sorted(n.device for n in carrying)), port, direct,
        tuple(sorted({p for n in carrying for p in n.flags.full_tunnel_except})),
        tuple(sorted({p for n in carrying for p in n.flags.full_tunnel_only})),
        probe,
    )  # fmt: skip


def ruleset(switch: KillSwitch) -> dict:
    """The whole table, replaced in one transaction: no moment without the block."""
    chain = {"family": "inet", "table": TABLE_NAME, "name": "output"}
    commands: list[dict] = [
        *replace_table(TABLE_NAME),
        {"add": {"chain": {**chain, "type": "filter", "hook": "output", "prio": 0,
                           "policy": "drop"}}},
    ]  # fmt: skip

    rule = {"family": "inet", "table": TABLE_NAME, "chain": "output"}

    def accept(*matches: dict) -> None:
        commands.append({"add": {"rule": {**rule, "expr": [*matches, {"accept": None}]}}})

    accept(match({"meta": {"key": "oifname"}}, {"set": ["lo", *switch.devices]}))
    accept(match({"meta": {"key": "l4proto"}}, "udp"),
           match({"payload": {"protocol": "udp", "field": "sport"}}, switch.port))  # fmt: skip
    for client, server in DHCP_PORTS:
        accept(match({"payload": {"protocol": "udp", "field": "sport"}}, client),
               match({"payload": {"protocol": "udp", "field": "dport"}}, server))  # fmt: skip
    accept(match({"payload": {"protocol": "icmpv6", "field": "type"}},
                  {"set": NEIGHBOUR_DISCOVERY}))  # fmt: skip
    if switch.probe is not None:  # the captive portal probe (routing/portal.py), nothing more
        host, port = switch.probe
        protocol = "ip6" if ":" in host else "ip"
        accept(match({"payload": {"protocol": protocol, "field": "daddr"}}, host),
               match({"meta": {"key": "l4proto"}}, "tcp"),
               match({"payload": {"protocol": "tcp", "field": "dport"}}, port))  # fmt: skip
    for version, protocol in ((4, "ip"), (6, "ip6")):
        subnets = [n for n in switch.lan if n.version == version]
        if subnets:
            accept(match({"payload": {"protocol": protocol, "field": "daddr"}},
                         prefixes(subnets)))
    if switch.only_ports:
        for spec in switch.only_ports:
            commands.append({"add": {"rule": {**rule, "expr": [
                *_port_match(spec), {"counter": None}, {"drop": None}]}}})  # fmt: skip
        accept()  # the rest goes direct: only the listed ports take the tunnel
        return {"nftables": commands}
    for spec in switch.direct_ports:
        accept(*_port_match(spec))
    commands.append({"add": {"rule": {**rule, "expr": [{"counter": None}, {"drop": None}]}}})
    return {"nftables": commands}


def _port_match(spec: PortSpec) -> list[dict]:
    ports = spec.first if spec.first == spec.last else {"range": [spec.first, spec.last]}
    return [match({"meta": {"key": "l4proto"}}, spec.protocol),
            match({"payload": {"protocol": "th", "field": "dport"}}, ports)]  # fmt: skip


_UNKNOWN = object()


class LinuxKillSwitch:
    def __init__(self) -> None:
        # Unknown at first: a crashed run may have left the table, which is then taken over
        # (wanted) or removed (not wanted) by the first apply.
        self.applied: object = _UNKNOWN

    def apply(self, switch: KillSwitch | None) -> None:
        """NftError says what failed. An armed switch is checked to be in the kernel still
        (someone may have flushed the ruleset) and put back if not."""
        if switch == self.applied and (switch is None or table_exists("inet", TABLE_NAME)):
            return
        run_nft(ruleset(switch) if switch else delete_table(TABLE_NAME), missing_ok=switch is None)
        self.applied = switch

    def armed(self) -> bool:
        return table_exists("inet", TABLE_NAME)


def lift() -> None:
    """Remove the block (what `oneservice-cli killswitch off` does while no node runs)."""
    run_nft(delete_table(TABLE_NAME), missing_ok=True)

