"""Wires the components together and owns the lifecycle: start, run until told, stop cleanly.

Like aioquic's asyncio adapter, this mostly moves bytes and time between the event loop and
the sans-I/O core: binder datagrams and tap packets in, datagrams and packets out, one timer.
It also carries control messages between the core and the control plane (control.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import __version__, memory, native
from .authtoken import load_or_create_tokens
from .binder import platform_backend
from .binder.binder import (
    AddressChanged,
    Binder,
    BinderEvent,
    InterfaceDown,
    InterfaceUp,
    Reconciled,
    log_table,
)
from .binder.interfaces import BindPolicy
from .control import ControllerReply, ControlPlane, answer_question, pushes
from .controller import CONTROLLER_DB_FILE
from .controller.calls import open_controller
from .controller.errors import StoreError
from .controller.thread import ControllerThread
from .guard import Failures, guarded
from .identity import Identity, load_or_create_identity
from .messages import ConfigAnswer, ConfigDelta
from .monitor import ChangeMonitor, open_change_monitor
from .monitor.changes import Change, others_routing_changed, own_routing_removed
from .network.config import HandWritten, parse_endpoint
from .network.registry import NetworkRegistry
from .node.core import ControlReceived, NodeCore, PathChanged, PeerConnected
from .node.events import NodeEvent, PeerView, SeenFromOutside, SparesDone, SparesWanted
from .notify import notify
from .portfeed import PortMapFeed
from .pump import CorePump
from .routefeed import RoutingFeed
from .routing.manager import RoutingManager
from .settings import Settings, SettingsError, load_local_conf, reloaded_settings
from .sparefeed import SpareFeed
from .tap.devices import Devices
from .uplinks import UplinkTable
from .whoami import AddressQueries

log = logging.getLogger("oneservice")
T = TypeVar("T")
# How often freed heap memory is returned to the system (memory.give_back: under a
# millisecond each time).
GIVE_BACK_INTERVAL_S = 30.0


class Service:
    def __init__(self, home: Path, settings: Settings, identity: Identity | None = None,
                 network_files: HandWritten | None = None) -> None:  # fmt: skip
        self.home = home
        self.settings = settings
        # Every file of the home is read before anything touches the kernel (the identity and
        # hand-written networks maybe first, by __main__): a damaged node-wide file stops the
        # start (exit 2); a damaged per-network file takes down that network only.
        self.identity = identity or load_or_create_identity(home)
        self.networks = NetworkRegistry(home, network_files)
        self.networks.judge_flags_with(lambda network_id: self.routing.flags.error(network_id))
        self.loop = asyncio.get_running_loop()
        self.started_at = time.time()
        uplinks = UplinkTable()  # our sockets: the binder writes it, the core reads it
        self.core = NodeCore(self.identity, now=self.loop.time(), wall_time=time.time(),
                             relay=settings.relay, uplinks=uplinks)  # fmt: skip
        # Exceptions in what the loop runs for us (timer rounds, flushes, background tasks):
        # logged with their traceback and counted here (GET /status counters).
        self.failures = Failures()
        self.pump = CorePump(
            self.loop, self.core, self.failures,
            send_many=lambda socket_id, batch, endpoint: self.binder.send_many(
                socket_id, batch, endpoint),
            tap_of=lambda network_id: self.devices.taps.get(network_id),
            on_event=self._on_core_event, after_flush=self._after_flush,
            deadline=self._next_deadline, on_round=self._timer_round,
        )  # fmt: skip
        self.address_queries = AddressQueries(self.core, self.pump)  # the leak test's whoami
        self.control = ControlPlane(self.identity, self.networks.memberships,
                                    self.core.peer_endpoints, lambda: self.binder.endpoints(),
                                    lambda: self.controller.opened)  # fmt: skip
        self.controller = ControllerThread(lambda: open_controller(
            home, settings.controller_database, self.identity, self._hear_controller_change))
        if (home / CONTROLLER_DB_FILE).exists() or settings.controller_database:
            self.controller.open_now()
        self._tell_core_roles()
        self.routing = RoutingManager(home, lambda: self.settings, self.identity.address,
                                      on_gateways=self.core.set_gateways,
                                      on_exit=self.core.set_exit_networks)  # fmt: skip
        self.routing.check_state_files()
        for network_id in self.networks.ids():
            self.routing.flags.error(network_id)  # read now: a damaged one is logged at start
        self.api_token, self.metrics_token = load_or_create_tokens(home)
        self.devices = Devices(self.identity.address, self.pump.on_tap_packets)
        self.binder = Binder(
            port=settings.primary_port,
            policy=self._bind_policy(),
            backend=platform_backend(),
            on_datagram=self.pump.on_datagrams,
            table=uplinks, uplink_metrics=dict(settings.uplink_metrics),
        )
        self.binder.subscribe(self._on_binder_event)
        self.port_map = PortMapFeed(self.binder, self.core, settings.port_mapping, self.loop.time,
                                    self.pump.schedule_flush, self.pump.rearm)  # fmt: skip
        self.spares = SpareFeed(self.binder, self.core, self.routing.kill_switch_up,
                                self.loop.time)  # fmt: skip
        self.routes = RoutingFeed(self.identity.address, self.routing, self.core, self.binder,
                                  self.networks, self.devices, self.loop.time,
                                  self.pump.schedule_flush)  # fmt: skip
        self.monitor: ChangeMonitor | None = None  # opened at start (needs the running loop)
        self._next_give_back = 0.0  # (the first timer round gives back what start freed)
        self._apply_lock = asyncio.Lock()
        # A burst of changes waiting for the binder's re-read (_on_changes).
        self._burst_routes_changed = self._burst_force = False
        self._background: set[asyncio.Task] = set()
        self.api = None

    def _bind_policy(self) -> BindPolicy:
        return BindPolicy.from_settings(
            extra_prefixes=self.settings.interface_prefix_blacklist,
            allowlist=self.settings.interface_allowlist,
            virtual_subnets=[s for n in self.networks.active() for s in n.subnets()],
            own_taps=[(tap.index, tap.name) for tap in self.devices.taps.values()],
        )

    def _hear_controller_change(self, network_id: str) -> None:
        """From the store's listener thread: another controller changed a network. Its
        members get the change from us too: whichever controller a member talks to."""
        self.loop.call_soon_threadsafe(self.push_config, network_id)

    async def controller_call(self, function: Callable[..., T], *args: Any,
                              create: bool = False) -> T:  # fmt: skip
        """``function(controller, *args)`` on the controller's thread; ``create``: this node
        becomes a controller if it is not one yet."""
        try:
            return await self.controller.call(function, *args, create=create)
        finally:
            self._tell_core_roles()  # (it may be a controller from now on)

    def _tell_core_roles(self) -> None:  # a root or a controller meets strangers
        self.core.set_roles(relay=self.settings.relay,
                            meets_strangers=self.settings.relay or self.controller.opened)

    def _ask_controller(self, function: Callable[..., ControllerReply], *args: Any) -> None:
        """A reply from the controller's thread, handed to the control plane when it comes."""
        future = asyncio.wrap_future(self.controller.submit(function, *args), loop=self.loop)
        future.add_done_callback(functools.partial(self._controller_replied,
                                                   function is answer_question))  # fmt: skip

    @guarded
    def _controller_replied(self, answers_question: bool, future: asyncio.Future) -> None:
        reply = None
        try:
            reply = None if future.cancelled() else future.result()
        except StoreError as exc:  # e.g. the PostgreSQL server went away: asked again later
            log.warning("controller database: %s; a member's request was not answered", exc)
        finally:
            self.control.replied(reply, self.loop.time(), time.time(), answers_question)
        self.pump.schedule_flush()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        log.info("oneservice %s, node %s, home %s", __version__, self.identity.address, self.home)
        log.info("data path: %s", native.DESCRIPTION)
        await self.routing.remove_leftovers()
        # Opened before the binder's first read: nothing that changes after it is missed.
        self.monitor = open_change_monitor()
        self.monitor.subscribe(self._on_changes)  # which tells the binder first
        await self.binder.start()
        self._tell_core_uplinks()
        self.port_map.uplinks_changed()
        self.core.set_roots(self._root_identities(), self.loop.time())
        await self.apply_networks()
        from .api import start_api

        self.api = await start_api(self)
        log_table(self.binder.state())
        log.info("oneservice started")
        self.pump.start()
        notify(f"READY=1\nSTATUS=node {self.identity.address}, port {self.binder.port}")

    def reload(self) -> None:
        """SIGHUP: read local.conf again and apply what can change while running. A broken
        file changes nothing (the error is logged); the port needs a restart."""
        notify("RELOADING=1")
        try:
            settings = load_local_conf(self.home)
        except SettingsError as exc:
            log.error("reload: %s; keeping the running settings", exc)
            notify("READY=1")
            return
        settings, warnings = reloaded_settings(self.settings, settings)
        for warning in warnings:
            log.warning("reload: %s", warning)
        offload_changed = settings.tun_offload != self.settings.tun_offload
        self.settings = settings
        self._tell_core_roles()
        self.core.set_roots(self._root_identities(), self.loop.time())
        self.binder.set_policy(self._bind_policy())
        self.binder.set_uplink_metrics(dict(settings.uplink_metrics))
        self.port_map.set_enabled(settings.port_mapping)
        self._tell_core_uplinks()
        self.routes.ask()
        if offload_changed:
            self._schedule_apply()  # the devices are rebuilt with or without offloads
        self.pump.schedule_flush()
        log.info("reloaded %s", self.home / "local.conf")
        notify("READY=1")

    def _root_identities(self) -> list:
        return [(Identity.parse(text), [parse_endpoint(e, "root") for e in endpoints])
                for text, endpoints in self.settings.roots]  # fmt: skip

    async def stop(self, keep_kill_switch: bool = False) -> None:
        """A clean stop removes everything of ours; a start that failed keeps the kill
        switch (if one was armed): no clean stop was asked for."""
        notify("STOPPING=1")
        self.pump.stop()
        self.core.say_goodbye(self.loop.time())
        self.pump.flush()
        if self.api is not None:
            await self.api.close()
        for task in list(self._background):
            task.cancel()
        await self.port_map.mapper.stop()  # (before routing: a kill switch may hold the LAN)
        await self.routing.stop(keep_kill_switch)
        if self.monitor is not None:
            self.monitor.close()
        await self.binder.stop()
        self.devices.close_all()
        await asyncio.to_thread(self.controller.close)
        counters = self.counters()
        log.info(
            "datagrams received %d: accepted %d, dropped %s; packets dropped %s",
            counters["datagramsReceived"], counters["datagramsAccepted"],
            json.dumps(counters["datagramDrops"]), json.dumps(counters["packetDrops"]),
        )  # fmt: skip
        log.info("oneservice stopped")

    def counters(self) -> dict:
        """What arrived and what was dropped, by reason (docs/PROTOCOL.md names each): shown
        by the API while running and logged at stop."""
        return {
            "datagramsReceived": self.binder.counters["datagrams_received"],
            **self.core.counters(),
            "callbackFailures": self.failures.count,
            "sendErrors": dict(sorted(self.binder.send_errors_by_errno.items())),
            "gsoSplits": self.binder.counters["gso_split"],
            "controllerBusyDrops": self.control.busy_drops,
        }

    # --- networks ----------------------------------------------------------------------------

    async def apply_networks(self) -> None:
        """Make taps and the core match the active networks (serialized: configs can arrive
        while a tap is being configured)."""
        async with self._apply_lock:
            wanted = {n.id: n for n in self.networks.active() if n.member(self.identity.address)}
            await self.devices.apply(wanted, self.settings.tun_offload)
            self.core.set_networks(list(wanted.values()), self.loop.time())
            self.binder.set_policy(self._bind_policy())
            self.routes.ask()
            self.pump.schedule_flush()

    async def leaktest(self, network_id: str | None) -> dict:
        """`oneservice-cli leaktest`: the checks of routing/leaktest.py, PASS or FAIL each."""
        return await self.routes.leak_test(network_id, self.address_queries.ask)

    def open_portal(self, seconds: float) -> None:
        """A login window for a captive portal (routing/portal.py); its end is a deadline of
        the one timer."""
        self.routing.open_portal(seconds)
        self.routes.ask(force=True)
        self.pump.rearm()

    def set_network_flags(self, network_id: str, changes: dict) -> None:
        """FlagsError if a change is wrong (nothing changed then); applied at once."""
        self.routing.flags.set(network_id, changes)
        self.routes.ask()

    def _schedule_apply(self) -> None:
        task = self.loop.create_task(self.apply_networks())
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        """A background task's failure is logged with its traceback and counted, not lost."""
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.record("background task failed", task.exception())

    def join(self, network_id: str) -> None:
        """WriteFailed if the network's file cannot be written (then it is not joined)."""
        self.control.join(network_id, self.loop.time(), time.time())
        self.pump.schedule_flush()

    async def leave(self, network_id: str) -> bool:
        left = self.networks.memberships.leave(network_id)
        if left:
            self.routing.flags.forget(network_id)
            await self.apply_networks()
        return left

    def push_config(self, network_id: str, also: list[str] | tuple = ()) -> None:
        """After an admin change: every member that asked recently gets its answer now (and
        ``also`` those just removed, so they learn they are out)."""
        if self.controller.opened:
            self._ask_controller(pushes, network_id, time.time(), also)

    def _after_flush(self) -> None:
        self._drain_control()
        self.routes.plan_if_asked()

    def _drain_control(self) -> None:
        """What the control plane wants done: messages sent, configs checked off the event
        loop, devices and routes rebuilt."""
        work, now = self.control.take_work(), self.loop.time()
        for identity, endpoints in work.contacts:
            self.core.reach(identity, endpoints, now)
        for address, message in work.outbox:
            self.core.send_control(address, message, now)
        for question in work.questions:
            self._ask_controller(answer_question, question)
        for message, sender in work.checks:
            future = self.pump.in_worker(self.networks.memberships.checker(message, sender))
            future.add_done_callback(functools.partial(self._config_checked, message, sender))
        if work.networks_changed:
            self._schedule_apply()

    @guarded
    def _config_checked(self, message: ConfigAnswer | ConfigDelta, sender: Identity,
                        future: asyncio.Future) -> None:  # fmt: skip
        if not future.cancelled():
            self.control.config_checked(message, sender, future.result())
            self.pump.schedule_flush()

    # --- moving bytes and time -------------------------------------------------------------------

    def _tell_core_uplinks(self) -> None:
        """The uplinks' addresses (never a peer's endpoint) and which uplink to prefer."""
        now = self.loop.time()
        self.core.set_own_addresses([a.address for u in self.binder.uplinks for a in u.addresses],
                                    now, self.binder.port)  # fmt: skip
        self.core.uplinks_ranked(now)

    # --- what the API sees (api.NodeView) -----------------------------------------------------

    @property
    def port(self) -> int:
        return self.binder.port

    def now(self) -> float:
        return self.loop.time()

    def online(self) -> bool:
        return any(p.current is not None for p in self.core.peers.values())

    def peer_views(self) -> list[PeerView]:
        return self.core.peer_views(self.loop.time())

    def binder_state(self) -> dict:
        return self.binder.state()

    def tap(self, network_id: str) -> Any:
        return self.devices.taps.get(network_id)

    def port_error(self, network_id: str) -> int:
        return self.devices.errors.get(network_id, 0)

    def port_errors(self) -> dict[str, str]:
        """Networks whose device could not be made, and why (what to do)."""
        return dict(self.devices.reasons)

    def uplink_ranks(self) -> dict[int, int]:
        return dict(self.binder.table.ranks)

    @guarded
    def _on_changes(self, changes: tuple[Change, ...]) -> None:
        """A burst from the change monitor (the one subscriber). The binder hears of it first;
        the core and routing react once the binder's view is current: at its Reconciled, or
        at once if the burst cannot have changed the interfaces."""
        others = others_routing_changed(changes)
        self._burst_routes_changed |= others
        # The kernel is compared with the plan again, not just the plan: one of ours may be
        # gone (put back), or another program's routes may beat ours (said so).
        self._burst_force |= others or own_routing_removed(changes)
        if not self.binder.on_changes(changes):
            self._burst_done(binder_changed=False)

    def _burst_done(self, binder_changed: bool) -> None:
        others, force = self._burst_routes_changed, self._burst_force
        self._burst_routes_changed = self._burst_force = False
        if others:
            # Paths may now fail one way only: only answered probes count as proof.
            self.core.routes_changed(self.loop.time())
        if binder_changed or force:
            self.routes.ask(force)  # uplinks, LAN subnets or the kernel's routes moved
        self.pump.schedule_flush()

    @guarded
    def _on_binder_event(self, event: BinderEvent) -> None:
        now = self.loop.time()
        if isinstance(event, Reconciled):
            if event.changed:
                self._tell_core_uplinks()  # addresses or default routes may have changed
                self.port_map.uplinks_changed()
            self._burst_done(event.changed)
            return
        self._tell_core_uplinks()  # our own addresses, before the socket's paths are made
        if isinstance(event, InterfaceUp):
            self.core.socket_up(event.socket.id, now)
        elif isinstance(event, InterfaceDown):
            self.core.socket_down(event.socket.id, now)
        elif isinstance(event, AddressChanged):
            self.core.socket_readdressed(event.socket.id, now)
        self.pump.schedule_flush()

    def _on_core_event(self, event: NodeEvent) -> None:
        if self.address_queries.answered(event):
            return
        if isinstance(event, ControlReceived):
            peer = self.core.peers.get(event.address)
            if peer is not None:
                self.control.receive(event.address, event.message, peer.identity,
                                     self.loop.time(), time.time())  # fmt: skip
        elif isinstance(event, SeenFromOutside):
            self.port_map.uplinks_changed()  # (behind a NAT or not: ask its router or not)
        elif isinstance(event, PeerConnected):
            log.info("peer %s: session established", event.address)
            self.routes.ask()
        elif isinstance(event, PathChanged):
            log.info("peer %s: now via %s", event.address, event.where())
            self.routes.ask()
        elif isinstance(event, SparesWanted | SparesDone):  # birthday attempts' sockets
            self.spares.handle(event)

    def _next_deadline(self) -> float:
        """The service's part of the one timer (the core's is the pump's)."""
        return min(self.control.next_timer(), self.routes.deadline(),
                   self.port_map.mapper.deadline())  # fmt: skip

    def _timer_round(self, now: float) -> None:
        """What a timer round does besides the core's turn (pump.py)."""
        self.routes.check(now)
        self.port_map.mapper.check(now)
        self.control.handle_timer(now, time.time())
        if now >= self._next_give_back:
            self._next_give_back = now + GIVE_BACK_INTERVAL_S
            memory.give_back()


async def run_until_signalled(home: Path, settings: Settings, identity: Identity | None = None,
                              network_files: HandWritten | None = None) -> None:  # fmt: skip
    """Run the service until SIGINT or SIGTERM, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = Service(home, settings, identity, network_files)
    started = False
    # A SIGHUP during start must not kill the process (its default action); it is ignored then.
    loop.add_signal_handler(signal.SIGHUP, lambda: service.reload() if started else None)
    try:
        await service.start()
    except BaseException:
        await service.stop(keep_kill_switch=True)
        raise
    started = True
    try:
        await stop.wait()
    finally:
        await service.stop()
