"""Timers from deadlines: the core looks at a peer when something about it is due, never on a
fixed tick (an idle node's CPU must not grow with its number of peers)."""

from __future__ import annotations

import ipaddress

from oneservice.network.config import Member, NetworkConfig
from oneservice.node.timing import ACTIVE_PROBE_INTERVAL_S, DEADLINE_SLACK_S, IDLE_PROBE_INTERVAL_S
from tests.unit.corenet import NETWORK_ID, Sim, identity, ipv4_packet, two_nodes


def star(peers: int) -> Sim:
    """Node "a" with ``peers`` peers, each in a network of "a" and itself (as the benchmark's
    peer farm: the peers are a's, not each other's)."""
    sim = Sim()
    a = sim.add_node("a", 1)
    sim.add_socket("a", 1, ("198.51.100.1", 9993))
    hub = Member(identity(1).public(), (ipaddress.ip_interface("10.1.0.1/16"),), ())
    configs = []
    for n in range(2, peers + 2):
        endpoint = (f"192.0.2.{n}", 9993)
        member = Member(identity(n).public(), (ipaddress.ip_interface(f"10.1.0.{n}/16"),),
                        (endpoint,))  # fmt: skip
        sim.add_node(f"p{n}", n).set_networks([NetworkConfig(NETWORK_ID, "t", (hub, member))],
                                              sim.now)  # fmt: skip
        sim.add_socket(f"p{n}", 1, endpoint)
        configs.append(member)
    a.set_networks([NetworkConfig(NETWORK_ID, "t", (hub, *configs))], sim.now)
    return sim


def count_turns(core) -> list[int]:
    """How many times the core looks at a peer in handle_timer (works on any version)."""
    turns = [0]
    tick = core.parts.upkeep.tick

    def counted(peer, now):
        turns[0] += 1
        tick(peer, now)

    core.parts.upkeep.tick = counted
    return turns


def settled(peers: int) -> Sim:
    sim = star(peers)
    sim.run(2)
    a = sim.nodes["a"]
    assert all(peer.current is not None for peer in a.peers.values()), "all connected"
    sim.run(30)  # past the active window: every peer idle now
    return sim


def test_an_idle_node_looks_at_a_peer_only_when_its_probe_is_due():
    sim = settled(10)
    a = sim.nodes["a"]
    turns = count_turns(a)
    sim.run(60)
    # Idle peers are probed every 20 s: three turns each in a minute (a fixed 0.25 s tick
    # made that 240 turns each).
    assert turns[0] <= 10 * (60 / IDLE_PROBE_INTERVAL_S + 1), turns[0]
    assert all(peer.current is not None for peer in a.peers.values()), "still connected"


def test_handle_timer_before_a_deadline_does_nothing():
    sim = settled(3)
    a = sim.nodes["a"]
    due = a.next_timer()
    assert due - sim.now > 1.0, "nothing due soon on an idle node"
    turns, sent = count_turns(a), len(sim.wire_log)
    for fraction in (0.1, 0.5, 0.9):
        a.handle_timer(sim.now + fraction * (due - sim.now))
    sim.collect()
    assert turns[0] == 0 and len(sim.wire_log) == sent, "work done before anything was due"
    sim.now = due
    a.handle_timer(due)
    sim.collect()
    assert turns[0] >= 1 and len(sim.wire_log) > sent, "the due probe went out"


def test_traffic_brings_the_next_deadline_forward():
    sim = settled(3)
    a = sim.nodes["a"]
    assert a.next_timer() - sim.now > ACTIVE_PROBE_INTERVAL_S
    a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    # Traffic wants its paths checked every second: the deadline follows at once (the
    # service re-arms its timer after every input).
    assert a.next_timer() - sim.now <= ACTIVE_PROBE_INTERVAL_S + DEADLINE_SLACK_S


def test_a_turn_leaves_no_work_due():
    """One rule per job (upkeep.py): a job that runs moves its own due time, so after a turn
    nothing of the peer is due any more (else the timer would wake again at once). Checked
    after every turn of a lifecycle's worth of traffic: join, rekey, a dead peer, an
    unreachable one, its return, a silent block of two-way traffic, expiry and a goodbye."""
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    left: list[tuple] = []
    for core in (a, b):
        upkeep = core.parts.upkeep
        tick = upkeep.tick

        def checked(peer, now, core=core, upkeep=upkeep, tick=tick):
            tick(peer, now)
            if core.peers.get(peer.address) is peer and upkeep.earliest_job(peer, now) <= now:
                left.append((peer.state, now, upkeep.earliest_job(peer, now)))

        upkeep.tick = checked
    packet = ipv4_packet("10.1.0.1", "10.1.0.2")
    reply = ipv4_packet("10.1.0.2", "10.1.0.1")
    for seconds, dead in ((130, False), (250, True), (10, False)):
        if dead:
            sim.dead.add(("192.0.2.2", 9993))
        else:
            sim.dead.clear()
        for _ in range(seconds):
            a.send_packet(NETWORK_ID, packet, sim.now)
            b.send_packet(NETWORK_ID, reply, sim.now)
            sim.run(1.0, step=0.05)
    sim.one_way.add((("198.51.100.1", 9993), ("192.0.2.2", 9993)))  # a's way out lost only
    for _ in range(20):
        a.send_packet(NETWORK_ID, packet, sim.now)
        sim.run(0.2, step=0.05)
    sim.one_way.clear()
    sim.run(200, step=0.5)
    a.say_goodbye(sim.now)
    sim.run(2, step=0.05)
    assert left == [], left[:5]
