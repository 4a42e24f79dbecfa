"""Override detection: is the kernel sending traffic that our full tunnel's routes are meant
for somewhere else (another VPN's more specific routes or rules)?"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .planner import (
    FAMILY_NAMES,
    TUNNEL_HELD,
    TUNNEL_ON,
    UNREACHABLE,
    NetworkRouting,
    RoutingPlan,
    catch_all,
    catch_all_samples,
    default_target,
    overridden,
)

log = logging.getLogger("oneservice.routing.manager")


def find_overrides(routing: list[NetworkRouting], plan: RoutingPlan,
                   route_devices: Callable[[list[str]], dict], known: dict[str, str]) -> dict:
    """Network id -> why the kernel sends its tunnel's traffic elsewhere, found by asking the
    kernel where sample addresses go (``route_devices``: blocking, so this runs in the routing
    worker). ``known``: what was found last time (only news is logged)."""
    found = {}
    for network in routing:
        network_id = network.config.id
        state = plan.full_tunnel.get(network_id)
        if state not in (TUNNEL_ON, TUNNEL_HELD):
            continue
        reasons = []
        if network.flags.full_tunnel_only:
            continue  # only some ports take the tunnel: where an address goes says nothing
        for family in (4, 6):
            parts = {str(p) for p in catch_all(family, network.flags.full_tunnel_quarters)}
            if network.flags.full_tunnel_except:  # the tunnel is our table's default
                parts = {default_target(family)}
            ours = [r for r in plan.routes if r.family == family and r.target in parts]
            if not ours:
                continue
            device = "" if ours[0].kind == UNREACHABLE else network.device
            try:
                routed = route_devices(catch_all_samples(family))
            except Exception as exc:  # netlink failed: logged, tried again next pass; a
                # check that could not run says nothing about where traffic goes
                log.warning("cannot check where %s traffic goes: %s", FAMILY_NAMES[family],
                            exc)  # fmt: skip
                continue
            reason = overridden(family, device, routed)
            if reason:
                reasons.append(reason)
        if reasons:
            found[network_id] = "; ".join(reasons)
    for network_id, reason in found.items():
        if known.get(network_id) != reason:
            log.warning("network %s: %s", network_id, reason)
    return found
