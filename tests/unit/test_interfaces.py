"""The classifier: what may carry the node's traffic, with the reason shown to users."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oneservice.binder.interfaces import (
    DEFAULT_PREFIX_BLACKLIST,
    VIRTUAL_LINK_KINDS,
    BindPolicy,
    Interface,
    InterfaceAddress,
    classify_interfaces,
)

V4, V6 = socket.AF_INET, socket.AF_INET6


def addr(text: str, prefixlen: int = 24, **flags) -> InterfaceAddress:
    return InterfaceAddress(V6 if ":" in text else V4, text, prefixlen, **flags)


def iface(name: str, *addresses: InterfaceAddress, index: int = 2, **kw) -> Interface:
    return Interface(index=index, name=name, addresses=addresses, **kw)


def only(interface: Interface, policy: BindPolicy | None = None):
    return classify_interfaces([interface], policy or BindPolicy())


@pytest.mark.parametrize(
    ("interface", "policy", "reason"),
    [
        (iface("lo", addr("127.0.0.1", 8), loopback=True), BindPolicy(), "loopback"),
        (iface("eth0", addr("192.0.2.2"), up=False), BindPolicy(), "administratively down"),
        (iface("eth0", addr("192.0.2.2"), running=False), BindPolicy(),
         "no carrier (link down)"),
        (iface("eth0"), BindPolicy(), "no addresses"),
        (iface("ztabcdef", addr("192.0.2.2")), BindPolicy(),
         "name matches blacklisted prefix 'zt'"),
        (iface("tailscale0", addr("192.0.2.2")), BindPolicy(),
         "name matches blacklisted prefix 'tailscale'"),
        (iface("br-1a2b", addr("192.0.2.2")), BindPolicy(),
         "name matches blacklisted prefix 'br-'"),
        (iface("myvpn0", addr("192.0.2.2")), BindPolicy.from_settings(extra_prefixes=["myvpn"]),
         "name matches blacklisted prefix 'myvpn'"),
        (iface("uplink", addr("192.0.2.2"), kind="wireguard"), BindPolicy(),
         "virtual link kind 'wireguard'"),
        (iface("uplink", addr("192.0.2.2"), kind="vxlan"), BindPolicy(),
         "virtual link kind 'vxlan'"),
        (iface("eth0", addr("192.0.2.2"), index=7), BindPolicy(own_tap_indexes=frozenset({7})),
         "own virtual network device"),
    ],
)  # fmt: skip
def test_interface_level_skips_say_why(interface, policy, reason):
    [verdict] = only(interface, policy)
    assert (verdict.usable, verdict.family, verdict.reason) == (False, None, reason)


def test_own_tap_by_index_even_when_renamed_and_allowlisted():
    # The tap's name is not to be trusted (it can be renamed); its index is.
    tap = iface("eth9", addr("192.0.2.2"), index=12)
    policy = BindPolicy(own_tap_indexes=frozenset({12}), allowlist=frozenset({"eth9"}))
    [verdict] = only(tap, policy)
    assert verdict.reason == "own virtual network device"


def test_container_veth_and_host_bridge_are_physical():
    for kind, name in (("veth", "eth0"), ("bridge", "br0"), (None, "enp3s0"), ("bond", "bond0")):
        [verdict] = only(iface(name, addr("192.0.2.2"), kind=kind))
        assert verdict.usable and verdict.reason == "physical", (kind, name)


def test_allowlist_overrides_kind_and_prefix_but_not_down_or_loopback():
    policy = BindPolicy.from_settings(allowlist=["tun7", "lo"])
    [tun] = only(iface("tun7", addr("192.0.2.2"), kind="tun"), policy)
    assert tun.usable and tun.reason == "allowlisted"
    [down] = only(iface("tun7", addr("192.0.2.2"), kind="tun", up=False), policy)
    assert down.reason == "administratively down"
    [lo] = only(iface("lo", addr("127.0.0.1", 8), loopback=True), policy)
    assert lo.reason == "loopback"


def test_each_family_is_decided_separately():
    verdicts = only(iface("eth0", addr("192.0.2.2"), addr("fe80::1", 64)))
    by_family = {v.family: v for v in verdicts}
    assert by_family[V4].usable and by_family[V4].address == "192.0.2.2"
    assert not by_family[V6].usable and by_family[V6].reason == "only link-local addresses"


def test_ipv4_link_local_only_is_skipped():
    [verdict] = only(iface("eth0", addr("169.254.3.4", 16)))
    assert verdict.reason == "only link-local addresses"


def test_address_inside_a_virtual_network_is_never_bound():
    policy = BindPolicy(virtual_subnets=(ipaddress.ip_network("10.7.0.0/16"),))
    [verdict] = only(iface("eth1", addr("10.7.3.4")), policy)
    assert verdict.reason == "address 10.7.3.4 is inside virtual network 10.7.0.0/16"
    # Another address on the same interface is still usable.
    [verdict] = only(iface("eth1", addr("10.7.3.4"), addr("192.0.2.9")), policy)
    assert verdict.usable and verdict.addresses == ("192.0.2.9",)


def test_shown_address_prefers_stable_over_temporary_and_deprecated():
    [verdict] = only(iface("eth0",
        addr("2001:db8::aaaa", 64, temporary=True),
        addr("2001:db8::bbbb", 64, deprecated=True),
        addr("2001:db8::1", 64),
    ))  # fmt: skip
    assert verdict.address == "2001:db8::1"
    assert verdict.addresses == ("2001:db8::1", "2001:db8::aaaa", "2001:db8::bbbb")


def test_dad_failed_addresses_are_unusable():
    [verdict] = only(iface("eth0", addr("2001:db8::1", 64, dad_failed=True)))
    assert not verdict.usable and "duplicate address detection" in verdict.reason


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)
kinds = st.sampled_from([None, "veth", "bridge", *sorted(VIRTUAL_LINK_KINDS)])
addresses = st.lists(
    st.one_of(
        st.ip_addresses(v=4).map(lambda ip: addr(str(ip), 24)),
        st.ip_addresses(v=6).map(lambda ip: addr(str(ip), 64)),
    ),
    max_size=4,
)
interfaces = st.builds(
    Interface, index=st.integers(1, 50), name=names, kind=kinds, up=st.booleans(),
    running=st.booleans(), loopback=st.booleans(), addresses=addresses.map(tuple),
)  # fmt: skip


# (An index names one interface, as the OS gives them.)
@given(st.lists(interfaces, max_size=6, unique_by=lambda i: i.index),
       st.frozensets(st.integers(1, 50), max_size=3))
def test_never_binds_what_could_carry_the_node_into_itself(interfaces, taps):
    policy = BindPolicy(own_tap_indexes=taps)
    for verdict in classify_interfaces(interfaces, policy):
        if not verdict.usable:
            assert verdict.reason
            continue
        interface = next(i for i in interfaces if i.index == verdict.index
                         and i.name == verdict.name)  # fmt: skip
        assert interface.index not in taps
        assert not interface.loopback and interface.up and interface.running
        assert interface.kind not in VIRTUAL_LINK_KINDS
        assert not interface.name.startswith(DEFAULT_PREFIX_BLACKLIST)
        for text in verdict.addresses:
            ip = ipaddress.ip_address(text)
            assert not (ip.is_loopback or ip.is_link_local or ip.is_multicast)
