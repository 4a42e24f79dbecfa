"""Linux TUN devices: created non-persistent, so if the process dies the kernel removes the
device and every route through it (nothing is left to clean up after a crash)."""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable

from . import TapError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFA_F_NODAD = 0x02
# Reads per wake-up: drains a burst without starving the UDP side of the loop.
MAX_READS_PER_WAKEUP = 64
MAX_PACKET_BYTES = 65535


class TunDevice:
    def __init__(self, name: str) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise TapError(
                f"cannot open /dev/net/tun ({exc.strerror}): load the tun module and run as root"
            ) from exc
        try:
            result = fcntl.ioctl(
                fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
            )
        except OSError as exc:
            os.close(fd)
            raise TapError(f"cannot create TUN device {name}: {exc.strerror}") from exc
        self.fd = fd
        self.name = result[:16].rstrip(b"\0").decode()
        self.index = socket.if_nametoindex(self.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.write_errors = 0

    def configure(
        self, mtu: int, addresses: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    ) -> None:
        """Set MTU and addresses and bring the device up (blocking: netlink round trips)."""
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                ipr.link("set", index=self.index, mtu=mtu)
                for interface in addresses:
                    ipr.addr(
                        "add", index=self.index, address=str(interface.ip),
                        prefixlen=interface.network.prefixlen,
                        **({"flags": IFA_F_NODAD} if interface.version == 6 else {}),
                    )  # fmt: skip
                ipr.link("set", index=self.index, state="up")
        except Exception as exc:
            raise TapError(f"cannot configure {self.name}: {exc}") from exc

    def start_reading(self, on_packet: Callable[[bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._read, on_packet)

    def _read(self, on_packet: Callable[[bytes], None]) -> None:
        read, fd = os.read, self.fd
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                packet = read(fd, MAX_PACKET_BYTES)
            except BlockingIOError:
                return
            except OSError:
                return
            on_packet(packet)

    def write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
        except OSError:
            # Full queue or a packet the kernel refuses: counted, never raised into the core.
            self.write_errors += 1

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
