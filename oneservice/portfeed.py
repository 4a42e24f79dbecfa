"""What the port mapper is told, and where its mappings go: the IPv4 uplinks with a default
gateway on which a root sees us behind a NAT (at an address not our own: only there can a
router's mapping help, and nothing is asked of a router that does not translate), read from
the binder and the core; each mapping is told to the core (which tells members of our
networks, so that they can reach us through a NAT that maps per destination)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from .binder.binder import Binder
from .node.core import NodeCore
from .portmap.mapper import PortMapper, Uplink


class PortMapFeed:
    def __init__(self, binder: Binder, core: NodeCore, enabled: bool,
                 clock: Callable[[], float], schedule_flush: Callable[[], None],
                 rearm: Callable[[], None]) -> None:  # fmt: skip
        self._binder = binder
        self._core = core
        self._clock = clock
        self._schedule_flush = schedule_flush
        self.mapper = PortMapper(lambda: binder.port, self._mapped, clock, enabled)
        self.mapper.on_due = rearm

    def uplinks_changed(self) -> None:
        self.mapper.update(self._uplinks())

    def set_enabled(self, enabled: bool) -> None:
        self.mapper.set_enabled(enabled, self._uplinks())

    def _uplinks(self) -> list[Uplink]:
        """Each IPv4 socket behind a NAT whose interface has a default route through an IPv4
        gateway."""
        interfaces = {i.index: i for i in self._binder.uplinks}
        found = []
        for local in self._binder.sockets():
            interface = interfaces.get(local.index)
            if (local.family != socket.AF_INET or interface is None
                    or not self._core.behind_nat(local.id)):  # fmt: skip
                continue
            addresses = [a.address for a in interface.addresses if a.family == socket.AF_INET]
            if interface.default_gateway and addresses:
                found.append(Uplink(local.id, local.interface, addresses[0],
                                    interface.default_gateway))  # fmt: skip
        return found

    def _mapped(self, socket_id: int, endpoint: str | None) -> None:
        self._core.set_port_mapping(socket_id, endpoint, self._clock())
        self._schedule_flush()
