"""Wires the components together and owns the lifecycle: start, run until told, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from . import __version__
from .binder import platform_backend
from .binder.binder import Binder, LocalSocket
from .binder.interfaces import BindPolicy
from .settings import Settings

log = logging.getLogger("oneservice")


class Service:
    def __init__(self, home: Path, settings: Settings) -> None:
        self.home = home
        self.settings = settings
        self.datagrams_unhandled = 0
        self.binder = Binder(
            port=settings.primary_port,
            policy=BindPolicy.from_settings(
                extra_prefixes=settings.interface_prefix_blacklist,
                allowlist=settings.interface_allowlist,
            ),
            backend=platform_backend(),
            on_datagram=self._on_datagram,
        )

    def _on_datagram(self, data: bytes, local: LocalSocket, address: tuple) -> None:
        # The peer core is not wired in yet: count, so nothing arrives unaccounted.
        self.datagrams_unhandled += 1

    async def start(self) -> None:
        await self.binder.start()
        state = self.binder.state()
        log.info(
            "oneservice %s started, home %s, UDP port %d", __version__, self.home, state["port"]
        )
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

    async def stop(self) -> None:
        await self.binder.stop()
        log.info("oneservice stopped")


async def run_until_signalled(home: Path, settings: Settings) -> None:
    """Run the service until SIGINT or SIGTERM, then stop it cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = Service(home, settings)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
