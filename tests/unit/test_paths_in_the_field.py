"""Paths behind NATs (issue 27), without I/O: what a path is called, when a root introduces a
pair it relays for, and what a member may tell about its own addresses."""

from __future__ import annotations

import itertools

from oneservice.node.introductions import (
    FIRST_RETRY_S,
    MAX_PAIRS,
    MOST_RETRY_S,
    PAIR_QUIET_S,
    RelayIntroductions,
)
from oneservice.node.paths import DirectPath, RelayPath, path_kind


def test_a_path_is_lan_direct_or_relayed_by_its_endpoint():
    assert path_kind(DirectPath(1, ("10.0.1.11", 9993))) == "lan"
    assert path_kind(DirectPath(1, ("192.168.1.5", 9993))) == "lan"
    assert path_kind(DirectPath(1, ("fd00::5", 9993))) == "lan"
    assert path_kind(DirectPath(1, ("fe80::1%eth0", 9993))) == "lan"
    assert path_kind(DirectPath(1, ("198.51.100.10", 9993))) == "direct"  # documentation space
    assert path_kind(DirectPath(1, ("2001:db8::1", 9993))) == "direct"
    assert path_kind(DirectPath(1, ("100.64.0.1", 9993))) == "direct"  # carrier NAT: not a LAN
    assert path_kind(RelayPath("3f00000001", "a1b2c3d4e5")) == "relayed"
    mapped = {("192.0.3.10", 41000)}
    assert path_kind(DirectPath(1, ("192.0.3.10", 41000)), mapped) == "port-mapped"
    assert path_kind(DirectPath(1, ("192.0.3.10", 9993)), mapped) == "direct"


def test_a_relayed_pair_is_introduced_at_once_then_with_backoff_and_again_after_a_quiet_spell():
    intros = RelayIntroductions()
    told = [t / 10 for t in range(0, 1300) if intros.due("bbbbbbbbbb", "aaaaaaaaaa", t / 10)]
    # At once, then after 1, 2, 4 ... s, never more than MOST_RETRY_S apart.
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(told)]
    assert told[0] == 0.0 and gaps[:4] == [FIRST_RETRY_S, 2.0, 4.0, 8.0]
    assert max(gaps) == MOST_RETRY_S and intros.sent == len(told)
    # The same pair from the other side is the same pair.
    assert not intros.due("aaaaaaaaaa", "bbbbbbbbbb", 130.0)
    # Quiet (they went direct), then relayed again: introduced at once.
    assert intros.due("aaaaaaaaaa", "bbbbbbbbbb", 130.0 + PAIR_QUIET_S + 0.1)


def test_a_root_remembers_a_bounded_number_of_pairs():
    intros = RelayIntroductions()
    for n in range(MAX_PAIRS * 3):
        assert intros.due(f"{n:010x}", "ffffffffff", n * 0.001)
    assert len(intros) <= MAX_PAIRS


def test_members_tell_each_other_their_own_addresses_and_strangers_may_not():
    from oneservice.messages import LocalEndpoints
    from tests.unit.corenet import identity, two_nodes

    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    a.set_own_addresses(["198.51.100.1", "10.9.0.1", "fe80::1", "127.0.0.1"], sim.now, 9993)
    sim.run(0.5)
    seen = b.peers[identity(1).address]
    # Never link-local (it needs our interface's name) nor loopback.
    assert seen.local_hints == {("10.9.0.1", 9993), ("198.51.100.1", 9993)}
    assert (1, ("10.9.0.1", 9993)) in seen.paths, "probed as a candidate at once"
    told_before = sim.nodes["b"].counters()["packetDrops"].get("local_endpoints_refused", 0)

    stranger = sim.add_node("c", 3)
    sim.add_socket("c", 1, ("203.0.113.3", 9993))
    stranger.reach(identity(2).public(), [("192.0.2.2", 9993)], sim.now)
    stranger.send_control(identity(2).address, LocalEndpoints(("10.66.0.1/9993",)), sim.now)
    sim.run(0.5)
    assert b.peers[identity(3).address].local_hints == set()
    refused = b.counters()["packetDrops"].get("local_endpoints_refused", 0)
    assert refused == told_before + 1
    assert not any(p.endpoint == ("10.66.0.1", 9993) for p in b.peers[identity(3).address]
                   .paths.values() if isinstance(p, DirectPath))  # fmt: skip


def test_a_port_mapping_is_told_to_members_who_call_a_path_there_port_mapped():
    from tests.unit.corenet import identity, two_nodes

    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    a.set_port_mapping(1, "192.0.3.10/41000", sim.now)
    a.set_port_mapping(7, "192.0.3.10/41001", sim.now)  # no such socket: ignored
    sim.run(0.5)
    seen = b.peers[identity(1).address]
    assert seen.mapped_hints == (("192.0.3.10", 41000),)
    assert ("192.0.3.10", 41000) in seen.local_hints, "a candidate, probed at once"
    [view] = [v for v in b.peer_views(sim.now) if v.address == identity(1).address]
    kinds = {p.endpoint: p.kind for p in view.paths if p.endpoint}
    assert kinds[("192.0.3.10", 41000)] == "port-mapped"
    a.set_port_mapping(1, None, sim.now)  # the router let it go
    sim.run(0.5)
    assert seen.mapped_hints == () and ("192.0.3.10", 41000) not in seen.local_hints



def test_a_socket_is_behind_a_nat_when_a_root_sees_it_at_an_address_not_its_own():
    from oneservice.node.events import SeenFromOutside
    from tests.unit.corenet import two_nodes

    sim = two_nodes()
    a = sim.nodes["a"]
    a.set_own_addresses(["10.0.2.10"], sim.now, 9993)
    while a.next_event() is not None:
        pass
    paths = a.parts.paths
    paths.seen_by_root(1, "3f00000001", "10.0.2.10/9993", sim.now)  # a root on our own network
    assert a.next_event() == SeenFromOutside(1, False) and not a.behind_nat(1)
    paths.seen_by_root(1, "3f00000001", "10.0.2.10/9993", sim.now)
    assert a.next_event() is None, "said once per change"
    paths.seen_by_root(1, "3f00000001", "192.0.3.10/41000", sim.now)  # through a NAT
    assert a.next_event() == SeenFromOutside(1, True) and a.behind_nat(1)
    assert not a.behind_nat(2), "a socket no root has seen: nothing known"


def test_a_member_cannot_make_us_send_to_this_host_or_to_a_group():
    from oneservice.messages import LocalEndpoints
    from tests.unit.corenet import identity, two_nodes

    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    sim.run(0.5)
    told = ("0.0.0.0/22", "224.0.0.251/5353", "198.51.100.7/9993")
    a.send_control(identity(2).address, LocalEndpoints(told, ("0.0.0.0/22",)), sim.now)
    sim.run(0.5)
    endpoints = {p.endpoint for p in b.peers[identity(1).address].paths.values()
                 if isinstance(p, DirectPath)}  # fmt: skip
    assert ("198.51.100.7", 9993) in endpoints
    assert not endpoints & {("0.0.0.0", 22), ("224.0.0.251", 5353)}


def test_roots_that_see_two_ports_of_a_hard_nat_are_not_news_but_proof():
    """Behind a NAT that gives each destination its own port, two roots see us at two ports:
    that is no move (nobody is told, nothing probed), and it proves the NAT hard."""
    from oneservice.node.outside import OutsideViews

    views = OutsideViews()
    assert views.seen(1, "root-a", "198.51.100.10/40001", False), "the first view is told"
    assert views.varies(1) is None, "one view proves nothing"
    for _ in range(3):
        assert not views.seen(1, "root-b", "198.51.100.10/52002", False)
        assert not views.seen(1, "root-a", "198.51.100.10/40001", False)
    assert views.public[1] == "198.51.100.10/40001" and views.changes == 0
    assert views.varies(1) is True
    # The hard NAT's mapping toward one root changed port: still no move.
    assert not views.seen(1, "root-a", "198.51.100.10/40777", False) and views.changes == 0
    # A redial: a new address is a move, told once, whichever root sees it first.
    assert views.seen(1, "root-b", "203.0.113.7/61000", False)
    assert not views.seen(1, "root-a", "203.0.113.7/33000", False)
    assert views.public[1] == "203.0.113.7/61000" and views.changes == 1
    assert views.varies(1) is True


def test_roots_that_see_one_port_prove_an_easy_nat_even_when_it_is_not_ours():
    from oneservice.node.outside import OutsideViews

    views = OutsideViews()
    views.seen(1, "root-a", "198.51.100.10/40000", False)
    views.seen(1, "root-b", "198.51.100.10/40000", False)
    assert views.varies(1) is False
    # The router restarted and maps us to another port (same address): a move, told once.
    assert views.seen(1, "root-a", "198.51.100.10/40500", False)
    assert not views.seen(1, "root-b", "198.51.100.10/40500", False)
    assert views.changes == 1 and views.varies(1) is False
    views.forget(1)
    assert views.varies(1) is None and 1 not in views.public


def test_a_node_behind_a_hard_nat_with_two_roots_tells_members_once_and_knows_it_is_hard():
    """Before each root's view was kept apart, every answer of the other root was taken for a
    move: members were told again and every peer probed, at each root's probe."""
    from oneservice.node.events import SeenFromOutside
    from tests.unit.corenet import two_nodes

    sim = two_nodes()
    a = sim.nodes["a"]
    a.set_own_addresses(["10.0.1.10"], sim.now, 9993)
    sim.run(0.5)
    paths = a.parts.paths
    for n in range(4):
        paths.seen_by_root(1, "3f00000001", "198.51.100.10/40001", sim.now + n)
        paths.seen_by_root(1, "3f00000002", "198.51.100.10/52002", sim.now + n)
    seen = []
    while (event := a.next_event()) is not None:
        seen += [event] if isinstance(event, SeenFromOutside) else []
    assert seen == [SeenFromOutside(1, True)]
    assert a.counters()["publicEndpointChanges"] == 0 and paths.hard(1)
    # A NAT that maps one port for all, not ours: one root cannot tell, two can.
    b = sim.nodes["b"]
    b.set_own_addresses(["10.0.2.10"], sim.now, 9993)
    b.parts.paths.seen_by_root(1, "3f00000001", "203.0.113.10/40000", sim.now)
    assert b.parts.paths.hard(1)
    b.parts.paths.seen_by_root(1, "3f00000002", "203.0.113.10/40000", sim.now)
    assert not b.parts.paths.hard(1)


def test_a_root_on_our_side_of_the_nat_does_not_hide_where_the_outside_sees_us():
    """An office root on the LAN sees our own address, a root on the internet our NAT's:
    members are told the latter, whichever root answered first, and the two views are no
    move (they were a storm of moves before each root's view was kept apart)."""
    from oneservice.node.outside import OutsideViews

    for order in (("lan", "internet"), ("internet", "lan")):
        views = OutsideViews()
        seen = {"lan": ("10.0.1.10/9993", True), "internet": ("198.51.100.10/9993", False)}
        for _ in range(3):
            for root in order:
                views.seen(1, root, *seen[root])
        assert views.public[1] == "198.51.100.10/9993" and views.changes == 0, order
    # The uplink got a public address of its own: the internet root sees it, and that is told.
    assert views.seen(1, "internet", "203.0.113.5/9993", True)
    assert views.public[1] == "203.0.113.5/9993"
    assert not views.seen(1, "lan", "10.0.1.10/9993", True), "the LAN root: unchanged"
