"""The peer lifecycle table (node/lifecycle.py): complete, consistent, and what the core does."""

from __future__ import annotations

from oneservice.node.lifecycle import TABLE, Event, Send, State, transition
from tests.unit.corenet import NETWORK_ID, ipv4_packet, two_nodes

WITH_HANDSHAKE = {State.HANDSHAKING, State.UNREACHABLE, State.REKEYING}
WITH_SESSION = {State.CONNECTED, State.REKEYING}


def test_every_state_and_event_has_a_row():
    assert set(TABLE) == {(state, event) for state in State for event in Event}


def test_each_row_is_consistent_with_what_it_sends():
    for (state, event), (after, sends) in TABLE.items():
        row = f"{state.name} x {event.name} -> {after.name} {[s.name for s in sends]}"
        if Send.INITIATION in sends:
            assert after in WITH_HANDSHAKE, row
        if Send.END_SESSIONS in sends:
            assert after not in WITH_SESSION, row
        if Send.END_CURRENT in sends:
            assert after not in WITH_SESSION, row
        if after in WITH_HANDSHAKE and state not in WITH_HANDSHAKE:
            assert Send.INITIATION in sends, f"{row}: a handshake from nowhere"
        if after in WITH_SESSION and state not in WITH_SESSION:
            assert event in (Event.RESPONSE, Event.CONFIRMED), f"{row}: a session from nowhere"
        if state in WITH_HANDSHAKE and after not in WITH_HANDSHAKE:
            assert event is Event.RESPONSE, f"{row}: a handshake gone without its answer"
        if state in WITH_SESSION and after not in WITH_SESSION:
            assert event in (Event.EXPIRED, Event.GOODBYE), f"{row}: a session gone by itself"


def record_transitions(core) -> list[tuple]:
    """(state before, event, state after, whether an initiation left) for every event."""
    seen: list[tuple] = []
    machine = core.parts.machine
    lifecycle = machine.fire

    def recorded(peer, event, now, state=None):
        before = state or machine.state(peer, now)
        sent = peer.handshake_sent
        lifecycle(peer, event, now, state)
        seen.append((before, event, machine.state(peer, now), peer.handshake_sent != sent))

    machine.fire = recorded
    return seen


def test_the_core_moves_as_the_table_says():
    """Join, traffic, rekey, a silent peer, an unreachable one, its return, an idle session's
    expiry and a goodbye, with every transition checked against the table."""
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    seen_a, seen_b = record_transitions(a), record_transitions(b)
    network = a.networks[NETWORK_ID].config
    a.set_networks([], sim.now)  # b removed: a forgets it ...
    a.set_networks([network], sim.now)  # ... and b is back: a new peer to reach
    sim.run(1)
    packet = ipv4_packet("10.1.0.1", "10.1.0.2")
    for _ in range(130):  # traffic past REKEY_AFTER_S (120 s)
        a.send_packet(NETWORK_ID, packet, sim.now)
        sim.run(1.0, step=0.05)
    # b silent past its session's end (REJECT_AFTER_S) and 30 s more: a gives up, keeps trying
    sim.dead.add(("192.0.2.2", 9993))
    for _ in range(250):
        a.send_packet(NETWORK_ID, packet, sim.now)
        sim.run(1.0, step=0.05)
    sim.dead.clear()
    sim.run(10, step=0.05)
    sim.run(200, step=0.5)  # idle: the session expires (REJECT_AFTER_S) and is made anew
    a.say_goodbye(sim.now)  # b ends its sessions, and (a member) tries again at once
    sim.run(1, step=0.05)
    seen = seen_a + seen_b
    for before, event, after, initiated in seen:
        expected, sends = transition(before, event)
        could_not_leave = Send.INITIATION in sends and not initiated
        assert after == expected or could_not_leave, (before, event, after, sends)
    pairs = {(before, event) for before, event, _, _ in seen}
    for pair in [(State.IDLE, Event.NEED), (State.HANDSHAKING, Event.RESPONSE),
                 (State.CONNECTED, Event.REKEY_DUE), (State.REKEYING, Event.RESPONSE),
                 (State.UNREACHABLE, Event.RETRY_DUE), (State.CONNECTED, Event.EXPIRED),
                 (State.CONNECTED, Event.GOODBYE)]:  # fmt: skip
        assert pair in pairs, f"the scenario never went through {pair}"
    assert a.packet_drops["queue_dropped_unreachable"] > 0, "an unreachable peer's queue"
    assert b.peers[a.identity.address].current is not None, "a was still there: back"
