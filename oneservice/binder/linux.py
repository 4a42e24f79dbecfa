"""Linux: netlink enumeration, SO_BINDTODEVICE pinning, netlink change events."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable

from ..marks import ROUTE_PROTOCOL, RULE_PRIORITIES
from .interfaces import Interface, InterfaceAddress
from .monitor import ChangeHint
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

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_IPV4_RULE = 1 << (8 - 1)  # RTNLGRP_IPV4_RULE
RTMGRP_IPV6_RULE = 1 << (19 - 1)  # RTNLGRP_IPV6_RULE
RTM_DELLINK, RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE = 17, 24, 25, 32, 33
RTN_UNICAST = 1
MAIN_TABLE = 254
ROUTE_MESSAGES = (RTM_NEWROUTE, RTM_DELROUTE)
RULE_MESSAGES = (RTM_NEWRULE, RTM_DELRULE)
EVENT_GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
    | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE
)
NETLINK_RECEIVE_BUFFER_BYTES = 1024 * 1024
# UDP offloads (linux/udp.h). GSO: one sendmsg carries several datagrams of one size (the last
# may be shorter), which the kernel splits. GRO: the kernel hands several datagrams from one
# sender in one read, with their size in a control message.
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
_INT = struct.Struct("=i")
_SEGMENT_SIZE = struct.Struct("=H")
MAX_NETLINK_READS_PER_WAKEUP = 256


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
    """Dump links and addresses over netlink. Blocking: the binder runs it in a worker thread
    (pyroute2's synchronous IPRoute cannot run inside our event loop)."""
    from ..netlink import IPRoute  # imported here: only Linux has it

    with IPRoute() as ipr:
        links = list(ipr.get_links())
        addresses = list(ipr.get_addr())
        metrics = default_route_metrics(
            [*ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE),
             *ipr.get_routes(family=socket.AF_INET6, table=MAIN_TABLE)]
        )  # fmt: skip
    by_index: dict[int, list[InterfaceAddress]] = {}
    for message in addresses:
        family = message["family"]
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        # On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
        address = message.get("IFA_LOCAL") or message.get("IFA_ADDRESS")
        if not address:
            continue
        flags = message.get("IFA_FLAGS")
        if flags is None:
            flags = message["flags"]
        by_index.setdefault(message["index"], []).append(
            InterfaceAddress(
                family=family,
                address=address,
                prefixlen=message["prefixlen"],
                temporary=bool(flags & IFA_F_TEMPORARY),
                deprecated=bool(flags & IFA_F_DEPRECATED),
                dad_failed=bool(flags & IFA_F_DADFAILED),
            )
        )
    interfaces = []
    for link in links:
        flags = link["flags"]
        interfaces.append(
            Interface(
                index=link["index"],
                name=link.get("IFLA_IFNAME") or f"if{link['index']}",
                kind=link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
                up=bool(flags & IFF_UP),
                running=bool(flags & IFF_RUNNING),
                loopback=bool(flags & IFF_LOOPBACK),
                addresses=tuple(by_index.get(link["index"], ())),
                default_metric=metrics.get(link["index"]),
            )
        )
    return interfaces


def default_route_metrics(routes: list) -> dict[int, int]:
    """Interface index -> the lowest metric of a default route (either family) through it.
    Only plain unicast defaults count: our own routes are /1 halves, never /0 in main."""
    metrics: dict[int, int] = {}
    for route in routes:
        if route["dst_len"] != 0 or route["type"] != RTN_UNICAST:
            continue
        metric = route.get_attr("RTA_PRIORITY") or 0
        nexthops = route.get_attr("RTA_MULTIPATH") or []
        indexes = [route.get_attr("RTA_OIF")] + [hop["oif"] for hop in nexthops]
        for index in indexes:
            if index:
                metrics[index] = min(metric, metrics.get(index, metric))
    return metrics


def note_message(message: dict, deleted: set[int]) -> str:
    """What one parsed rtnetlink message hints at: "routes" (someone else's routes or rules),
    "ours" (a route or rule of ours appeared: our own write, nothing to do), "ours_removed"
    (one of ours is gone: put back what the plan still wants), "links" (links and addresses)
    or "unknown" (re-read everything); a deleted link's index goes into ``deleted``. By the
    kernel's type number: pyroute2's "event" name is not always there (seen: an int for the
    RTM_NEWLINK of a TUN device whose offloads were just set)."""
    kind = message.get("header", {}).get("type")
    if kind in ROUTE_MESSAGES:
        if message.get("proto") == ROUTE_PROTOCOL:
            return "ours_removed" if kind == RTM_DELROUTE else "ours"
        return "routes"
    if kind in RULE_MESSAGES:
        get_attr = getattr(message, "get_attr", None)
        if get_attr is not None and get_attr("FRA_PRIORITY") in RULE_PRIORITIES:
            return "ours_removed" if kind == RTM_DELRULE else "ours"
        return "routes"  # another program's rule may send the underlay elsewhere
    if kind == RTM_DELLINK:
        index = message.get("index")
        if not index:
            return "unknown"
        deleted.add(index)
    return "links"


class NetlinkMonitor:
    """Subscribes to link, address, route and rule changes and reports each burst as a hint.

    The binder re-reads the interfaces on a hint about links, addresses or others' routes, so
    messages are only looked at for what a re-read cannot tell: which interfaces were deleted
    (they may come back with the same name and address, and their sockets must still be
    replaced), and whether a route or rule is ours (marks.py). Our own writes cause nothing;
    one of ours removed causes no re-read and no re-probe, only a check of the routing.
    """

    def __init__(self, on_change: Callable[[ChangeHint], None]) -> None:
        from ..netlink import MarshalRtnl

        self._on_change = on_change
        self._marshal = MarshalRtnl()
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
        )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NETLINK_RECEIVE_BUFFER_BYTES)
            self._sock.bind((0, EVENT_GROUPS))
        except OSError:
            self._sock.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        deleted: set[int] = set()
        links = routes = overflow = ours_removed = False
        for _ in range(MAX_NETLINK_READS_PER_WAKEUP):
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped events. Nothing is lost for us: a full re-read
                # follows, which is what every event leads to anyway.
                if exc.errno == errno.ENOBUFS:
                    overflow = True
                else:
                    log.warning("netlink receive failed: %s", exc)
                continue
            try:
                messages = self._marshal.parse(data)
            except Exception:  # a message pyroute2 cannot read: re-read everything
                overflow = True
                continue
            for message in messages:
                kind = note_message(message, deleted)
                routes |= kind == "routes"
                links |= kind == "links"
                overflow |= kind == "unknown"
                ours_removed |= kind == "ours_removed"
        if deleted or links or routes or overflow or ours_removed:
            self._on_change(
                ChangeHint(
                    deleted_indexes=frozenset(deleted),
                    interfaces=links or overflow,
                    routes=routes or overflow,
                    ours_removed=ours_removed or overflow,
                )
            )

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


def open_change_monitor(on_change: Callable[[ChangeHint], None]) -> NetlinkMonitor:
    return NetlinkMonitor(on_change)
