"""The route planner: flags in ZeroTier's order, the full tunnel only while the gateway lives
(or held, fail-closed), IPv6 blocked rather than leaked, and bad routes refused with a reason."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

import pytest

from oneservice.network.config import Member, NetworkConfig, Route
from oneservice.routing.flags import FlagsError, NetworkFlags, parse_flags
from oneservice.routing.planner import (
    FAILBACK_S,
    FULL_TUNNEL_TABLE,
    TUNNEL_HELD,
    TUNNEL_ON,
    TUNNEL_WITHDRAWN,
    UNREACHABLE,
    KernelRoute,
    NetworkRouting,
    catch_all,
    catch_all_samples,
    overridden,
    plan_routing,
)
from tests.unit.corenet import identity

CLIENT, GATEWAY = identity(1), identity(2)
DEV = "onet21c000001"
NETWORK_ID = "8056c2e21c000001"


def network(*routes: Route, gateway_v6: bool = False) -> NetworkConfig:
    gateway_addresses = [ip_interface("10.147.17.1/24")]
    if gateway_v6:
        gateway_addresses.append(ip_interface("fd00::1/64"))
    return NetworkConfig("8056c2e21c000001", "lab", (
        Member(CLIENT.public(), (ip_interface("10.147.17.2/24"), ip_interface("fd00::2/64"))),
        Member(GATEWAY.public(), tuple(gateway_addresses)),
    ), routes=(Route(ip_network("10.147.17.0/24")), *routes))  # fmt: skip


DEFAULT_FLAGS = NetworkFlags()
DEFAULT_V4 = Route(ip_network("0.0.0.0/0"), ip_address("10.147.17.1"))
DEFAULT_V6 = Route(ip_network("::/0"), ip_address("fd00::1"))


def plan(config, flags=DEFAULT_FLAGS, live=(GATEWAY.address,), fail_closed=False, lan=()):
    return plan_routing([NetworkRouting(config, DEV, flags)], CLIENT.address, live,
                        [ip_address("192.168.1.20")], lan, fail_closed)  # fmt: skip


def reasons(result) -> dict:
    return {(s.target, s.via): (s.installed, s.reason) for s in result.status}


def test_default_route_needs_allow_default_then_becomes_two_halves_and_blocks_ipv6():
    config = network(DEFAULT_V4)
    off = plan(config)
    assert off.routes == frozenset()
    assert reasons(off)[("0.0.0.0/0", "10.147.17.1")] == (False, "needs allowDefault")

    on = plan(config, NetworkFlags(allow_default=True))
    assert on.full_tunnel == {config.id: TUNNEL_ON}
    assert on.routes == {
        KernelRoute(4, "0.0.0.0/1", "10.147.17.1", DEV),
        KernelRoute(4, "128.0.0.0/1", "10.147.17.1", DEV),
        # The gateway offers no IPv6 default: IPv6 is unreachable (fails at once, no leak).
        KernelRoute(6, "::/1", None, "", kind=UNREACHABLE),
        KernelRoute(6, "8000::/1", None, "", kind=UNREACHABLE),
    }
    assert "IPv6 blocked" in reasons(on)[("::/0", None)][1]


def test_ipv6_default_from_the_gateway_is_routed_not_blocked():
    on = plan(network(DEFAULT_V4, DEFAULT_V6, gateway_v6=True), NetworkFlags(allow_default=True))
    assert KernelRoute(6, "::/1", "fd00::1", DEV) in on.routes
    assert not any(r.kind == UNREACHABLE for r in on.routes)


def test_silent_gateway_withdraws_the_tunnel_unless_fail_closed():
    config, flags = network(DEFAULT_V4), NetworkFlags(allow_default=True)
    withdrawn = plan(config, flags, live=())
    assert withdrawn.routes == frozenset()
    assert withdrawn.full_tunnel[config.id] == TUNNEL_WITHDRAWN
    held = plan(config, flags, live=(), fail_closed=True)
    assert held.full_tunnel[config.id] == TUNNEL_HELD
    assert KernelRoute(4, "0.0.0.0/1", "10.147.17.1", DEV) in held.routes


def test_flags_in_zerotiers_order():
    private = Route(ip_network("10.20.0.0/16"), ip_address("10.147.17.1"))
    public = Route(ip_network("8.8.8.0/24"), ip_address("10.147.17.1"))
    config = network(private, public)
    default = reasons(plan(config))
    assert default[("10.20.0.0/16", "10.147.17.1")][0] is True
    assert default[("8.8.8.0/24", "10.147.17.1")] == (
        False,
        "public address space: needs allowGlobal",
    )
    assert reasons(plan(config, NetworkFlags(allow_global=True)))[("8.8.8.0/24", "10.147.17.1")][0]
    unmanaged = reasons(plan(config, NetworkFlags(allow_managed=False)))
    assert unmanaged[("10.20.0.0/16", "10.147.17.1")] == (False, "needs allowManaged")
    listed = NetworkFlags(allow_managed=(ip_network("10.20.0.0/15"),))
    assert reasons(plan(config, listed))[("10.20.0.0/16", "10.147.17.1")][0] is True
    assert not reasons(plan(network(Route(ip_network("10.30.0.0/16"), ip_address(
        "10.147.17.1"))), listed))[("10.30.0.0/16", "10.147.17.1")][0]  # fmt: skip


@pytest.mark.parametrize("route, reason", [
    (Route(ip_network("0.0.0.0/0"), ip_address("10.147.17.2")), "this node is the gateway"),
    (Route(ip_network("10.9.0.0/16"), ip_address("10.147.17.2")), "this node's own address"),
    (Route(ip_network("10.9.0.0/16"), ip_address("192.168.1.20")), "this node's own address"),
    (Route(ip_network("0.0.0.0/0"), ip_address("172.16.0.1")), "outside the network's subnets"),
    (Route(ip_network("127.0.0.0/8"), ip_address("10.147.17.1")), "inside 127.0.0.0/8"),
    (Route(ip_network("224.0.0.0/4"), ip_address("10.147.17.1")), "inside 224.0.0.0/4"),
    (Route(ip_network("ff02::/16")), "inside ff00::/8"),
    (Route(ip_network("::/0"), ip_address("10.147.17.1")), "not an IPv6 address"),
])  # fmt: skip
def test_bad_routes_are_refused_with_a_reason_and_nothing_is_installed(route, reason):
    flags = NetworkFlags(allow_default=True, allow_global=True)
    result = plan(network(route), flags)
    installed, why = reasons(result)[(str(route.target), str(route.via) if route.via else None)]
    assert not installed and reason in why
    assert result.routes == frozenset()


def test_without_lan_access_the_lan_goes_through_the_tunnel_by_rule():
    lan = [ip_network("192.168.1.0/24"), ip_network("fe80::/64")]
    result = plan(network(DEFAULT_V4), NetworkFlags(allow_default=True, allow_lan_access=False),
                  lan=lan)  # fmt: skip
    [rule] = result.rules  # link-local stays on the link
    assert (rule.target, rule.table) == ("192.168.1.0/24", FULL_TUNNEL_TABLE)
    assert KernelRoute(4, "0.0.0.0/0", "10.147.17.1", DEV, FULL_TUNNEL_TABLE) in result.routes
    assert plan(network(DEFAULT_V4), NetworkFlags(allow_default=True), lan=lan).rules == set()


def test_only_one_network_carries_the_full_tunnel():
    first = network(DEFAULT_V4)
    second = NetworkConfig("8056c2e21c000002", "other", first.members, routes=first.routes)
    flags = NetworkFlags(allow_default=True)
    result = plan_routing([NetworkRouting(second, "onet2", flags),
                           NetworkRouting(first, DEV, flags)],
                          CLIENT.address, [GATEWAY.address], [], [])  # fmt: skip
    assert {r.device for r in result.routes if r.kind != UNREACHABLE} == {DEV}
    assert "already carries the full tunnel" in result.for_network(second.id)[1]["reason"]


def test_flags_parse_zerotier_spellings_and_refuse_the_rest():
    assert parse_flags({"allowDefault": "1", "allowGlobal": 0}) == NetworkFlags(allow_default=True)
    assert NetworkFlags().changed({"allowManaged": ["10.0.0.0/8"]}).allow_managed == (
        ip_network("10.0.0.0/8"),
    )
    for bad in ({"allowDefault": "yes"}, {"allowDefualt": True}, {"allowManaged": ["x"]}, []):
        with pytest.raises(FlagsError):
            parse_flags(bad)


def test_dns_only_with_allow_dns_and_through_the_tunnel_while_it_carries_everything():
    from dataclasses import replace

    from oneservice.routing.dns import DnsSetting, plan_dns

    config = replace(network(DEFAULT_V4), dns_servers=("10.147.17.1",), dns_domain="lab.test")
    off = NetworkRouting(config, DEV, NetworkFlags())
    assert plan_dns([off], {}) == {}
    on = NetworkRouting(config, DEV, NetworkFlags(allow_dns=True))
    assert plan_dns([on], {config.id: TUNNEL_WITHDRAWN}) == {
        config.id: DnsSetting(DEV, ("10.147.17.1",), ("lab.test",))
    }
    # While the full tunnel is on, every query goes through it (no LAN resolver sees them).
    assert plan_dns([on], {config.id: TUNNEL_ON})[config.id].domains == ("lab.test", "~.")


def test_quarters_make_the_default_four_routes_per_family_more_specific_than_halves():
    on = plan(network(DEFAULT_V4), NetworkFlags(allow_default=True, full_tunnel_quarters=True))
    assert on.full_tunnel == {"8056c2e21c000001": TUNNEL_ON}
    assert on.routes == {
        *(KernelRoute(4, q, "10.147.17.1", DEV)
          for q in ("0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2")),
        *(KernelRoute(6, q, None, "", kind=UNREACHABLE)
          for q in ("::/2", "4000::/2", "8000::/2", "c000::/2")),
    }  # fmt: skip


def test_samples_for_the_route_check_are_plain_unicast_in_every_quarter():
    for family in (4, 6):
        samples = [ip_address(a) for a in catch_all_samples(family)]
        assert not any(a.is_multicast or a.is_loopback or a.is_link_local or a.is_private
                       for a in samples)  # fmt: skip
        for quarter in catch_all(family, quarters=True):
            assert sum(a in quarter for a in samples) == 2


def test_the_tunnel_is_overridden_when_the_kernel_sends_a_sample_elsewhere():
    assert overridden(4, DEV, dict.fromkeys(catch_all_samples(4), DEV)) == ""
    assert overridden(6, "", dict.fromkeys(catch_all_samples(6))) == "", "blocked, as meant"
    routed = {**dict.fromkeys(catch_all_samples(4), DEV), "200.0.0.0": "tun0"}
    reason = overridden(4, DEV, routed)
    assert "routes 200.0.0.0 via tun0 (and 0 more of 8 samples)" in reason
    leaked = overridden(6, "", {**dict.fromkeys(catch_all_samples(6)), "800::": "wg0"})
    assert "IPv6 traffic does not take the tunnel" in leaked and "via wg0" in leaked


SECOND = identity(3)


def two_gateways() -> NetworkConfig:
    return NetworkConfig("8056c2e21c000001", "lab", (
        Member(CLIENT.public(), (ip_interface("10.147.17.2/24"),)),
        Member(GATEWAY.public(), (ip_interface("10.147.17.1/24"),)),
        Member(SECOND.public(), (ip_interface("10.147.17.3/24"),)),
    ), routes=(Route(ip_network("10.147.17.0/24")),
               Route(ip_network("0.0.0.0/0"), ip_address("10.147.17.3"), metric=10),
               Route(ip_network("0.0.0.0/0"), ip_address("10.147.17.1"))))  # fmt: skip


def gateway_plan(live, previous=None, live_since=None, now=100.0, fail_closed=False):
    return plan_routing([NetworkRouting(two_gateways(), DEV, NetworkFlags(allow_default=True))],
                        CLIENT.address, live, [], [], fail_closed, previous, live_since,
                        now)  # fmt: skip


def via(result) -> set[str]:
    return {r.via for r in result.routes if r.family == 4 and r.target.endswith("/1")}


def test_the_most_preferred_live_gateway_carries_the_tunnel_and_the_next_takes_over():
    both = gateway_plan({GATEWAY.address, SECOND.address})
    assert via(both) == {"10.147.17.1"} and both.gateways[(NETWORK_ID, 4)] == GATEWAY.address
    standby = reasons(both)[("0.0.0.0/0", "10.147.17.3")]
    assert standby == (False, f"standby (metric 10): member {SECOND.address} answers; the "
                              f"tunnel uses member {GATEWAY.address}")  # fmt: skip
    failed_over = gateway_plan({SECOND.address}, previous=both.gateways)
    assert via(failed_over) == {"10.147.17.3"} and failed_over.full_tunnel[NETWORK_ID] == "on"
    assert "has no live path: not used" in reasons(failed_over)[("0.0.0.0/0", "10.147.17.1")][1]


def test_a_preferred_gateway_that_comes_back_takes_over_only_after_answering_a_while():
    previous = {(NETWORK_ID, 4): SECOND.address}
    since = {GATEWAY.address: 95.0, SECOND.address: 10.0}
    back_soon = gateway_plan({GATEWAY.address, SECOND.address}, previous, since, now=100.0)
    assert via(back_soon) == {"10.147.17.3"}, "no flapping back at its first answer"
    later = gateway_plan({GATEWAY.address, SECOND.address}, previous, since,
                         now=95.0 + FAILBACK_S)  # fmt: skip
    assert via(later) == {"10.147.17.1"}


def test_with_no_gateway_live_the_tunnel_is_withdrawn_or_held_on_the_preferred_one():
    gone = gateway_plan(set())
    assert via(gone) == set() and gone.full_tunnel[NETWORK_ID] == TUNNEL_WITHDRAWN
    held = gateway_plan(set(), fail_closed=True)
    assert via(held) == {"10.147.17.1"} and held.full_tunnel[NETWORK_ID] == TUNNEL_HELD


def test_resolvectl_is_found_only_as_an_executable_file_on_the_path(tmp_path, monkeypatch):
    from oneservice.routing.dns import ResolvectlDns

    plain, executable, folder = (tmp_path / name for name in ("plain", "exe", "folder"))
    for directory in (plain, executable, folder):
        directory.mkdir()
    (plain / "resolvectl").write_text("")  # not executable
    (folder / "resolvectl").mkdir()  # a directory, searchable but no program
    monkeypatch.setenv("PATH", f"{plain}:{folder}:")
    assert not ResolvectlDns.available()
    (executable / "resolvectl").write_text("#!/bin/sh\n")
    (executable / "resolvectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{plain}:{folder}:{executable}")
    assert ResolvectlDns.available()


def test_the_leak_tests_gateway_check_fails_on_a_gateway_that_does_not_forward():
    from oneservice.routing.leaktest import gateway_check

    own = ["10.0.1.10"]
    ok = gateway_check("3a5e1f0b2c", ("10.0.1.10/9993", ("203.0.113.10",), True), own)
    assert ok.passed and "leaves from 203.0.113.10" in ok.detail
    refused = gateway_check("3a5e1f0b2c", ("10.0.1.10/9993", ("203.0.113.10",), False), own)
    assert not refused.passed and "does not forward for us" in refused.detail
    older = gateway_check("3a5e1f0b2c", ("10.0.1.10/9993", ("203.0.113.10",), None), own)
    assert older.passed and "does not say whether it forwards" in older.detail
    assert not gateway_check("3a5e1f0b2c", None, own).passed
    assert not gateway_check("3a5e1f0b2c", ("x", ("10.0.1.10",), True), own).passed
