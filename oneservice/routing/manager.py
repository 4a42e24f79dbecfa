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
import ipaddress
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import network_down
from ..network.config import NetworkConfig
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
from .flags import FlagsError, NetworkFlags, delete_flags, load_flags, save_flags
from .killswitch import KillSwitch, plan_kill_switch
from .nft import NftError
from .planner import (
    FAILBACK_S,
    FAMILY_NAMES,
    TUNNEL_HELD,
    TUNNEL_ON,
    TUNNEL_WITHDRAWN,
    UNREACHABLE,
    NetworkRouting,
    RoutingPlan,
    catch_all,
    catch_all_samples,
    catches_everything,
    default_target,
    full_tunnel_gateways,
    overridden,
    plan_routing,
)
from .sysctls import SysctlError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingInputs:
    networks: Sequence[tuple[NetworkConfig, str]]  # (config, device name) for each open tap
    live_members: frozenset[str]
    local_addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]
    lan_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    uplinks: tuple[str, ...]
    port: int = 0  # the node's UDP port (the kill switch lets it through)


class RoutingManager:
    def __init__(
        self, home: Path, settings: Settings, own_address: str,
        on_gateways: Callable[[dict[tuple[str, int], str]], None] = lambda gateways: None,
    ) -> None:  # fmt: skip
        """``on_gateways``: told the chosen full-tunnel gateways whenever they change (the
        core must send the default's packets to the one the kernel routes through)."""
        self.home = home
        self._on_gateways = on_gateways
        self.settings = settings
        self.own_address = own_address
        self.flags: dict[str, NetworkFlags] = {}
        self.flag_errors: dict[str, str] = {}
        self.plan = RoutingPlan(frozenset(), frozenset(), (), {})
        self.exit_plan = ExitPlan()
        # Forwarded packets the kernel refused, by why (exit_node.FORWARD_COUNTERS).
        self.forwarding_refused: dict[str, int] = counters_of({})
        self._counters_read = -math.inf
        self.errors: list[str] = []
        # Since when each member has been live (a preferred gateway that comes back takes over
        # only after answering for a while).
        self._live_since: dict[str, float] = {}
        self._failback_due = math.inf  # next_due()
        # Network id -> why the kernel sends (some) traffic elsewhere than its full tunnel.
        self.overrides: dict[str, str] = {}
        # Network id -> the per-port split of the plan in the kernel, in words ("": none).
        self.splits: dict[str, str] = {}
        # Captive portals (routing/portal.py): uplink -> what its probe saw; what each uplink
        # was probed at (the machine's addresses then: a new network probes again); and the
        # end of a login window (oneservice-cli portal open), loop time.
        self.portals: dict[str, str] = {}
        self._probed: dict[str, frozenset] = {}
        self._probing: asyncio.Task | None = None
        self.portal_open_until = -math.inf
        self._last_inputs: RoutingInputs | None = None
        self.exit_error = ""
        self._dns = ResolvectlDns()
        self.dns_plan: dict[str, DnsSetting] = {}
        self.dns_errors: list[str] = []
        # Without resolvectl: queries redirected in the kernel while a full tunnel is on.
        self._dns_redirect: LinuxDnsRedirect | None = None
        self.dns_redirect: DnsRedirect | None = None
        self._kernel = None
        self._exit = None
        self._rp_filter = None
        self.rp_filter_error = ""
        self._kill_switch = None
        self.kill_switch: KillSwitch | None = None
        self.kill_switch_error = ""
        # Until the node has applied its networks once, a plan without them says nothing: a
        # kill switch left by a crash stays until then (taken over, or lifted if unwanted).
        self.networks_applied = False
        if sys.platform.startswith("linux"):
            from .exit_linux import LinuxExitNode
            from .killswitch import LinuxKillSwitch
            from .linux import LinuxRoutes
            from .rp_filter import ReversePathFilter

            self._kernel = LinuxRoutes()
            self._exit = LinuxExitNode(home)
            self._rp_filter = ReversePathFilter(home)
            self._kill_switch = LinuxKillSwitch()
            self._dns_redirect = LinuxDnsRedirect()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "oneservice-routes")
        self._applied: RoutingPlan | None = None
        # The inputs to plan next, and whether the networks had been applied when they were
        # made (a plan from earlier inputs knows nothing of them, whenever it is applied).
        self._wanted: tuple[RoutingInputs, bool] | None = None
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

    # --- flags ---------------------------------------------------------------------------------

    def flags_for(self, network_id: str) -> NetworkFlags:
        if network_id not in self.flags:
            try:
                self.flags[network_id] = load_flags(self.home, network_id)
                self.flag_errors.pop(network_id, None)
            except FlagsError as exc:
                # The network stays down (Service.down_reason): running it with other flags
                # than the user saved could route or leak what they meant not to. The file
                # stays as it is.
                self.flag_errors[network_id] = network_down(exc, network_id)
                log.error("%s", self.flag_errors[network_id])
                self.flags[network_id] = NetworkFlags()
        return self.flags[network_id]

    def next_due(self) -> float:
        """When time alone may change the plan: a gateway live for less than FAILBACK_S
        becomes eligible to take the tunnel back (nothing else happens at that moment, so
        the service must update then; the next update moves this on)."""
        # A login window's end, until a plan has brought the tunnel back after it.
        return min(self._failback_due, self.portal_open_until if self.portal_open_until
                   > -math.inf else math.inf)  # fmt: skip

    def failing(self) -> bool:
        """Something the kernel refused (routes, exit node, kill switch, rp_filter, DNS):
        the service tries again now and then. Otherwise the kernel changes nothing by itself
        that a route or link event would not report."""
        return bool(self.errors or self.exit_error or self.kill_switch_error
                    or self.rp_filter_error or self.dns_errors)  # fmt: skip

    def flags_error(self, network_id: str) -> str:
        """Why this network's flags file cannot be used ("" if it can)."""
        self.flags_for(network_id)
        return self.flag_errors.get(network_id, "")

    def set_flags(self, network_id: str, changes: dict) -> NetworkFlags:
        """FlagsError if a change is wrong, WriteFailed if it cannot be saved; nothing is then
        changed."""
        if self.flags_error(network_id):
            raise FlagsError(f"{self.flag_errors[network_id]}; fix or remove that file first "
                             "(the node does not write over it)")  # fmt: skip
        flags = self.flags_for(network_id).changed(changes)
        save_flags(self.home, network_id, flags)
        self.flags[network_id] = flags
        self.flag_errors.pop(network_id, None)
        return flags

    def forget(self, network_id: str) -> None:
        self.flags.pop(network_id, None)
        self.flag_errors.pop(network_id, None)
        delete_flags(self.home, network_id)

    # --- keeping the kernel in step ------------------------------------------------------------

    def document(self) -> dict:
        """For the API: every route of every network with why it is or is not installed."""
        return {
            "managed": self.managed,
            "routes": [{"nwid": s.network_id, **s.document()} for s in self.plan.status],
            "kernel": [
                {"target": r.target, "via": r.via, "device": r.device, "table": r.table,
                 "kind": r.kind}
                for r in sorted(self.plan.routes)
            ],
            "rules": [
                {"to": r.target, "table": r.table, "priority": r.priority,
                 **({"ipproto": r.protocol} if r.protocol else {}),
                 **({"dport": r.ports.replace(":", "-")} if r.ports else {}),
                 **({"suppressPrefixLength": r.suppress_prefixlength}
                    if r.suppress_prefixlength >= 0 else {})}
                for r in sorted(self.plan.rules)
            ],
            "fullTunnel": dict(self.plan.full_tunnel),
            "exitNode": dict(self.exit_plan.status),
            "forwardingRefused": dict(self.forwarding_refused),
            "killSwitch": _kill_switch_document(self.kill_switch),
            "captivePortal": self.portal_document(),
            "errors": [*self.errors, *filter(None, (self.exit_error, self.rp_filter_error,
                                                    self.kill_switch_error))],
        }

    def network_document(self, network_id: str) -> dict:
        """What the network's API object says about routing."""
        tunnel = self.plan.full_tunnel.get(network_id, "off")
        override = self.overrides.get(network_id, "") if tunnel in ("on", "held") else ""
        warnings = [override, self.rp_filter_error if tunnel in ("on", "held") else ""]
        return {
            **self.flags_for(network_id).document(),
            "flagsError": self.flag_errors.get(network_id, ""),
            "routeStatus": self.plan.for_network(network_id),
            # "overridden": our routes are in, but the kernel sends traffic elsewhere.
            "fullTunnel": "overridden" if override else tunnel,
            # What may stop a full tunnel that is "on" from carrying anything.
            "fullTunnelWarning": "; ".join(filter(None, warnings)),
            # The member each family's full tunnel goes through now (routeStatus says why).
            "fullTunnelGateways": {f"ipv{family}": gateway for (nwid, family), gateway
                                   in sorted(self.plan.gateways.items()) if nwid == network_id},
            # The per-port split in force (fullTunnelOnly, fullTunnelExcept), in words.
            "fullTunnelSplit": self.splits.get(network_id, "") if tunnel in ("on", "held") else "",
            "exitNode": self.exit_plan.status.get(network_id, ""),
            # Node-wide (the kernel counts by rule, not by network).
            "forwardingRefused": dict(self.forwarding_refused),
            "captivePortal": self._portal_status(network_id),
            "dnsStatus": self._dns_status(network_id),
        }

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

    async def leak_test(
        self, network_id: str, device: str, inputs: RoutingInputs,
        ask_gateway: Callable[[str], Awaitable[tuple[str, tuple[str, ...]] | None]],
    ) -> list[leaktest.Check]:  # fmt: skip
        """The checks of routing/leaktest.py for the network carrying the full tunnel."""
        state = self.plan.full_tunnel.get(network_id, "off")
        tunnel = leaktest.Check("tunnel", state in (TUNNEL_ON, TUNNEL_HELD),
                                f"network {network_id}: full tunnel {state}")  # fmt: skip
        if not tunnel.passed or self._kernel is None:
            if self._kernel is None:
                tunnel = leaktest.Check("tunnel", False, "routing is not managed here")
            return [tunnel]
        loop = asyncio.get_running_loop()
        flags = self.flags_for(network_id)
        checks = [tunnel]
        expected = {family: (device if (network_id, family) in self.plan.gateways else None)
                    for family in (4, 6)}  # fmt: skip
        if flags.full_tunnel_only:
            checks.append(leaktest.Check("routes", True, "not checked: only "
                                         + ", ".join(map(str, flags.full_tunnel_only))
                                         + " take the tunnel (fullTunnelOnly)"))
        else:
            routed = {}
            for family in (4, 6):
                samples = [*catch_all_samples(family), leaktest.PROBES[family]]
                routed[family] = await loop.run_in_executor(
                    self._executor, self._kernel.route_devices, samples)
            checks.append(leaktest.route_check(routed, expected))
        how = self._dns_in_effect(network_id)
        servers: list[str] = []
        routed_dns: dict[str, str | None] = {}
        if not how:
            try:
                servers = leaktest.resolv_conf_servers(Path("/etc/resolv.conf").read_text())
            except OSError:
                servers = []
            routed_dns = await loop.run_in_executor(
                self._executor, self._kernel.route_devices,
                [s for s in servers if not ipaddress.ip_address(s.split("%")[0]).is_loopback])
        checks.append(leaktest.dns_check(servers, how, routed_dns, device))
        gateway = self.plan.gateways.get((network_id, 4)) or self.plan.gateways.get(
            (network_id, 6))
        if gateway is not None:
            answer = await ask_gateway(gateway)
            checks.append(leaktest.gateway_check(gateway, answer,
                                                 [str(a) for a in inputs.local_addresses]))
        lan = inputs.lan_subnets if flags.allow_lan_access else ()
        try:
            leaked, carried = await loop.run_in_executor(
                self._executor, leaktest.count_leaks, inputs.uplinks, inputs.port, lan)
            checks.append(leaktest.leak_check(leaked, carried, inputs.uplinks,
                                              leaktest.COUNT_FOR_S))  # fmt: skip
        except NftError as exc:
            checks.append(leaktest.Check("leaks", False, f"not counted: {exc}"))
        return checks

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
        routing = [NetworkRouting(c, d, self.flags_for(c.id)) for c, d in networks]
        return full_tunnel_gateways(routing, self.own_address)

    def update(self, inputs: RoutingInputs, force: bool = False) -> None:
        if self._stopped:
            return  # everything was removed; nothing may come back during shutdown
        now = asyncio.get_running_loop().time()
        self._live_since = {m: self._live_since.get(m, now) for m in inputs.live_members}
        self._failback_due = min((since + FAILBACK_S for since in self._live_since.values()
                                  if since + FAILBACK_S > now), default=math.inf)  # fmt: skip
        self._wanted = (inputs, self.networks_applied)
        self._last_inputs = inputs
        self._force |= force
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    # --- captive portals --------------------------------------------------------------------

    def open_portal(self, seconds: float) -> None:
        """A login window: for ``seconds`` no full tunnel (nor kill switch), so the user can
        log in to a captive portal directly; then both come back by themselves. 0 closes it."""
        now = asyncio.get_running_loop().time()
        self.portal_open_until = now + seconds if seconds > 0 else -math.inf
        log.warning("captive portal: %s", f"direct traffic allowed for {seconds:.0f} s, then "
                    "the full tunnel comes back" if seconds > 0 else "login window closed")
        if self._last_inputs is not None:
            self.update(self._last_inputs, force=True)

    def portal_document(self) -> dict:
        now = _loop_time()
        left = max(0.0, self.portal_open_until - now)
        url = self.settings.captive_portal
        return {"probeUrl": url.text if url else "", "detected": dict(self.portals),
                "loginWindowSecondsLeft": round(left)}

    def _portal_status(self, network_id: str) -> str:
        """What a network's status says of captive portals ("" if nothing)."""
        document = self.portal_document()
        if document["loginWindowSecondsLeft"]:
            return (f"login window open: direct traffic allowed for "
                    f"{document['loginWindowSecondsLeft']} s more, then the full tunnel "
                    "comes back")  # fmt: skip
        if not self.flags_for(network_id).allow_default or not self.portals:
            return ""
        return "; ".join(f"captive portal on {uplink}: {detail}"
                         for uplink, detail in sorted(self.portals.items()))

    def _portal_open(self) -> bool:
        return _loop_time() < self.portal_open_until

    def _probe_portals(self, inputs: RoutingInputs) -> None:
        """When a full tunnel is wanted and its gateway cannot be reached: each uplink is
        probed once per network it is on (a change of addresses probes again)."""
        url = self.settings.captive_portal
        stranded = any(state in (TUNNEL_WITHDRAWN, TUNNEL_HELD)
                       for state in self.plan.full_tunnel.values())  # fmt: skip
        if not stranded:
            self.portals.clear()
            self._probed.clear()
            return
        if url is None or (self._probing is not None and not self._probing.done()):
            return
        key = frozenset(inputs.local_addresses)
        due = [u for u in inputs.uplinks if self._probed.get(u) != key]
        if not due:
            return
        for uplink in due:
            self._probed[uplink] = key
        self._probing = asyncio.get_running_loop().create_task(self._probe(url, due))

    async def _probe(self, url, uplinks: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for uplink in uplinks:
            result = await loop.run_in_executor(None, portal.probe, url, uplink)
            detail = portal.portal_detail(result)
            if detail is None:
                self.portals.pop(uplink, None)
                continue
            if self.portals.get(uplink) != detail:
                log.warning("captive portal on %s: %s; `oneservice-cli portal open` lets "
                            "direct traffic through to log in", uplink, detail)  # fmt: skip
            self.portals[uplink] = detail

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted is not None:
            (inputs, networks_known), self._wanted = self._wanted, None
            force, self._force = self._force, False
            routing = [NetworkRouting(c, d, self.flags_for(c.id)) for c, d in inputs.networks]
            if self._portal_open():  # a login window: no full tunnel (nor kill switch) now
                routing = [dataclasses.replace(n, flags=dataclasses.replace(
                    n.flags, allow_default=False)) for n in routing]
            elif self.portal_open_until > -math.inf:
                self.portal_open_until = -math.inf  # over: this plan brings the tunnel back
                log.warning("captive portal: login window over, the full tunnel is back")
            now = loop.time()
            plan = plan_routing(
                routing, self.own_address, inputs.live_members, inputs.local_addresses,
                inputs.lan_subnets, self.settings.full_tunnel_fail_closed,
                previous=self.plan.gateways, live_since=self._live_since, now=now,
            )  # fmt: skip
            exit_plan = plan_exit_node(routing, self.own_address, self.settings.allow_exit_node,
                                       inputs.lan_subnets, self.settings.allow_exit_node_lan)
            if self._kernel is None or self._exit is None:
                if plan.gateways != self.plan.gateways:
                    self._on_gateways(plan.gateways)
                self.plan, self.exit_plan = plan, exit_plan
                continue
            # self.plan (what the API shows) changes only once the kernel has it: a client
            # that sees "fullTunnel": "on" may rely on the routes being there.
            applied = self._applied
            # Loosened before the halves go in, restored only after they are gone: with strict
            # reverse-path filtering and the halves in place, the gateway's answers arriving on
            # the uplink would be dropped, and the path declared dead, in between.
            halves = catches_everything(plan.rules, plan.routes, 4)
            if halves:
                await self._apply_rp_filter(inputs.uplinks)
            if (
                force
                or applied is None
                or (applied.routes, applied.rules) != (plan.routes, plan.rules)
            ):
                try:
                    errors = await loop.run_in_executor(
                        self._executor, self._kernel.apply, plan.routes, plan.rules
                    )
                except Exception as exc:  # netlink itself failed: retried at the next update
                    errors = [f"cannot read or change the routing tables: {exc}"]
                if errors != self.errors:
                    for error in errors:
                        log.warning("routes: %s", error)
                self.errors = errors
                self._applied = plan if not errors else None
                _log_tunnels(applied, plan)
            if plan.gateways != self.plan.gateways:
                self._on_gateways(plan.gateways)
            self.plan = plan
            self.splits = {n.config.id: n.flags.split() for n in routing}
            self.overrides = await loop.run_in_executor(
                self._executor, self._find_overrides, routing, plan
            )
            if networks_known:
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
            self._probe_portals(inputs)

    def _find_overrides(self, routing: list[NetworkRouting], plan: RoutingPlan) -> dict:
        """Ask the kernel where sample addresses go: another VPN's more specific routes or
        rules may take the traffic our installed tunnel routes are meant for. In the worker."""
        found = {}
        for network in routing:
            network_id = network.config.id
            state = plan.full_tunnel.get(network_id)
            if self._kernel is None or state not in (TUNNEL_ON, TUNNEL_HELD):
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
                    routed = self._kernel.route_devices(catch_all_samples(family))
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
            if self.overrides.get(network_id) != reason:
                log.warning("network %s: %s", network_id, reason)
        return found

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

    def _dns_status(self, network_id: str) -> str:
        flags = self.flags_for(network_id)
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


def _loop_time() -> float:
    """The event loop's clock (monotonic), also when asked from outside the loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def _kill_switch_document(switch: KillSwitch | None) -> dict:
    if switch is None:
        return {"armed": False}
    return {"armed": True, "devices": list(switch.devices), "port": switch.port,
            "lan": [str(n) for n in switch.lan],
            "directPorts": [str(p) for p in switch.direct_ports],
            "heldPortsOnly": [str(p) for p in switch.only_ports]}  # fmt: skip



def _log_tunnels(before: RoutingPlan | None, after: RoutingPlan) -> None:
    for network_id, state in after.full_tunnel.items():
        if before is None or before.full_tunnel.get(network_id) != state:
            log.info("network %s: full tunnel %s", network_id, state)
