"""Linux: rtnetlink change events (links, addresses, routes, rules), typed.

Events come from a non-blocking AF_NETLINK socket subscribed to the kernel's groups, read with
add_reader and decoded by rtnetlink.py. Messages are told apart by the kernel's type number.
"""

from __future__ import annotations

import errno
import logging
import socket

from ..marks import ROUTE_PROTOCOL, RULE_PRIORITIES
from ..rtnetlink import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_DELRULE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
    RTM_NEWRULE,
    MalformedMessage,
    Message,
    decode,
    from_kernel,
)
from .changes import AddressChange, Change, LinkChange, RouteChange, RuleChange, Unknown
from .monitor import MAX_READS_PER_WAKEUP, POLL_INTERVAL_WITH_EVENTS_S, ChangeMonitor

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_IPV4_RULE = 1 << (8 - 1)  # RTNLGRP_IPV4_RULE
RTMGRP_IPV6_RULE = 1 << (19 - 1)  # RTNLGRP_IPV6_RULE
EVENT_GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
    | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE
)
NETLINK_RECEIVE_BUFFER_BYTES = 1024 * 1024


def change_in(message: Message) -> Change:
    """What one rtnetlink message says changed. Our routes carry ROUTE_PROTOCOL and our rules
    one of RULE_PRIORITIES (marks.py): that is how our own writes are known."""
    kind = message.kind
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        return RouteChange(ours=message.header.get("proto") == ROUTE_PROTOCOL,
                           removed=kind == RTM_DELROUTE)  # fmt: skip
    if kind in (RTM_NEWRULE, RTM_DELRULE):
        return RuleChange(ours=message.attrs.get("priority") in RULE_PRIORITIES,
                          removed=kind == RTM_DELRULE)  # fmt: skip
    index = message.header.get("index")
    if kind == RTM_DELLINK:
        # Which link? Without its index every socket must be looked at again.
        return LinkChange(index, deleted=True) if index else Unknown()
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        return AddressChange(index or 0)
    return LinkChange(index or 0)


class NetlinkMonitor(ChangeMonitor):
    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
        )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NETLINK_RECEIVE_BUFFER_BYTES)
            self._sock.bind((0, EVENT_GROUPS))
        except OSError:
            self._sock.close()
            raise
        super().__init__(POLL_INTERVAL_WITH_EVENTS_S)
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        changes: list[Change] = []
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data = from_kernel(self._sock, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped events. Told as Unknown: everything is looked at
                # again, which is all any event leads to.
                if exc.errno == errno.ENOBUFS:
                    changes.append(Unknown())
                else:
                    log.warning("netlink receive failed: %s", exc)
                continue
            try:
                messages = decode(data)
            except MalformedMessage:  # told as Unknown: everything is looked at again
                changes.append(Unknown())
                continue
            changes.extend(change_in(message) for message in messages)
        self.note(changes)

    def close(self) -> None:
        super().close()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
