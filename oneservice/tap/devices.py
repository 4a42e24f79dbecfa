"""The TUN lifecycle: one device per joined network, made when the network is configured,
rebuilt when what it is made of changes (MTU, our addresses, offloads), closed when the
network goes. A device that cannot be made takes down its network alone (PORT_ERROR)."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable

from ..network.config import NetworkConfig
from ..offload import SuperPacket
from . import TapError, tap_name

log = logging.getLogger("oneservice")

# network id, and (packet, hint)s or a SuperPacket (tap/linux.py's Read)
PacketHandler = Callable[[str, list[tuple[bytes, int]] | SuperPacket], None]


class Devices:
    def __init__(self, own_address: str, on_packets: PacketHandler) -> None:
        self._own_address = own_address
        self._on_packets = on_packets
        self.taps: dict = {}  # network id -> TunDevice
        # Network id -> what its device was made of (_made_of); the configs themselves are
        # the network registry's (network/registry.py).
        self._made: dict[str, tuple] = {}
        # Networks whose device could not be created: the errno (their status is PORT_ERROR),
        # and what the error said (what to do about it).
        self.errors: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.applied = False  # whether the node's networks were applied once (routing asks)

    async def apply(self, wanted: dict[str, NetworkConfig], offload: bool) -> None:
        """Make the devices match ``wanted`` (network id -> config); not re-entrant."""
        for network_id in list(self.taps):
            config = wanted.get(network_id)
            if (
                config is None
                or self._made_of(config) != self._made.get(network_id)
                or self.taps[network_id].offload != offload
            ):
                self.taps.pop(network_id).close()
                self._made.pop(network_id, None)
                log.info("network %s: device removed", network_id)
        for network_id in set(self.errors) - set(wanted):
            del self.errors[network_id]
            self.reasons.pop(network_id, None)
        for network_id, config in wanted.items():
            if network_id not in self.taps and not await self._open(config, offload):
                continue
            self._made[network_id] = self._made_of(config)
        self.applied = True

    def close_all(self) -> None:
        for tap in self.taps.values():
            tap.close()  # non-persistent: the kernel removes the device and its routes
        self.taps.clear()
        self._made.clear()

    def _made_of(self, config: NetworkConfig) -> tuple:
        """What a device is made of: when these change, it is rebuilt."""
        own = config.member(self._own_address)
        return (config.mtu, own.addresses if own else ())

    async def _open(self, network: NetworkConfig, offload: bool) -> bool:
        """False if the device could not be made: that network alone is PORT_ERROR (the
        errno in its status), the others carry on; tried again at the next apply."""
        from .linux import TunDevice

        own = network.member(self._own_address)
        assert own is not None
        try:
            tap = TunDevice(tap_name(network.id), offload=offload)
        except TapError as exc:
            return self._failed(network.id, exc)
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, tap.configure, network.mtu, own.addresses
            )
        except TapError as exc:
            tap.close()
            return self._failed(network.id, exc)
        except Exception:
            tap.close()
            raise
        self.errors.pop(network.id, None)
        self.reasons.pop(network.id, None)
        self.taps[network.id] = tap
        network_id, deliver = network.id, self._on_packets
        tap.start_reading(lambda packets: deliver(network_id, packets))
        log.info(
            "network %s (%s): device %s, mtu %d, addresses %s",
            network.id, network.name, tap.name, network.mtu,
            ", ".join(str(a) for a in own.addresses) or "none",
        )  # fmt: skip
        return True

    def _failed(self, network_id: str, exc: TapError) -> bool:
        cause = exc.__cause__
        errno_ = getattr(cause, "errno", None) or errno.EIO
        if self.errors.get(network_id) != errno_:
            log.error("network %s: %s", network_id, exc)
        self.errors[network_id] = errno_
        self.reasons[network_id] = str(exc)
        return False
