"""What the API shows of routing: every route with why it is or is not in, and each
network's full tunnel, DNS and exit-node state, read from the routing manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .killswitch import KillSwitch

if TYPE_CHECKING:
    from .manager import RoutingManager


def routes_document(routing: RoutingManager) -> dict:
    """For the API: every route of every network with why it is or is not installed."""
    return {
        "managed": routing.managed,
        "plans": routing.plans,
        "routes": [{"nwid": s.network_id, **s.document()} for s in routing.plan.status],
        "kernel": [
            {"target": r.target, "via": r.via, "device": r.device, "table": r.table,
             "kind": r.kind}
            for r in sorted(routing.plan.routes)
        ],
        "rules": [
            {"to": r.target, "table": r.table, "priority": r.priority,
             **({"ipproto": r.protocol} if r.protocol else {}),
             **({"dport": r.ports.replace(":", "-")} if r.ports else {}),
             **({"suppressPrefixLength": r.suppress_prefixlength}
                if r.suppress_prefixlength >= 0 else {})}
            for r in sorted(routing.plan.rules)
        ],
        "fullTunnel": {network_id: shown_tunnel(routing, network_id)
                       for network_id in routing.plan.full_tunnel},
        "exitNode": dict(routing.exit_plan.status),
        "forwardingRefused": dict(routing.forwarding_refused),
        "killSwitch": kill_switch_document(routing.kill_switch),
        "captivePortal": routing.portal.document(),
        "errors": [*routing.errors, *filter(None, (routing.exit_error, routing.rp_filter_error,
                                                routing.kill_switch_error))],
    }


def shown_tunnel(routing: RoutingManager, network_id: str) -> str:
    """A network's full tunnel as the API shows it: "overridden" when the kernel sends its
    traffic elsewhere (another VPN's routes), "off" when the kernel refused its routes."""
    tunnel = routing.plan.full_tunnel.get(network_id, "off")
    if tunnel not in ("on", "held"):
        return tunnel
    if routing.overrides.get(network_id):
        return "overridden"
    return "off" if network_id in routing.plan.refused else tunnel


def network_document(routing: RoutingManager, network_id: str) -> dict:
    """What the network's API object says about routing."""
    tunnel = shown_tunnel(routing, network_id)
    meant = routing.plan.full_tunnel.get(network_id, "off") in ("on", "held")
    override = routing.overrides.get(network_id, "") if tunnel == "overridden" else ""
    warnings = [override, routing.rp_filter_error if meant else ""]
    return {
        **routing.flags.of(network_id).document(),
        "flagsError": routing.flags.error(network_id),
        "routeStatus": routing.plan.for_network(network_id),
        "fullTunnel": tunnel,
        # What may stop a full tunnel that is "on" from carrying anything.
        "fullTunnelWarning": "; ".join(filter(None, warnings)),
        # The member each family's full tunnel goes through now (routeStatus says why).
        "fullTunnelGateways": {f"ipv{family}": gateway for (nwid, family), gateway
                               in sorted(routing.plan.gateways.items()) if nwid == network_id},
        # The per-port split in force (fullTunnelOnly, fullTunnelExcept), in words.
        "fullTunnelSplit": routing.splits.get(network_id, "") if meant else "",
        "exitNode": routing.exit_plan.status.get(network_id, ""),
        # Node-wide (the kernel counts by rule, not by network).
        "forwardingRefused": dict(routing.forwarding_refused),
        "captivePortal": routing.portal.status(routing.flags.of(network_id).allow_default),
        "dnsStatus": routing.dns_status(network_id),
    }


def kill_switch_document(switch: KillSwitch | None) -> dict:
    if switch is None:
        return {"armed": False}
    return {"armed": True, "devices": list(switch.devices), "port": switch.port,
            "lan": [str(n) for n in switch.lan],
            "directPorts": [str(p) for p in switch.direct_ports],
            "heldPortsOnly": [str(p) for p in switch.only_ports]}  # fmt: skip
