"""Wires the components together and owns the lifecycle: start, run until told, stop cleanly.

Like aioquic's asyncio adapter, this only moves bytes and time between the event loop and the
sans-I/O core: binder datagrams and tap packets in, datagrams and packets out, one timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

from . import __version__
from .binder import platform_backend
from .binder.binder import (
    AddressChanged,
    Binder,
    BinderEvent,
    InterfaceDown,
    InterfaceUp,
    LocalSocket,
    RoutesChanged,
)
from .binder.interfaces import BindPolicy
from .identity import load_or_create_identity
from .network.config import NetworkConfig, load_network_files
from .node.core import NodeCore, PathChanged, PeerConnected
from .settings import Settings
from .tap import tap_name

log = logging.getLogger("oneservice")


class Service:
    def __init__(self, home: Path, settings: Settings) -> None:
        self.home = home
        self.settings = settings
        self.identity = load_or_create_identity(home)
        self.networks = load_network_files(home)
        self.loop = asyncio.get_running_loop()
        self.core = NodeCore(self.identity, now=self.loop.time(), wall_time=time.time())
        self.taps: dict = {}
        self.binder = Binder(
            port=settings.primary_port,
            policy=self._bind_policy(),
            backend=platform_backend(),
            on_datagram=self._on_datagram,
        )
        self.binder.subscribe(self._on_binder_event)
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None

    def _bind_policy(self) -> BindPolicy:
        base = BindPolicy.from_settings(
            extra_prefixes=self.settings.interface_prefix_blacklist,
            allowlist=self.settings.interface_allowlist,
            virtual_subnets=[s for n in self.networks for s in n.subnets()],
        )
        return BindPolicy(
            prefix_blacklist=base.prefix_blacklist,
            allowlist=base.allowlist,
            virtual_subnets=base.virtual_subnets,
            own_tap_indexes=frozenset(tap.index for tap in self.taps.values()),
            own_tap_names=frozenset(tap.name for tap in self.taps.values()),
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        log.info("oneservice %s, node %s, home %s", __version__, self.identity.address, self.home)
        joined = []
        for network in self.networks:
            if await self._open_tap(network):
                joined.append(network)
        self.binder.set_policy(self._bind_policy())
        await self.binder.start()
        self.core.set_networks(joined, self.loop.time())
        self._log_binder_state()
        self._on_timer()

    async def _open_tap(self, network: NetworkConfig) -> bool:
        own = network.member(self.identity.address)
        if own is None:
            log.warning(
                "network %s does not list this node (%s): not joined",
                network.id, self.identity.address,
            )  # fmt: skip
            return False
        from .tap.linux import TunDevice

        tap = TunDevice(tap_name(network.id))
        try:
            await self.loop.run_in_executor(None, tap.configure, network.mtu, own.addresses)
        except Exception:
            tap.close()
            raise
        self.taps[network.id] = tap
        network_id = network.id
        tap.start_reading(lambda packet: self._on_tap_packet(network_id, packet))
        log.info(
            "network %s (%s): device %s, mtu %d, addresses %s",
            network.id, network.name, tap.name, network.mtu,
            ", ".join(str(a) for a in own.addresses) or "none",
        )  # fmt: skip
        return True

    def _log_binder_state(self) -> None:
        state = self.binder.state()
        log.info("UDP port %d", state["port"])
        for entry in state["bound"]:
            log.info(
                "  bound   %-15s index %-3d %s %s",
                entry["interface"], entry["index"], entry["family"], entry["address"],
            )  # fmt: skip
        for entry in state["skipped"]:
            family = f" {entry['family']}" if entry["family"] else ""
            log.info(
                "  skipped %-15s index %-3d%s: %s",
                entry["interface"], entry["index"], family, entry["reason"],
            )  # fmt: skip
        log.info("oneservice started")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.binder.stop()
        log.info(
            "datagrams received %d: accepted %d, dropped %s; packets dropped %s",
            self.binder.counters["datagrams_received"], self.core.accepted,
            json.dumps(dict(sorted(self.core.drops.items()))),
            json.dumps(dict(sorted(self.core.packet_drops.items()))),
        )  # fmt: skip
        for tap in self.taps.values():
            tap.close()  # non-persistent: the kernel removes the device and its routes
        self.taps.clear()
        log.info("oneservice stopped")

    # --- moving bytes and time -------------------------------------------------------------------

    def _on_datagram(self, data: bytes, local: LocalSocket, address: tuple) -> None:
        self.core.receive_datagram(data, local.id, address, self.loop.time())
        self._schedule_flush()

    def _on_tap_packet(self, network_id: str, packet: bytes) -> None:
        self.core.send_packet(network_id, packet, self.loop.time())
        self._schedule_flush()

    def _on_binder_event(self, event: BinderEvent) -> None:
        now = self.loop.time()
        if isinstance(event, InterfaceUp):
            self.core.socket_up(event.socket.id, event.socket.family, now)
        elif isinstance(event, InterfaceDown):
            self.core.socket_down(event.socket.id, now)
        elif isinstance(event, AddressChanged):
            self.core.socket_readdressed(event.socket.id, now)
        elif isinstance(event, RoutesChanged):
            self.core.routes_changed(now)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # One flush per loop iteration, after every reader that woke has been served.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        send = self.binder.send
        for socket_id, endpoint, datagram in self.core.datagrams_to_send():
            send(socket_id, datagram, endpoint)
        taps = self.taps
        for network_id, packet in self.core.packets_for_tap():
            tap = taps.get(network_id)
            if tap is not None:
                tap.write(packet)
        while (event := self.core.next_event()) is not None:
            if isinstance(event, PeerConnected):
                log.info("peer %s: session established", event.address)
            elif isinstance(event, PathChanged):
                where = (
                    f"socket {event.socket_id} -> {event.endpoint[0]}/{event.endpoint[1]}"
                    if event.endpoint else "no working path"
                )  # fmt: skip
                log.info("peer %s: now via %s", event.address, where)

    def _on_timer(self) -> None:
        self.core.handle_timer(self.loop.time())
        self._flush()
        self._timer = self.loop.call_at(self.core.next_timer(), self._on_timer)


async def run_until_signalled(home: Path, settings: Settings) -> None:
    """Run the service until SIGINT or SIGTERM, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = Service(home, settings)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    try:
        await stop.wait()
    finally:
        await service.stop()
