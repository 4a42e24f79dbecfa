"""Linux TUN devices: created non-persistent, so if the process dies the kernel removes the
device and every route through it (nothing is left to clean up after a crash)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable

from ..offload import (
    VNET_HDR_LEN,
    OffloadError,
    SuperPacket,
    finish_checksum,
    read_frame,
    write_merged,
)
from . import TapError, tun_refused

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
IFA_F_NODAD = 0x02
# Reads per wake-up: drains a burst without starving the UDP side of the loop.
MAX_READS_PER_WAKEUP = 64
MAX_FRAME_BYTES = VNET_HDR_LEN + 65535

# What the core gets and gives: IP packets, each with its partial-checksum hint (offload.py).
Packets = list[tuple[bytes, int]]
# What a read gives: packets, or a TCP super-packet not cut yet (offload.read_frame).
Read = Packets | SuperPacket


class TunDevice:
    """With ``offload`` (the default), TCP comes and goes as 64 KiB super-packets with partial
    checksums (``IFF_VNET_HDR``, in Linux since 2.6.27). If the kernel refuses the offloads
    themselves, reads come packet by packet; merged writes still work."""

    def __init__(self, name: str, offload: bool = True) -> None:
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            # INVOCATION_ID: set by systemd for what it runs as a service.
            raise TapError(tun_refused(exc, os.geteuid(), "INVOCATION_ID" in os.environ)) from exc
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0)
        try:
            result = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        except OSError as exc:
            os.close(fd)
            raise TapError(f"cannot create TUN device {name}: {exc.strerror}") from exc
        # Whether the kernel hands us super-packets. If it refuses: headers on, offloads off;
        # frames still carry (empty) headers and merged writes need no permission.
        self.tso = False
        if offload:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
                self.tso = True
        self.fd = fd
        self.offload = offload
        # Frames are what crosses the device (a super-packet is one frame); packets are what
        # crosses the tunnel. More packets than frames means the offloads are working.
        self.frames_read = self.packets_read = self.frames_written = self.packets_written = 0
        self.offload_errors = 0
        self.name = result[:16].rstrip(b"\0").decode()
        self.index = socket.if_nametoindex(self.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.write_errors = 0

    def configure(
        self, mtu: int, addresses: Iterable[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    ) -> None:
        """Set MTU and addresses and bring the device up (blocking: netlink round trips)."""
        from ..rtnetlink import Rtnetlink

        try:
            with Rtnetlink() as rtnl:
                rtnl.set_link(self.index, mtu=mtu)
                for interface in addresses:
                    rtnl.add_address(self.index, str(interface.ip), interface.network.prefixlen,
                                     IFA_F_NODAD if interface.version == 6 else 0)  # fmt: skip
                rtnl.set_link(self.index, up=True)
        except Exception as exc:
            raise TapError(f"cannot configure {self.name}: {exc}") from exc

    def start_reading(self, on_packets: Callable[[Read], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._read, on_packets)

    def _read(self, on_packets: Callable[[Read], None]) -> None:
        read, fd = os.read, self.fd
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                frame = read(fd, MAX_FRAME_BYTES)
            except OSError:  # drained (BlockingIOError) or the device is going away
                return
            self.frames_read += 1
            if not self.offload:
                self.packets_read += 1
                on_packets([(frame, 0)])
                continue
            try:
                packets = read_frame(frame)
            except OffloadError:
                self.offload_errors += 1
                continue
            self.packets_read += packets.count if isinstance(packets, SuperPacket) else len(packets)
            on_packets(packets)

    def write_many(self, packets: Packets) -> None:
        """Packets from peers, in order; with offloads, runs of one TCP flow merged."""
        self.packets_written += len(packets)
        if self.offload:
            frames, failed = write_merged(self.fd, packets)
            self.frames_written += frames
            self.write_errors += failed
            return
        self.frames_written += len(packets)
        write, fd = os.write, self.fd
        for packet, hint in packets:
            try:
                write(fd, finish_checksum(packet, hint) if hint else packet)
            except OSError:
                # Full queue or a packet the kernel refuses: counted, never raised into the core.
                self.write_errors += 1

    def stats(self) -> dict[str, int | bool]:
        return {
            "offload": self.offload, "tso": self.tso, "framesRead": self.frames_read,
            "packetsRead": self.packets_read, "framesWritten": self.frames_written,
            "packetsWritten": self.packets_written, "writeErrors": self.write_errors,
            "offloadErrors": self.offload_errors,
        }  # fmt: skip

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
