"""rtnetlink of our own (Linux): the few requests the node makes and the messages it reads.

The node asks the kernel for a dozen things (links, addresses, routes and rules: list, add,
delete; a route lookup; a link's MTU and state) and reads its change events. pyroute2 did
this before, at 6 MiB of an idle node's memory (most of it modules the node never calls:
traffic control, multiprocessing, unittest.mock); this module is the part we use, written
against linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h and
linux/fib_rules.h. ``decode`` is pure; ``Rtnetlink`` is a blocking socket for one thread.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import field
from typing import Any

from .records import record

# Message types (linux/rtnetlink.h) and the netlink ones (linux/netlink.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTN_UNICAST, RTN_UNREACHABLE = 1, 7
FR_ACT_TO_TBL = 1
RT_TABLE_COMPAT = 252  # rtm_table/fib_rule_hdr's u8 for a table above 255 (then in an attr)
IFF_UP = 0x1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_ATTR = struct.Struct("=HH")  # nlattr: length, type
_ERROR = struct.Struct("=i")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_NEXTHOP = struct.Struct("=HBBi")  # rtnexthop: length, flags, hops, ifindex
RECEIVE_BYTES = 1 << 17


def _align(length: int) -> int:
    return (length + 3) & ~3


def _string(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def _u32(data: bytes) -> int:
    return int.from_bytes(data[:4], "little") if len(data) >= 4 else 0


def _u8(data: bytes) -> int:
    return data[0] if data else 0


def _address(data: bytes) -> str | None:
    if len(data) == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    if len(data) == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    return None


def _port_range(data: bytes) -> str:
    if len(data) < 4:
        return ""
    first, last = struct.unpack_from("=HH", data)
    return f"{first}:{last}"


def _link_info(data: bytes) -> str | None:
    """IFLA_LINKINFO's IFLA_INFO_KIND (a link's driver: "tun", "veth", ...)."""
    for kind, value in _attributes(data):
        if kind == 1:
            return _string(value)
    return None


def _nexthops(data: bytes) -> list[dict[str, int]]:
    """RTA_MULTIPATH: each next hop's device (its own attributes are not needed)."""
    hops, offset = [], 0
    while offset + _NEXTHOP.size <= len(data):
        length, _flags, _hops, index = _NEXTHOP.unpack_from(data, offset)
        if length < _NEXTHOP.size:
            break
        hops.append({"oif": index})
        offset += _align(length)
    return hops


# Per kind of message: its fixed header (struct, field names) and the attributes read from
# it (number -> name, decoder). Attributes not listed are skipped.
_Layout = tuple[struct.Struct, tuple[str, ...], dict[int, tuple[str, Callable[[bytes], Any]]]]
_LINK: _Layout = (
    struct.Struct("=BxHiII"), ("family", "type", "index", "flags", "change"),
    {3: ("ifname", _string), 4: ("mtu", _u32), 18: ("kind", _link_info)},
)  # fmt: skip
_ADDR: _Layout = (
    struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index"),
    {1: ("address", _address), 2: ("local", _address), 8: ("flags", _u32)},
)  # fmt: skip
_ROUTE: _Layout = (
    struct.Struct("=BBBBBBBBI"),
    ("family", "dst_len", "src_len", "tos", "table", "proto", "scope", "type", "flags"),
    {1: ("dst", _address), 4: ("oif", _u32), 5: ("gateway", _address), 6: ("priority", _u32),
     9: ("multipath", _nexthops), 15: ("table", _u32)},
)  # fmt: skip
_RULE: _Layout = (
    struct.Struct("=BBBBBBBBI"),
    ("family", "dst_len", "src_len", "tos", "table", "res1", "res2", "action", "flags"),
    {1: ("dst", _address), 6: ("priority", _u32), 14: ("suppress_prefixlen", _u32),
     15: ("table", _u32), 22: ("ip_proto", _u8), 24: ("dport_range", _port_range)},
)  # fmt: skip
_LAYOUTS = {
    RTM_NEWLINK: _LINK, RTM_DELLINK: _LINK, RTM_NEWADDR: _ADDR, RTM_DELADDR: _ADDR,
    RTM_NEWROUTE: _ROUTE, RTM_DELROUTE: _ROUTE, RTM_NEWRULE: _RULE, RTM_DELRULE: _RULE,
}  # fmt: skip


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` and ``strerror`` say why."""


class MalformedMessage(ValueError):
    """Bytes that are not the netlink messages they claim to be."""


@record
class Message:
    """One rtnetlink message: its type, its fixed header's fields and the attributes read.
    An attribute and a header field may share a name (a route's table above 255 is only in
    its attribute): ``table`` says which to believe."""

    kind: int
    header: dict[str, int] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def table(self) -> int:
        return self.attrs.get("table") or self.header.get("table", 0)


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > len(data):
            raise MalformedMessage(f"an attribute of {length} bytes at {offset}")
        yield kind & _NLA_TYPE_MASK, data[offset + _ATTR.size:offset + length]
        offset += _align(length)


def _parse(kind: int, body: bytes) -> Message:
    layout = _LAYOUTS.get(kind)
    if layout is None:
        return Message(kind)
    fixed, names, known = layout
    if len(body) < fixed.size:
        raise MalformedMessage(f"a message of type {kind} with {len(body)} bytes")
    header = dict(zip(names, fixed.unpack_from(body), strict=True))
    attrs: dict[str, Any] = {}
    for number, value in _attributes(body[_align(fixed.size):]):
        if number in known:
            name, read = known[number]
            attrs.setdefault(name, read(value))
    return Message(kind, header, attrs)


def split(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """The netlink messages in one datagram: (type, flags, sequence, body)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, sequence, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise MalformedMessage(f"a message of {length} bytes at {offset}")
        yield kind, flags, sequence, data[offset + _HEADER.size:offset + length]
        offset += _align(length)


def from_kernel(sock: socket.socket, size: int = RECEIVE_BYTES) -> bytes:
    """The next datagram on a netlink socket, b"" if it came from another process: any local
    process may send to our socket's port id, and only the kernel (port id 0) is believed."""
    data, (sender, _groups) = sock.recvfrom(size)
    return data if sender == 0 else b""


def decode(data: bytes) -> list[Message]:
    """Every rtnetlink message in one datagram (as the kernel's events come); raises
    MalformedMessage for bytes that do not hold together."""
    return [_parse(kind, body) for kind, _flags, _sequence, body in split(data)]


def attribute(number: int, value: bytes) -> bytes:
    length = _ATTR.size + len(value)
    return _ATTR.pack(length, number) + value + b"\0" * (_align(length) - length)


def _u32_attr(number: int, value: int) -> bytes:
    return attribute(number, value.to_bytes(4, "little"))


def _address_attr(number: int, family: int, address: str) -> bytes:
    return attribute(number, socket.inet_pton(family, address))


def encode(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body


def route_body(family: int, dst: str, dst_len: int, table: int, proto: int = 0,
               kind: int = RTN_UNICAST, oif: int | None = None,
               gateway: str | None = None) -> bytes:  # fmt: skip
    """An rtmsg and its attributes: a route to dst/dst_len in ``table``."""
    fixed, _, _ = _ROUTE
    small_table = table if table < 256 else RT_TABLE_COMPAT
    body = fixed.pack(family, dst_len, 0, 0, small_table, proto, 0, kind, 0)
    body += _u32_attr(15, table)
    if dst_len:
        body += _address_attr(1, family, dst)
    if oif is not None:
        body += _u32_attr(4, oif)
    if gateway is not None:
        body += _address_attr(5, family, gateway)
    return body


def rule_body(family: int, table: int, priority: int, dst: str | None = None,
              dst_len: int = 0, ip_proto: int = 0, dport_range: str = "",
              suppress_prefixlen: int | None = None) -> bytes:  # fmt: skip
    """A fib_rule_hdr and its attributes: "from all [to dst] lookup table" at priority."""
    fixed, _, _ = _RULE
    small_table = table if table < 256 else RT_TABLE_COMPAT
    body = fixed.pack(family, dst_len, 0, 0, small_table, 0, 0, FR_ACT_TO_TBL, 0)
    body += _u32_attr(15, table) + _u32_attr(6, priority)
    if dst is not None and dst_len:
        body += _address_attr(1, family, dst)
    if ip_proto:
        body += attribute(22, bytes([ip_proto]))
    if dport_range:
        first, _, last = dport_range.partition(":")
        body += attribute(24, struct.pack("=HH", int(first), int(last or first)))
    if suppress_prefixlen is not None:
        body += _u32_attr(14, suppress_prefixlen)
    return body


class Rtnetlink:
    """A blocking rtnetlink socket: one request at a time, from one thread."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)  # fmt: skip
        try:
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._sequence = itertools.count(1)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnetlink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[Message]:
        """Send one request and read what it gets back: a dump's messages, or nothing once the
        kernel acknowledged a change. Raises NetlinkError if it refused."""
        sequence = next(self._sequence)
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        self._sock.send(encode(kind, NLM_F_REQUEST | NLM_F_ACK | flags, sequence, body))
        answer: list[Message] = []
        while True:
            for got, _flags, got_sequence, payload in split(from_kernel(self._sock)):
                if got_sequence != sequence:
                    continue  # a late answer to an earlier request that raised
                if got == NLMSG_DONE:
                    return answer
                if got == NLMSG_ERROR:
                    code = -_ERROR.unpack_from(payload)[0] if len(payload) >= 4 else errno.EIO
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    if not dump:
                        return answer
                    continue
                answer.append(_parse(got, payload))  # (a lookup's answer comes before its ack)

    # What the node asks: lists of what is there ...

    def links(self) -> list[Message]:
        return self.request(RTM_GETLINK, _LINK[0].pack(0, 0, 0, 0, 0), NLM_F_DUMP)

    def addresses(self) -> list[Message]:
        return self.request(RTM_GETADDR, _ADDR[0].pack(0, 0, 0, 0, 0), NLM_F_DUMP)

    def routes(self, family: int) -> list[Message]:
        """Every route of the family, in every table."""
        body = _ROUTE[0].pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [m for m in self.request(RTM_GETROUTE, body, NLM_F_DUMP)
                if m.header.get("family") == family]  # fmt: skip

    def rules(self, family: int) -> list[Message]:
        body = _RULE[0].pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [m for m in self.request(RTM_GETRULE, body, NLM_F_DUMP)
                if m.header.get("family") == family]  # fmt: skip

    def route_to(self, address: str) -> Message:
        """The route the kernel would take to ``address`` (``ip route get``); NetlinkError if
        none (unreachable), ValueError for what is not an address."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        full = 128 if family == socket.AF_INET6 else 32
        body = _ROUTE[0].pack(family, full, 0, 0, 0, 0, 0, 0, 0)
        try:
            body += _address_attr(1, family, address)
        except OSError as exc:
            raise ValueError(f"not an address: {address!r}") from exc
        answer = self.request(RTM_GETROUTE, body)
        if not answer:
            raise NetlinkError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))
        return answer[0]

    # ... and changes.

    def add_route(self, body: bytes, replace: bool = False) -> None:
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self.request(RTM_NEWROUTE, body, flags)

    def delete_route(self, body: bytes) -> None:
        self.request(RTM_DELROUTE, body)

    def add_rule(self, body: bytes) -> None:
        self.request(RTM_NEWRULE, body, NLM_F_CREATE | NLM_F_EXCL)

    def delete_rule(self, body: bytes) -> None:
        self.request(RTM_DELRULE, body)

    def set_link(self, index: int, mtu: int | None = None, up: bool = False) -> None:
        """A link's MTU, and/or bring it up."""
        flags = IFF_UP if up else 0
        body = _LINK[0].pack(socket.AF_UNSPEC, 0, index, flags, flags)
        if mtu is not None:
            body += _u32_attr(4, mtu)
        self.request(RTM_NEWLINK, body)

    def add_address(self, index: int, address: str, prefixlen: int, flags: int = 0) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        body = _ADDR[0].pack(family, prefixlen, flags & 0xFF, 0, index)
        body += _address_attr(2, family, address) + _address_attr(1, family, address)
        body += _u32_attr(8, flags)
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)
