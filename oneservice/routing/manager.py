"""Keeps the kernel's routes, rules and exit-node table in step with what the planners want.

The service calls ``update()`` whenever an input may have changed (a config, a flag, a
gateway's liveness, an interface, a route event); planning is pure and cheap, and the kernel
is touched only when the plan differs from what was applied (or when a route event says the
kernel may have been changed behind our back). Kernel work runs in one worker thread, one
pass at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import ipaddress
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..network.config import NetworkConfig
from ..records import record
from ..settings import Settings
from . import leaktest, portal
from .dns import (
    DnsRedirect,
    DnsSetting,
    LinuxDnsRedirect,
    ResolvectlDns,
    plan_dns,
    plan_dns_redirect,
)
from .exit_linux import ExitNodeError
from .exit_node import ExitPlan, counters_of, plan_exit_node
from .flags import FlagsStore
from .killswitch import KillSwitch, plan_kill_switch
from .leakrun import AskGateway, run_leak_test
from .nft import NftError
from .overrides import find_overrides
from .planner import (
    FAILBACK_S,
    TUNNEL_HELD,
    TUNNEL_ON,
    TUNNEL_WITHDRAWN,
    NetworkRouting,
    Refusal,
    RoutingPlan,
    as_installed,
    catches_everything,
    full_tunnel_gateways,
    plan_routing,
)
from .sysctls import SysctlError

log = logging.getLogger(__name__)


@record
class RoutingInputs:
    networks: Sequence[tuple[NetworkConfig, str]]  # (config, device name) for each open tap
    live_members: frozenset[str]
    local_addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]
    lan_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    uplinks: tuple[str, ...]
    port: int = 0  # the node's UDP port (the kill switch lets it through)
    # Whether the node has applied its networks once: until then a plan without them says
    # nothing, and a kill switch left by a crash stays (taken over, or lifted if unwanted).
    networks_known: bool = False


@dataclass
class KernelAppliers:
    """What carries a plan out in the kernel, each owning what it adds there (None: not on
    this system; routing is then planned and shown, not applied). On Linux: the routes and
    rules (linux.py), the exit node and isolation table (exit_linux.py), loose reverse-path
    filtering (rp_filter.py), the kill switch (killswitch.py) and the DNS redirect (dns.py)."""

    routes: Any = None
    exit: Any = None
    rp_filter: Any = None
    kill_switch: Any = None
    dns_redirect: Any = None

    @classmethod
    def for_this_system(cls, home: Path) -> KernelAppliers:
        if not sys.platform.startswith("linux"):
            return cls()
        from .exit_linux import LinuxExitNode
        from .killswitch import LinuxKillSwitch
        from .linux import LinuxRoutes
        from .rp_filter import ReversePathFilter

        return cls(LinuxRoutes(), LinuxExitNode(home), ReversePathFilter(home),
                   LinuxKillSwitch(), LinuxDnsRedirect())  # fmt: skip


class RoutingManager:
    def __init__(
        self, home: Path, settings: Callable[[], Settings], own_address: str,
        on_gateways: Callable[[dict[tuple[str, int], str]], None] = lambda gateways: None,
        appliers: KernelAppliers | None = None,
        on_exit: Callable[[tuple[str, ...]], None] = lambda networks: None,
    ) -> None:  # fmt: skip
        """``on_gateways``: told the chosen full-tunnel gateways whenever they change (the
        core must send the default's packets to the one the kernel routes through);
        ``on_exit``: told the networks this node forwards for as exit node whenever that
        changes (none while the kernel refused the forwarding table);
        ``appliers``: this system's by default; ``settings``: the node's settings as they
        are now (read at each plan: a reload needs no second copy kept in step)."""
        self.home = home
        self._on_gateways = on_gateways
        self._on_exit = on_exit
        self._exit_told: tuple[str, ...] = ()
        self.gateway_changes = 0  # GET /metrics
        self._settings = settings
        self.own_address = own_address
        self.flags = FlagsStore(home)
        self.plan = RoutingPlan(frozenset(), frozenset(), (), {})
        self.exit_plan = ExitPlan()
        # Forwarded packets the kernel refused, by why (exit_node.FORWARD_COUNTERS).
        self.forwarding_refused: dict[str, int] = counters_of({})
        self._counters_read = -math.inf
        self.errors: list[str] = []
        self.plans = 0  # routing plans made (GET /routes): one per burst of changes
        # Since when each member has been live (a preferred gateway that comes back takes over
        # only after answering for a while).
        self._live_since: dict[str, float] = {}
        self._failback_due = math.inf  # next_due()
        # Network id -> why the kernel sends (some) traffic elsewhere than its full tunnel.
        self.overrides: dict[str, str] = {}
        # Network id -> the per-port split of the plan in the kernel, in words ("": none).
        self.splits: dict[str, str] = {}
        # Captive portals (routing/portal.py) and the login window (oneservice-cli portal).
        self.portal = portal.PortalWatch(lambda: self.settings.captive_portal)
        self.exit_error = ""
        self._dns = ResolvectlDns()
        self.dns_plan: dict[str, DnsSetting] = {}
        self.dns_errors: list[str] = []
        appliers = appliers or KernelAppliers.for_this_system(home)
        self._kernel = appliers.routes
        self._exit = appliers.exit
        self._rp_filter = appliers.rp_filter
        self._kill_switch = appliers.kill_switch
        # Without resolvectl: queries redirected in the kernel while a full tunnel is on.
        self._dns_redirect = appliers.dns_redirect
        self.dns_redirect: DnsRedirect | None = None
        self.rp_filter_error = ""
        self.kill_switch: KillSwitch | None = None
        self.kill_switch_error = ""
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "oneservice-routes")
        self._applied: RoutingPlan | None = None
        # The inputs to plan next (whether the networks had been applied is in them: a plan
        # from earlier inputs knows nothing of the networks, whenever it is applied).
        self._wanted: RoutingInputs | None = None
        self._force = False
        self._task: asyncio.Task | None = None
        self._stopped = False

    def check_state_files(self) -> None:
        """StateFileDamaged if a file of saved sysctl values cannot be read: nothing could be
        restored from it, so the node must not start and change more."""
        for user in (self._exit, self._rp_filter):
            if user is not None:
                user.journal.saved()

    @property
    def managed(self) -> bool:
        return self._kernel is not None

    def next_due(self) -> float:
        """When time alone may change the plan: a gateway live for less than FAILBACK_S
        becomes eligible to take the tunnel back (nothing else happens at that moment, so
        the service must update then; the next update moves this on)."""
        # A login window's end, until a plan has brought the tunnel back after it.
        window_end = self.portal.open_until
        return min(self._failback_due, window_end if window_end > -math.inf else math.inf)

    def failing(self) -> bool:
        """Something the kernel refused (routes, exit node, kill switch, rp_filter, DNS):
        the service tries again now and then. Otherwise the kernel changes nothing by itself
        that a route or link event would not report."""
        return bool(self.errors or self.exit_error or self.kill_switch_error
                    or self.rp_filter_error or self.dns_errors)  # fmt: skip

    # --- keeping the kernel in step ------------------------------------------------------------

    async def refresh_counters(self) -> None:
        """Read what the kernel refused to forward (for the API, before it answers): at most
        once a second, in the worker (nft is a subprocess)."""
        loop = asyncio.get_running_loop()
        if self._exit is None or loop.time() - self._counters_read < 1.0:
            return
        self._counters_read = loop.time()
        self.forwarding_refused = await loop.run_in_executor(self._executor,
                                                             self._exit.counters)  # fmt: skip

    def tunnel_network(self) -> str | None:
        """The network whose full tunnel is on or held, if any."""
        return next((n for n, state in sorted(self.plan.full_tunnel.items())
                     if state in (TUNNEL_ON, TUNNEL_HELD)), None)  # fmt: skip

    async def leak_test(self, network_id: str, device: str, inputs: RoutingInputs,
                        ask_gateway: AskGateway) -> list[leaktest.Check]:  # fmt: skip
        """The checks of routing/leaktest.py for the network carrying the full tunnel."""
        loop = asyncio.get_running_loop()
        return await run_leak_test(
            network_id, device, inputs, ask_gateway, plan=self.plan,
            flags=self.flags.of(network_id), managed=self._kernel is not None,
            dns_in_effect=self._dns_in_effect(network_id),
            in_worker=functools.partial(loop.run_in_executor, self._executor),
            route_devices=self._kernel.route_devices if self._kernel else None,
        )  # fmt: skip

    def _dns_in_effect(self, network_id: str) -> str:
        """How the network's DNS is set while its tunnel is on ("" if by nothing of ours)."""
        setting = self._dns.applied.get(network_id)
        if setting is not None and "~." in setting.domains:
            return (f"servers {', '.join(setting.servers)} on {setting.device} with the routing "
                    "domain ~. (systemd-resolved): every query goes through the tunnel")
        redirect = self.dns_redirect
        if redirect is not None and redirect.network_id == network_id:
            return redirect.describe()
        return ""

    async def remove_leftovers(self) -> None:
        """Before anything else at start: whatever a crashed run of ours left behind."""
        if self._kernel is None or self._exit is None:
            return
        loop = asyncio.get_running_loop()
        removed = await loop.run_in_executor(self._executor, self._kernel.remove_all)
        if removed:
            log.warning("removed %d route(s)/rule(s) left by an earlier run", removed)
        try:
            await loop.run_in_executor(self._executor, self._exit.restore)
        except ExitNodeError as exc:
            # The node still runs (as a client); it will not serve as an exit until this is
            # fixed, and the state file is never overwritten.
            log.error("forwarding table (exit node, isolation): %s", exc)
            self.exit_error = str(exc)
        await self._apply_rp_filter(())
        try:
            await loop.run_in_executor(self._executor, LinuxDnsRedirect.remove)
        except NftError as exc:
            log.error("dns: %s", exc)

    def gateways_to_watch(self, networks: Sequence[tuple[NetworkConfig, str]]) -> set[str]:
        """Members whose liveness decides a full tunnel: probed every second."""
        routing = [NetworkRouting(c, d, self.flags.of(c.id)) for c, d in networks]
        return full_tunnel_gateways(routing, self.own_address)

    async def settled(self) -> None:
        """Until the plans asked for so far are made (and applied, where this system can)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def update(self, inputs: RoutingInputs, force: bool = False) -> None:
        if self._stopped:
            return  # everything was removed; nothing may come back during shutdown
        now = asyncio.get_running_loop().time()
        self._live_since = {m: self._live_since.get(m, now) for m in inputs.live_members}
        self._failback_due = min((since + FAILBACK_S for since in self._live_since.values()
                                  if since + FAILBACK_S > now), default=math.inf)  # fmt: skip
        self._wanted = inputs
        self._force |= force
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    # --- captive portals --------------------------------------------------------------------

    def open_portal(self, seconds: float) -> None:
        """A login window: for ``seconds`` no full tunnel (nor kill switch), so the user can
        log in to a captive portal directly; then both come back by themselves. 0 closes it.
        The caller asks for a plan (the feed's inputs, routefeed.py)."""
        self.portal.open(seconds)

    @property
    def settings(self) -> Settings:
        return self._settings()

    def _gateways_changed(self, gateways: dict[tuple[str, int], str]) -> None:
        self.gateway_changes += 1
        self._on_gateways(gateways)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted is not None:
            inputs, self._wanted = self._wanted, None
            force, self._force = self._force, False
            routing = [NetworkRouting(c, d, self.flags.of(c.id)) for c, d in inputs.networks]
            if self.portal.is_open():  # a login window: no full tunnel (nor kill switch) now
                routing = [dataclasses.replace(n, flags=dataclasses.replace(
                    n.flags, allow_default=False)) for n in routing]
            else:
                self.portal.window_over()  # (if one was open, this plan brings the tunnel back)
            now = loop.time()
            self.plans += 1
            plan = plan_routing(
                routing, self.own_address, inputs.live_members, inputs.local_addresses,
                inputs.lan_subnets, self.settings.full_tunnel_fail_closed,
                previous=self.plan.gateways, live_since=self._live_since, now=now,
            )  # fmt: skip
            exit_plan = plan_exit_node(routing, self.own_address, self.settings.allow_exit_node,
                                       inputs.lan_subnets, self.settings.allow_exit_node_lan)
            if self._kernel is None or self._exit is None:
                if plan.gateways != self.plan.gateways:
                    self._gateways_changed(plan.gateways)
                self.plan, self.exit_plan = plan, exit_plan
                self._exit_changed()
                continue
            # self.plan (what the API shows) is what the kernel has once this returns: a
            # client that sees "fullTunnel": "on" may rely on the routes being there, and a
            # route the kernel refused is shown as not installed, with the kernel's reason.
            applied = self._applied
            # Loosened before the halves go in, restored only after they are gone: with strict
            # reverse-path filtering and the halves in place, the gateway's answers arriving on
            # the uplink would be dropped, and the path declared dead, in between.
            halves = catches_everything(plan.rules, plan.routes, 4)
            if halves:
                await self._apply_rp_filter(inputs.uplinks)
            refusals: list[Refusal] = []
            if (
                force
                or applied is None
                or (applied.routes, applied.rules) != (plan.routes, plan.rules)
            ):
                try:
                    refusals = await loop.run_in_executor(
                        self._executor, self._kernel.apply, plan.routes, plan.rules
                    )
                except Exception as exc:  # netlink itself failed: retried at the next update
                    message = f"cannot read or change the routing tables: {exc}"
                    refusals = [Refusal(item, message) for item in (*plan.routes, *plan.rules)]
                    refusals = refusals or [Refusal(None, message)]
                errors = list(dict.fromkeys(refusal.message for refusal in refusals))
                if errors != self.errors:
                    for error in errors:
                        log.warning("routes: %s", error)
                self.errors = errors
                self._applied = plan if not errors else None
                _log_tunnels(applied, plan)
            if plan.gateways != self.plan.gateways:
                self._gateways_changed(plan.gateways)
            self.plan = as_installed(plan, refusals)
            self.splits = {n.config.id: n.flags.split() for n in routing}
            self.overrides = await loop.run_in_executor(
                self._executor, find_overrides, routing, plan, self._kernel.route_devices,
                self.overrides)  # fmt: skip
            if inputs.networks_known:
                probe = self.settings.captive_portal
                await self._apply_kill_switch(plan_kill_switch(
                    routing, plan, self.settings.full_tunnel_fail_closed, inputs.port,
                    inputs.lan_subnets, (probe.host, probe.port) if probe else None))  # fmt: skip
            if not halves:
                await self._apply_rp_filter(())
            await self._apply_dns(routing)
            try:
                await loop.run_in_executor(
                    self._executor, self._exit.apply, exit_plan, inputs.uplinks
                )
                self.exit_error = ""
            except Exception as exc:  # ExitNodeError, OSError: shown in the status, retried
                if str(exc) != self.exit_error:
                    log.error("forwarding table (exit node, isolation): %s", exc)
                self.exit_error = str(exc)
            self.exit_plan = exit_plan
            self._exit_changed()
            stranded = any(state in (TUNNEL_WITHDRAWN, TUNNEL_HELD)
                           for state in self.plan.full_tunnel.values())  # fmt: skip
            self.portal.check(stranded, inputs.uplinks, frozenset(inputs.local_addresses))

    def _exit_changed(self) -> None:
        serving = () if self.exit_error else self.exit_plan.networks
        if serving != self._exit_told:
            self._exit_told = serving
            self._on_exit(serving)

    def kill_switch_up(self) -> bool:
        """Whether our kill switch is in the kernel now (it lets out the node's own port only)."""
        return self.kill_switch is not None

    async def _apply_kill_switch(self, switch: KillSwitch | None) -> None:
        if self._kill_switch is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._kill_switch.apply, switch)
        except NftError as exc:
            message = f"kill switch {'not armed' if switch else 'not lifted'}: {exc}"
            if message != self.kill_switch_error:
                log.error("%s", message)
            self.kill_switch_error = message
            return
        if switch != self.kill_switch:
            log.info("kill switch %s", "armed: only the tunnel may carry traffic" if switch
                     else "lifted")  # fmt: skip
        self.kill_switch, self.kill_switch_error = switch, ""

    async def _apply_rp_filter(self, uplinks: Sequence[str]) -> None:
        if self._rp_filter is None:
            return
        loop = asyncio.get_running_loop()
        try:
            changes = await loop.run_in_executor(self._executor, self._rp_filter.apply, uplinks)
            self.rp_filter_error = ""
        except (SysctlError, ValueError) as exc:
            if str(exc) != self.rp_filter_error:
                log.error("reverse-path filter: %s", exc)
            self.rp_filter_error = (f"strict reverse-path filtering may drop the tunnel's own "
                                    f"UDP: {exc}")  # fmt: skip
            return
        for change in changes:
            log.info("%s", change)

    async def _apply_dns(self, routing: list[NetworkRouting]) -> None:
        self.dns_plan = plan_dns(routing, self.plan.full_tunnel)
        if not self._dns.available():
            await self._apply_dns_redirect(plan_dns_redirect(routing, self.plan.full_tunnel))
            return
        if self.dns_plan == self._dns.applied:
            return
        loop = asyncio.get_running_loop()
        errors = await loop.run_in_executor(self._executor, self._dns.apply, self.dns_plan)
        for error in errors:
            log.warning("dns: %s", error)
        self.dns_errors = errors

    async def _apply_dns_redirect(self, redirect: DnsRedirect | None) -> None:
        if self._dns_redirect is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._dns_redirect.apply, redirect)
            errors = []
        except NftError as exc:
            errors = [f"cannot redirect DNS queries: {exc}"]
        if errors != self.dns_errors:
            for error in errors:
                log.warning("dns: %s", error)
        self.dns_errors = errors
        self.dns_redirect = self._dns_redirect.applied

    def dns_status(self, network_id: str) -> str:
        flags = self.flags.of(network_id)
        setting = self.dns_plan.get(network_id)
        if not flags.allow_dns:
            return "not applied: allowDNS is off"
        if setting is None:
            return "not applied: the network has no DNS servers"
        if not self._dns.available():
            redirect = self.dns_redirect
            if redirect is not None and redirect.network_id == network_id:
                return redirect.describe()
            if self._dns_redirect is None:
                return "not applied: no resolvectl (systemd-resolved) on this machine"
            return ("not applied: without resolvectl (systemd-resolved) the network's servers "
                    "are used only while it carries the full tunnel (then every query is "
                    "redirected to them)")  # fmt: skip
        if self._dns.applied.get(network_id) != setting:
            return "not applied yet (see the log)"
        return f"servers {', '.join(setting.servers)}, domains {' '.join(setting.domains) or '-'}"

    async def stop(self, keep_kill_switch: bool = False) -> None:
        """Remove every route, rule and table of ours and restore the sysctls; the kill
        switch too, unless ``keep_kill_switch`` (a start that failed: no clean stop)."""
        self._stopped = True
        if self._task is not None:
            self._wanted = None
            try:
                await self._task
            except Exception:
                log.exception("routing update failed during stop")
        if self._kernel is not None and self._exit is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._kernel.remove_all)
            await self._apply_rp_filter(())
            if not keep_kill_switch:
                await self._apply_kill_switch(None)
            if self._dns.applied:
                await loop.run_in_executor(self._executor, self._dns.apply, {})
            await self._apply_dns_redirect(None)
            try:
                await loop.run_in_executor(self._executor, self._exit.restore)
            except Exception as exc:
                log.error("forwarding table (exit node, isolation): %s", exc)
            await loop.run_in_executor(self._executor, self._kernel.close)
        self._executor.shutdown(wait=True)


def _log_tunnels(before: RoutingPlan | None, after: RoutingPlan) -> None:
    for network_id, state in after.full_tunnel.items():
        if before is None or before.full_tunnel.get(network_id) != state:
            log.info("network %s: full tunnel %s", network_id, state)
