"""Interface enumeration with ifaddr, for systems without netlink (macOS, Windows)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any

from .interfaces import Interface, InterfaceAddress

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFNAMSIZ = 16


FlagsReader = Callable[[str], tuple[bool, bool, bool]]


def interfaces_from_adapters(
    adapters: Iterable[Any], read_flags: FlagsReader, name_of: Callable[[Any], str]
) -> list[Interface]:
    """Convert ifaddr adapters to Interfaces; ``read_flags(os_name)`` gives (up, running,
    loopback), ``name_of(adapter)`` the name users know the interface by."""
    interfaces = []
    for adapter in adapters:
        if adapter.index is None:
            continue  # cannot be pinned without an index
        addresses = []
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):  # IPv6: (address, flowinfo, scope_id)
                addresses.append(InterfaceAddress(socket.AF_INET6, ip.ip[0], ip.network_prefix))
            else:
                addresses.append(InterfaceAddress(socket.AF_INET, ip.ip, ip.network_prefix))
        up, running, loopback = read_flags(adapter.name)
        interfaces.append(
            Interface(
                index=adapter.index,
                name=name_of(adapter),
                up=up,
                running=running,
                loopback=loopback,
                addresses=tuple(addresses),
            )
        )
    return interfaces


def read_interface_flags(name: str, request: int) -> tuple[bool, bool, bool]:
    """(up, running, loopback) of a Unix interface by the SIOCGIFFLAGS ioctl; ``request`` is
    the OS's number for it. A vanished interface reads as down."""
    import fcntl

    ifreq = struct.pack(f"{IFNAMSIZ}s{IFNAMSIZ + 8}x", name.encode()[: IFNAMSIZ - 1])
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        result = fcntl.ioctl(probe.fileno(), request, ifreq)
    except OSError:
        return (False, False, False)
    finally:
        probe.close()
    (flags,) = struct.unpack_from("H", result, IFNAMSIZ)
    return (bool(flags & IFF_UP), bool(flags & IFF_RUNNING), bool(flags & IFF_LOOPBACK))
