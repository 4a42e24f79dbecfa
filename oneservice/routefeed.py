"""What the routing manager is told, and when: its inputs read from the binder (uplinks, LAN
subnets, port), the network registry and the taps (each network up here with its device, and
our addresses) and the core (which gateways are live),
planned once per flush however many things asked for it in that round (a burst of changes,
each socket it closed, the paths that died with them). The gateways whose liveness decides a
full tunnel are the ones the core watches."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from .binder.binder import Binder
from .network.config import NetworkConfig
from .network.registry import NetworkRegistry
from .node.core import NodeCore
from .routing import leaktest
from .routing.manager import RoutingInputs, RoutingManager
from .tap.devices import Devices

# Routing is re-planned on every change; what the kernel refused is tried again this often.
ROUTING_RETRY_S = 5.0


class RoutingFeed:
    def __init__(self, own_address: str, routing: RoutingManager, core: NodeCore, binder: Binder,
                 networks: NetworkRegistry, devices: Devices, clock: Callable[[], float],
                 schedule_flush: Callable[[], None]) -> None:  # fmt: skip
        self._own_address = own_address
        self._registry = networks
        self._routing = routing
        self._core = core
        self._binder = binder
        self._devices = devices
        self._clock = clock
        self._schedule_flush = schedule_flush
        self._wanted = self._force = False
        # The gateways of the full tunnels wanted now (watched in the core), and which of them
        # were live at the last plan, and when it was made.
        self._gateways: set[str] = set()
        self._seen: tuple[frozenset[str], float] = (frozenset(), float("-inf"))

    def ask(self, force: bool = False) -> None:
        """Plan again at the end of this flush (``force``: compare the kernel with the plan
        too, not only the plan with the last one)."""
        self._wanted = True
        self._force |= force
        self._schedule_flush()

    def plan_if_asked(self) -> None:
        """At the end of a flush: one plan for whatever asked in this round."""
        if not self._wanted:
            return
        force, self._wanted, self._force = self._force, False, False
        networks = self._networks()
        self._gateways = self._routing.gateways_to_watch(networks)
        inputs = self.inputs(networks)
        now = self._clock()
        self._seen = (inputs.live_members, now)
        self._core.set_watched(self._gateways, now)  # probed now if newly watched
        self._routing.update(inputs, force)

    def inputs(self, networks: list[tuple[NetworkConfig, str]] | None = None) -> RoutingInputs:
        """What routing plans from now (``networks``: as _networks() gives them)."""
        networks = self._networks() if networks is None else networks
        uplinks = self._binder.uplinks
        physical = [ipaddress.ip_interface(f"{a.address}/{a.prefixlen}")
                    for u in uplinks for a in u.addresses]  # fmt: skip
        virtual = [a.ip for config, _ in networks for m in config.members
                   if m.address == self._own_address for a in m.addresses]  # fmt: skip
        return RoutingInputs(
            networks=networks,
            # Only gateways' liveness decides anything (full_tunnel_gateways).
            live_members=frozenset(self._core.live_peers(self._clock(), self._gateways)),
            local_addresses=frozenset([*(a.ip for a in physical), *virtual]),
            lan_subnets=tuple(dict.fromkeys(a.network for a in physical)),
            uplinks=tuple(u.name for u in uplinks),
            port=self._binder.port,
            networks_known=self._devices.applied,
        )

    async def leak_test(self, network_id: str | None, ask: Callable) -> dict:
        """The leak test of the network carrying the full tunnel (or ``network_id``), as
        the API answers it; ``ask``: a whoami exchange with the gateway (whoami.py)."""
        network_id = network_id or self._routing.tunnel_network()
        tap = self._devices.taps.get(network_id) if network_id else None
        if network_id is None or tap is None:
            what = f"network {network_id} is not up here" if network_id else (
                "no network carries the full tunnel (set allowDefault on one)")
            checks = [leaktest.Check("tunnel", False, what)]
        else:
            checks = await self._routing.leak_test(network_id, tap.name, self.inputs(), ask)
        passed = all(c.passed for c in checks)
        return {"network": network_id, "result": "PASS" if passed else "FAIL",
                "checks": [c.document() for c in checks]}

    def check(self, now: float) -> None:
        """In a timer round: a gateway may go quiet (or come back) without any event, what
        failed in the kernel is retried now and then, and a gateway back for FAILBACK_S may
        take the tunnel back (nothing but time says so). Otherwise nothing new to plan."""
        live, planned_at = self._seen
        retry = self._routing.failing() and now - planned_at >= ROUTING_RETRY_S
        failback = self._routing.next_due() <= now
        if retry or failback or self._core.live_peers(now, self._gateways) != live:
            self.ask()

    def deadline(self) -> float:
        """When routing has work that only time brings: a fail-back or a login window's end,
        and, only while the kernel refuses something, a retry ROUTING_RETRY_S after the plan.
        Nothing else: no fixed tick."""
        retry = self._seen[1] + ROUTING_RETRY_S if self._routing.failing() else float("inf")
        return min(self._routing.next_due(), retry)

    def _networks(self) -> list[tuple[NetworkConfig, str]]:
        """Each network that is up here and has its device: its config and device name."""
        configs = {config.id: config for config in self._registry.active()}  # (read once)
        return [(configs[nid], tap.name) for nid, tap in self._devices.taps.items()
                if nid in configs]  # fmt: skip
