"""`oneservice-cli leaktest`: the checks of routing/leaktest.py run against the kernel as it
is, for the network carrying the full tunnel (the routing manager supplies the plan, the flags
and its worker thread)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import leaktest
from .flags import NetworkFlags
from .nft import NftError
from .planner import TUNNEL_HELD, TUNNEL_ON, RoutingPlan, catch_all_samples

AskGateway = Callable[[str], Awaitable[leaktest.GatewayAnswer | None]]


async def run_leak_test(
    network_id: str, device: str, inputs: Any, ask_gateway: AskGateway, *,
    plan: RoutingPlan, flags: NetworkFlags, managed: bool, dns_in_effect: str,
    in_worker: Callable[..., Awaitable], route_devices: Callable[[list[str]], dict] | None,
) -> list[leaktest.Check]:  # fmt: skip
    """``inputs``: the routing inputs now (routing.manager.RoutingInputs); ``in_worker`` runs
    blocking work (netlink, nft) in the routing worker; ``route_devices`` asks the kernel
    which device each address goes out of."""
    state = plan.full_tunnel.get(network_id, "off")
    tunnel = leaktest.Check("tunnel", state in (TUNNEL_ON, TUNNEL_HELD),
                            f"network {network_id}: full tunnel {state}")  # fmt: skip
    if not managed:
        return [leaktest.Check("tunnel", False, "routing is not managed here")]
    if not tunnel.passed:
        return [tunnel]
    checks = [tunnel]
    expected = {family: (device if (network_id, family) in plan.gateways else None)
                for family in (4, 6)}  # fmt: skip
    if flags.full_tunnel_only:
        checks.append(leaktest.Check("routes", True, "not checked: only "
                                     + ", ".join(map(str, flags.full_tunnel_only))
                                     + " take the tunnel (fullTunnelOnly)"))  # fmt: skip
    else:
        routed = {}
        for family in (4, 6):
            samples = [*catch_all_samples(family), leaktest.PROBES[family]]
            routed[family] = await in_worker(route_devices, samples)
        checks.append(leaktest.route_check(routed, expected))
    servers: list[str] = []
    routed_dns: dict[str, str | None] = {}
    if not dns_in_effect:
        try:
            servers = leaktest.resolv_conf_servers(Path("/etc/resolv.conf").read_text())
        except OSError:
            servers = []
        routed_dns = await in_worker(route_devices, [
            s for s in servers if not ipaddress.ip_address(s.split("%")[0]).is_loopback])
    checks.append(leaktest.dns_check(servers, dns_in_effect, routed_dns, device))
    gateway = plan.gateways.get((network_id, 4)) or plan.gateways.get((network_id, 6))
    if gateway is not None:
        answer = await ask_gateway(gateway)
        checks.append(leaktest.gateway_check(gateway, answer,
                                             [str(a) for a in inputs.local_addresses]))
    lan = inputs.lan_subnets if flags.allow_lan_access else ()
    try:
        leaked, carried = await in_worker(leaktest.count_leaks, inputs.uplinks, inputs.port, lan)
        checks.append(leaktest.leak_check(leaked, carried, inputs.uplinks, leaktest.COUNT_FOR_S))
    except NftError as exc:
        checks.append(leaktest.Check("leaks", False, f"not counted: {exc}"))
    return checks

