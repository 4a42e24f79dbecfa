"""Linux: netlink enumeration, SO_BINDTODEVICE pinning, UDP offloads. (Change events:
oneservice/monitor/linux.py.)"""

from __future__ import annotations

import errno
import logging
import socket
import struct

from .interfaces import Interface, InterfaceAddress
from .sockets import UdpOffloads

log = logging.getLogger(__name__)

# Linux binds to the wildcard address: the device pin decides the interface, and the socket
# survives readdressing (DHCP renewal, roaming on the same wifi) without a rebind.
REBIND_ON_ADDRESS_CHANGE = False

# SO_BINDTOIFINDEX (Linux 5.7) pins by index: no race with an interface renamed or re-created
# between enumeration and setsockopt. Same effect as SO_BINDTODEVICE, which is the fallback.
SO_BINDTOIFINDEX = getattr(socket, "SO_BINDTOIFINDEX", 62)

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
# IFA_F_* flags of an address (linux/if_addr.h)
IFA_F_TEMPORARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20

RTN_UNICAST = 1
MAIN_TABLE = 254
# UDP offloads (linux/udp.h). GSO: one sendmsg carries several datagrams of one size (the last
# may be shorter), which the kernel splits. GRO: the kernel hands several datagrams from one
# sender in one read, with their size in a control message.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
_INT = struct.Struct("=i")
_SEGMENT_SIZE = struct.Struct("=H")


def bind_host(family: int, address: str | None) -> str:
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def pin_socket(sock: socket.socket, family: int, index: int, name: str) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX, index)
    except OSError as exc:
        if exc.errno != errno.ENOPROTOOPT:
            raise
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode() + b"\0")


class LinuxUdpOffloads(UdpOffloads):
    available = True
    gro_ancillary_bytes = socket.CMSG_SPACE(4)

    def enable_gro(self, sock: socket.socket) -> bool:
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            return False  # an older kernel
        return True

    def gso_ancillary(self, segment_size: int) -> list[tuple[int, int, bytes]]:
        return [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(segment_size))]

    def gro_size(self, ancillary: list) -> int:
        for level, kind, value in ancillary:
            if level == SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                return _INT.unpack_from(value)[0]
        return 0


UDP_OFFLOADS = LinuxUdpOffloads()


def enumerate_interfaces() -> list[Interface]:
    """Dump links and addresses over netlink. Blocking: the binder runs it in a worker
    thread."""
    from ..rtnetlink import Rtnetlink  # imported here: only Linux has it

    with Rtnetlink() as rtnl:
        links = rtnl.links()
        addresses = rtnl.addresses()
        routes = [*rtnl.routes(socket.AF_INET), *rtnl.routes(socket.AF_INET6)]
    metrics = default_route_metrics([route for route in routes if route.table == MAIN_TABLE])
    by_index: dict[int, list[InterfaceAddress]] = {}
    for message in addresses:
        family = message.header["family"]
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
        address = message.attrs.get("local") or message.attrs.get("address")
        if not address:
            continue
        flags = message.attrs.get("flags", message.header["flags"])
        by_index.setdefault(message.header["index"], []).append(
            InterfaceAddress(
                family=family,
                address=address,
                prefixlen=message.header["prefixlen"],
                temporary=bool(flags & IFA_F_TEMPORARY),
                deprecated=bool(flags & IFA_F_DEPRECATED),
                dad_failed=bool(flags & IFA_F_DADFAILED),
            )
        )
    interfaces = []
    for link in links:
        flags, index = link.header["flags"], link.header["index"]
        interfaces.append(
            Interface(
                index=index,
                name=link.attrs.get("ifname") or f"if{index}",
                kind=link.attrs.get("kind"),
                up=bool(flags & IFF_UP),
                running=bool(flags & IFF_RUNNING),
                loopback=bool(flags & IFF_LOOPBACK),
                addresses=tuple(by_index.get(index, ())),
                default_metric=metrics.get(index, (None, None))[0],
                default_gateway=metrics.get(index, (None, None))[1],
            )
        )
    return interfaces


def default_route_metrics(routes: list) -> dict[int, tuple[int, str | None]]:
    """Interface index -> the lowest metric of a default route (either family) through it,
    and the gateway of its lowest IPv4 default (a router to ask for a port mapping; None:
    none). Only plain unicast defaults count: our own routes are /1 halves, never /0 in main."""
    metrics: dict[int, int] = {}
    gateways: dict[int, tuple[int, str]] = {}
    for route in routes:
        header, attrs = route.header, route.attrs
        if header["dst_len"] != 0 or header["type"] != RTN_UNICAST:
            continue
        metric = attrs.get("priority") or 0
        nexthops = attrs.get("multipath") or []
        indexes = [attrs.get("oif")] + [hop["oif"] for hop in nexthops]
        for index in filter(None, indexes):
            metrics[index] = min(metric, metrics.get(index, metric))
        gateway, index = attrs.get("gateway"), attrs.get("oif")
        if header["family"] == socket.AF_INET and gateway and index:
            gateways[index] = min(gateways.get(index, (metric, gateway)), (metric, gateway))
    return {i: (m, gateways[i][1] if i in gateways else None) for i, m in metrics.items()}
