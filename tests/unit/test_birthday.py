"""The birthday technique's rules, without I/O (node/birthday.py): who asks, who probes, what
is sent where and how much, and which spare sockets stay open. Whether it finds a path
through a real NAT is tests/integration/test_nat_netns.py's."""

from __future__ import annotations

from oneservice.messages import Birthday, Ping, encode
from oneservice.node import wire
from oneservice.node.birthday import (
    ATTEMPT_S,
    FIRST_TRY_S,
    MAX_KEPT,
    PROBE_BATCH,
    PROBES,
    SPARES,
)
from oneservice.node.events import SparesDone, SparesWanted
from oneservice.node.paths import DirectPath, RelayPath
from oneservice.node.peer import Peer
from tests.unit.corenet import identity, two_nodes

ROOT = "3f00000001"
A_PUBLIC = "198.51.100.10"  # where a's root sees a (a's NAT: a new port per destination)
B_PUBLIC = ("203.0.113.2", 9993)  # where a's root sees b (b's NAT keeps b's port)


def connected_pair():
    """a (hard) and b (easy), connected, each knowing where roots see the other; relayed."""
    sim = two_nodes()
    sim.run(0.5)
    a, b = sim.nodes["a"], sim.nodes["b"]
    a.set_own_addresses(["10.0.1.10"], sim.now, 9993)
    b.set_own_addresses(["10.0.2.10"], sim.now, 9993)
    a.parts.paths.seen_by_root(1, ROOT, f"{A_PUBLIC}/40123", sim.now)
    b.parts.paths.seen_by_root(1, ROOT, f"{B_PUBLIC[0]}/{B_PUBLIC[1]}", sim.now)
    a_in_b, b_in_a = b.peers[identity(1).address], a.peers[identity(2).address]
    a_in_b.hints.add((A_PUBLIC, 40123))
    b_in_a.hints.add(B_PUBLIC)
    sim.run(0.2)  # each tells the other (`here`)
    for peer in (a_in_b, b_in_a):
        peer.preferred = RelayPath(ROOT, peer.address)
    return sim, a, b, a_in_b, b_in_a


def events(core) -> list:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def test_a_node_knows_its_nat_is_hard_when_a_root_sees_it_at_another_port():
    _sim, a, b, _, _ = connected_pair()
    assert a.parts.paths.hard(1) and not b.parts.paths.hard(1)
    assert b.peers[identity(1).address].hard, "a said so in its `here`"
    assert not a.peers[identity(2).address].hard


def test_the_easy_side_probes_only_where_a_root_saw_the_peer_in_batches_at_most_256_times():
    sim, _a, b, a_in_b, _ = connected_pair()
    b.parts.birthday.receive_request(a_in_b, Birthday(A_PUBLIC, "203.0.113.2/9993"), sim.now)
    sim.wire_log.clear()

    def probes() -> list[tuple[str, int]]:
        """(Not the endpoint the root saw: a path's, probed as every path is.)"""
        return [d for name, d, _ in sim.wire_log
                if name == "b" and d[0] == A_PUBLIC and d != (A_PUBLIC, 40123)]  # fmt: skip

    sim.step()
    assert len(probes()) == PROBE_BATCH, "a batch at a time, not all at once"
    sim.run(1.0)
    sent = probes()
    assert len(sent) == PROBES == len(set(sent)), "256 distinct ports, once each"
    sent_to_seen = [d for name, d, _ in sim.wire_log if name == "b" and d == (A_PUBLIC, 40123)]
    assert len(sent_to_seen) < 5, "the port a root saw is a path, not one of the probes"
    # Near the port where a root saw a: a carrier's block of ports lies around it.
    assert all(40123 - 2048 <= port < 40123 + 2048 for _, port in sent)
    others = {d for name, d, _ in sim.wire_log if name == "b"} - set(sent)
    assert others <= {("198.51.100.1", 9993), ("10.0.1.10", 9993), (A_PUBLIC, 40123)}, (
        "nothing anywhere else but a's own paths")
    assert b.counters()["birthday"]["probed"] == 1


def test_the_easy_side_refuses_what_it_should_not_probe_for():
    sim, _a, b, a_in_b, _ = connected_pair()
    birthday = b.parts.birthday

    def refused(message: Birthday, reason: str) -> bool:
        before = b.packet_drops[reason]
        a_in_b.preferred = RelayPath(ROOT, a_in_b.address)
        birthday.receive_request(a_in_b, message, sim.now)
        return b.packet_drops[reason] == before + 1

    assert refused(Birthday("192.0.2.99", "203.0.113.2/9993"), "birthday_not_observed")
    assert refused(Birthday("10.0.1.10", "203.0.113.2/9993"), "birthday_not_observed")
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/1"), "birthday_refused"), "not ours"
    networks, a_in_b.networks = a_in_b.networks, {}
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_refused"), "a stranger"
    a_in_b.networks = networks
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_not_observed") is False
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_too_often")
    # It backs off as the hard side does: 1.5 s, then 3 s, ... between answered requests.
    sim.now += 1.6
    assert not refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_too_often")
    sim.now += 1.6
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_too_often")
    sim.now += 1.5
    assert not refused(Birthday(A_PUBLIC, "203.0.113.2/9993"), "birthday_too_often")
    direct = next(p for p in a_in_b.paths.values() if isinstance(p, DirectPath))
    a_in_b.preferred = direct
    before = b.packet_drops["birthday_refused"]
    birthday.receive_request(a_in_b, Birthday(A_PUBLIC, "203.0.113.2/9993"), sim.now)
    assert b.packet_drops["birthday_refused"] == before + 1, "reached directly already"
    b.parts.paths.seen_by_root(1, ROOT, "203.0.113.2/40000", sim.now)  # b's NAT is hard too
    sim.now += 2.0
    assert refused(Birthday(A_PUBLIC, "203.0.113.2/40000"), "birthday_refused")


def test_the_hard_side_opens_spares_probes_from_each_and_keeps_only_the_one_that_works():
    sim, a, b, a_in_b, b_in_a = connected_pair()
    birthday, now = a.parts.birthday, sim.now
    events(a)
    b_in_a.last_traffic = now
    assert birthday.due(b_in_a, now) == now
    birthday.run(b_in_a, now)  # relayed with traffic: the backoff starts
    assert birthday.due(b_in_a, now) == now + FIRST_TRY_S and not events(a)
    now += FIRST_TRY_S
    birthday.run(b_in_a, now)
    assert events(a) == [SparesWanted(1, 1, SPARES)]
    spares = list(range(100, 100 + SPARES))
    a.datagrams_to_send()
    a.spares_opened(1, spares, now)
    out = a.datagrams_to_send()
    assert sorted(s for s, d, _, _ in out if d == B_PUBLIC) == spares, "one probe from each"
    assert birthday.view()["spareSockets"] == SPARES

    # b's probe lands on spare 150: a path there, probed at once.
    ping = encode(Ping(7, False, f"{A_PUBLIC}/20371"))
    b.parts.tx.send_on(a_in_b, DirectPath(1, (A_PUBLIC, 20371)), wire.TYPE_CONTROL, ping, now)
    [(_, _, [datagram], _)] = b.datagrams_to_send()
    a.receive_datagram(datagram, 150, B_PUBLIC, now)
    path = b_in_a.paths[(150, B_PUBLIC)]
    assert path.birthday and path.learned
    [view] = [v for v in a.peer_views(now) if v.address == b_in_a.address]
    assert {p.kind for p in view.paths if p.socket_id == 150} == {"birthday"}
    assert (150, B_PUBLIC) in [(s, d) for s, d, _, _ in a.datagrams_to_send()]
    assert birthday.owns(150, b_in_a) and not birthday.owns(150, Peer(identity(3)))

    # The attempt ends: every spare but the one that works closes.
    now += ATTEMPT_S
    birthday.run(b_in_a, now)
    [done] = [e for e in events(a) if isinstance(e, SparesDone)]
    assert sorted(done.socket_ids) == [s for s in spares if s != 150]
    assert birthday.view()["spareSockets"] == 1 and birthday.due(b_in_a, now) > now
    # Its path forgotten (silent too long), the last one closes too.
    del b_in_a.paths[(150, B_PUBLIC)]
    assert birthday.due(b_in_a, now) == now
    birthday.run(b_in_a, now)
    assert [e for e in events(a) if isinstance(e, SparesDone)] == [SparesDone((150,))]
    assert birthday.view()["spareSockets"] == 0


def test_no_attempt_when_both_sides_are_hard_or_the_pair_is_direct_or_quiet():
    sim, a, _b, _a_in_b, b_in_a = connected_pair()
    birthday, now = a.parts.birthday, sim.now
    b_in_a.last_traffic = now
    b_in_a.hard = True
    assert birthday.due(b_in_a, now) == float("inf")
    b_in_a.hard = False
    b_in_a.preferred = next(p for p in b_in_a.paths.values() if isinstance(p, DirectPath))
    assert birthday.due(b_in_a, now) == float("inf")
    b_in_a.preferred = RelayPath(ROOT, b_in_a.address)
    b_in_a.last_traffic = now - 60.0
    assert birthday.due(b_in_a, now) == float("inf")


def test_spares_that_come_after_their_attempt_ended_are_closed_at_once():
    sim, a, _b, _a_in_b, _b_in_a = connected_pair()
    events(a)
    a.spares_opened(9, [500, 501], sim.now)  # no such attempt
    assert events(a) == [SparesDone((500, 501))]


def test_a_peer_that_must_wait_for_its_turn_is_not_looked_at_again_at_once():
    _sim, a, _b, _a_in_b, b_in_a = connected_pair()
    birthday, now = a.parts.birthday, _sim.now
    b_in_a.last_traffic = now
    birthday.run(b_in_a, now)
    for spare in range(900, 900 + MAX_KEPT):  # as many spares kept for others as allowed
        birthday._kept[spare] = ("0123456789", 1)
    now += FIRST_TRY_S
    birthday.run(b_in_a, now)
    assert not [e for e in events(a) if isinstance(e, SparesWanted)]
    assert birthday.due(b_in_a, now) > now, "no busy loop while it waits"



def test_a_path_a_spare_opened_before_the_request_came_is_said_to_be_birthday():
    """A spare's mapping may get the very port the hard side's root sees, which the easy side
    probes anyway: that path works before the request (over the relay) arrives."""
    sim, _a, b, a_in_b, _ = connected_pair()
    early = DirectPath(1, (A_PUBLIC, 40123))
    a_in_b.paths[early.key] = early
    early.last_received = sim.now
    assert a_in_b.hard
    b.parts.birthday.receive_request(a_in_b, Birthday(A_PUBLIC, "203.0.113.2/9993"), sim.now)
    [view] = [v for v in b.peer_views(sim.now) if v.address == a_in_b.address]
    assert {p.kind for p in view.paths if p.endpoint == (A_PUBLIC, 40123)} == {"birthday"}


def test_when_the_attempt_is_over_the_easy_side_forgets_the_paths_that_died():
    sim, _a, b, a_in_b, _ = connected_pair()
    birthday = b.parts.birthday
    birthday.receive_request(a_in_b, Birthday(A_PUBLIC, "203.0.113.2/9993"), sim.now)
    winner, loser = DirectPath(1, (A_PUBLIC, 20001)), DirectPath(1, (A_PUBLIC, 20002))
    for path in (winner, loser):
        a_in_b.paths[path.key] = path
        birthday.first_heard(a_in_b, path, sim.now)
        path.last_received = sim.now
    assert winner.birthday and loser.birthday
    for _ in range(PROBES // PROBE_BATCH):  # every batch sent
        birthday.run(a_in_b, sim.now)
        sim.now += 0.05
    end = sim.now + 2 * ATTEMPT_S
    a_in_b.preferred = winner
    winner.last_received = end  # our traffic still comes over it; the loser fell silent
    birthday.run(a_in_b, end)
    assert winner.key in a_in_b.paths and loser.key not in a_in_b.paths

