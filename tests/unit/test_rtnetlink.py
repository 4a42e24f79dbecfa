"""Our rtnetlink codec, on messages laid out as the kernel lays them out (its headers,
attributes and padding per linux/netlink.h and linux/rtnetlink.h). The same code against the
real kernel: tests/integration/test_rtnetlink_netns.py."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneservice.rtnetlink import (
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_NEWRULE,
    MalformedMessage,
    attribute,
    decode,
    encode,
    route_body,
    rule_body,
)


def test_a_link_with_its_name_mtu_and_kind_and_attributes_it_does_not_know():
    linkinfo = attribute(1, b"veth\0") + attribute(2, b"\x01\x02")
    body = (struct.pack("=BxHiII", 0, 1, 7, 0x11043, 0)
            + attribute(3, b"eth0\0") + attribute(4, (1500).to_bytes(4, "little"))
            + attribute(27, b"\xff" * 5)  # (unknown to us: skipped, padding and all)
            + attribute(18 | 0x8000, linkinfo))  # (nested: the flag is ignored)  # fmt: skip
    [link] = decode(encode(RTM_NEWLINK, 0, 0, body))
    assert link.kind == RTM_NEWLINK
    assert link.header["index"] == 7 and link.header["flags"] == 0x11043
    assert link.attrs == {"ifname": "eth0", "mtu": 1500, "kind": "veth"}


def test_addresses_of_both_families_with_their_extended_flags():
    four = (struct.pack("=BBBBI", socket.AF_INET, 24, 0x80, 0, 3)
            + attribute(1, socket.inet_pton(socket.AF_INET, "192.0.2.1"))
            + attribute(2, socket.inet_pton(socket.AF_INET, "192.0.2.9")))  # fmt: skip
    six = (struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3)
           + attribute(1, socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
           + attribute(8, (0x300).to_bytes(4, "little")))  # fmt: skip
    first, second = decode(encode(RTM_NEWADDR, 2, 9, four) + encode(RTM_NEWADDR, 2, 9, six))
    assert first.attrs == {"address": "192.0.2.1", "local": "192.0.2.9"}
    assert first.header["prefixlen"] == 24 and first.header["flags"] == 0x80
    assert second.attrs == {"address": "2001:db8::1", "flags": 0x300}


def test_a_route_in_a_table_above_255_and_a_multipath_route():
    body = route_body(socket.AF_INET6, "2001:db8::", 32, 5210, 165, oif=4, gateway="fe80::1")
    [route] = decode(encode(RTM_NEWROUTE, 0, 0, body))
    assert route.header["table"] == 252, "RT_TABLE_COMPAT: the u8 cannot hold it"
    assert route.table == 5210
    assert route.attrs == {"table": 5210, "dst": "2001:db8::", "oif": 4, "gateway": "fe80::1"}
    assert route.header["proto"] == 165 and route.header["dst_len"] == 32
    hops = b"".join(struct.pack("=HBBi", 8 + len(extra), 0, 0, index) + extra
                    for index, extra in ((2, b""), (5, attribute(5, b"\x0a\0\0\x01"))))
    default = route_body(socket.AF_INET, "0.0.0.0", 0, 254) + attribute(9, hops)
    [route] = decode(encode(RTM_NEWROUTE, 0, 0, default))
    assert route.table == 254 and "dst" not in route.attrs
    assert route.attrs["multipath"] == [{"oif": 2}, {"oif": 5}]


def test_a_rule_with_ports_protocol_and_suppress_prefixlength():
    body = rule_body(socket.AF_INET, 52, 5211, "0.0.0.0", 0, 6, "80:443", 0)
    [rule] = decode(encode(RTM_NEWRULE, 0, 0, body))
    assert rule.header["action"] == 1, "FR_ACT_TO_TBL"
    assert rule.attrs == {"table": 52, "priority": 5211, "ip_proto": 6,
                          "dport_range": "80:443", "suppress_prefixlen": 0}  # fmt: skip
    assert "dst" not in rule.attrs, "everything: no destination attribute"
    [one] = decode(encode(RTM_NEWRULE, 0, 0, rule_body(socket.AF_INET6, 300, 5212, "fd00::",
                                                       8, dport_range="53")))  # fmt: skip
    assert one.attrs["dport_range"] == "53:53" and one.attrs["dst"] == "fd00::"
    assert one.header["dst_len"] == 8 and one.table == 300


def test_messages_we_do_not_read_are_kept_as_their_type_alone():
    [message] = decode(encode(99, 0, 0, b"anything at all"))
    assert message.kind == 99 and message.header == {} and message.attrs == {}


@pytest.mark.parametrize("data", [
    encode(RTM_NEWLINK, 0, 0, b"\0" * 8),  # shorter than an ifinfomsg
    encode(RTM_NEWLINK, 0, 0, b"\0" * 16 + struct.pack("=HH", 40, 3) + b"eth0"),  # attr > msg
    encode(RTM_NEWLINK, 0, 0, b"\0" * 16 + struct.pack("=HH", 2, 3)),  # attr < its header
    struct.pack("=IHHII", 64, RTM_NEWLINK, 0, 0, 0) + b"\0" * 16,  # message > datagram
    struct.pack("=IHHII", 8, RTM_NEWLINK, 0, 0, 0),  # message < its header
])  # fmt: skip
def test_broken_messages_raise_malformed_message(data: bytes):
    with pytest.raises(MalformedMessage):
        decode(data)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_malformed_message_only(data: bytes):
    with contextlib.suppress(MalformedMessage):
        decode(data)


@given(st.binary(max_size=200), st.sampled_from([16, 17, 20, 21, 24, 25, 32, 33]))
def test_any_body_of_a_known_type_decodes_or_raises_malformed_message_only(body, kind):
    with contextlib.suppress(MalformedMessage):
        decode(encode(kind, 0, 0, body))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="netlink")
def test_only_the_kernel_is_believed_not_another_process_on_the_machine():
    """Any local process may send to our netlink socket's port id; a forged answer with the
    right sequence number (a dump saying our kill-switch rules are there, say) is ignored."""
    from oneservice.rtnetlink import NLMSG_DONE, Rtnetlink

    fake_link = encode(RTM_NEWLINK, 2, 1, struct.pack("=BxHiII", 0, 1, 999, 1, 0)
                       + attribute(3, b"forged0\0"))  # fmt: skip
    with Rtnetlink() as ours, socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                            socket.NETLINK_ROUTE) as forger:  # fmt: skip
        forger.bind((0, 0))
        port = ours._sock.getsockname()[0]
        forger.sendto(fake_link + encode(NLMSG_DONE, 2, 1, b"\0" * 4), (port, 0))
        names = {link.attrs["ifname"] for link in ours.links()}
    assert "lo" in names and "forged0" not in names
