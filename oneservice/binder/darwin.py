"""macOS: ifaddr enumeration, IP_BOUND_IF/IPV6_BOUND_IF pinning. (Change events: the routing
socket, oneservice/monitor/darwin.py.)"""

from __future__ import annotations

import socket
import struct

from .interfaces import Interface
from .portable import interfaces_from_adapters, read_interface_flags
from .sockets import NO_UDP_OFFLOADS as UDP_OFFLOADS  # noqa: F401 (none here)

# Wildcard bind plus IP_BOUND_IF: the pin picks the interface, readdressing needs no rebind.
REBIND_ON_ADDRESS_CHANGE = False

# <netinet/in.h>: IP_BOUND_IF 25; <netinet6/in6.h>: IPV6_BOUND_IF 125. The value is the
# interface index as a host-order unsigned int.
IP_BOUND_IF = 25
IPV6_BOUND_IF = 125
# _IOWR('i', 17, struct ifreq): struct ifreq is 32 bytes on macOS.
SIOCGIFFLAGS = 0xC0206911


def bind_host(family: int, address: str | None) -> str:
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def pin_socket(sock: socket.socket, family: int, index: int, name: str) -> None:
    value = struct.pack("@I", index)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_BOUND_IF, value)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_BOUND_IF, value)


def enumerate_interfaces() -> list[Interface]:
    import ifaddr

    return interfaces_from_adapters(
        ifaddr.get_adapters(),
        read_flags=lambda name: read_interface_flags(name, SIOCGIFFLAGS),
        name_of=lambda adapter: adapter.name,
    )

