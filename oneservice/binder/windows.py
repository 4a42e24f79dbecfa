"""Windows: ifaddr enumeration, IP_UNICAST_IF/IPV6_UNICAST_IF pinning plus an address bind."""

from __future__ import annotations

import socket
import struct

from .interfaces import Interface
from .portable import interfaces_from_adapters
from .sockets import NO_UDP_OFFLOADS as UDP_OFFLOADS  # noqa: F401 (none here)

# Windows routes replies by the bound address as much as by the unicast-interface option, so
# each socket binds the interface's address: a new address needs a new socket.
REBIND_ON_ADDRESS_CHANGE = True

# ws2ipdef.h: IP_UNICAST_IF 31 (index in network byte order), IPV6_UNICAST_IF 31 (index in
# host byte order). The asymmetry is Microsoft's, documented for IP_UNICAST_IF.
IP_UNICAST_IF = 31
IPV6_UNICAST_IF = 31
IPPROTO_IP = 0
IPPROTO_IPV6 = 41


def bind_host(family: int, address: str | None) -> str:
    if address is None:
        raise ValueError("Windows sockets bind to the interface's address; none given")
    return address


def pin_socket(sock: socket.socket, family: int, index: int, name: str) -> None:
    if family == socket.AF_INET6:
        sock.setsockopt(IPPROTO_IPV6, IPV6_UNICAST_IF, struct.pack("@I", index))
    else:
        sock.setsockopt(IPPROTO_IP, IP_UNICAST_IF, struct.pack("!I", index))


def enumerate_interfaces() -> list[Interface]:
    import ifaddr

    # ifaddr does not report operational state here; an adapter without addresses is skipped
    # by the classifier, and loopback is recognised by its addresses.
    return interfaces_from_adapters(
        ifaddr.get_adapters(),
        read_flags=lambda name: (True, True, False),
        name_of=lambda adapter: adapter.nice_name,
    )

