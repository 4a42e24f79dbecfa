"""The peer lifecycle table (node/lifecycle.py): complete, consistent, and what the core's
peer machine (node/machine.py) does: every state x event on the real machine, and a scenario
whose every transition is checked, with a peer's sessions and handshake always as its stored
state says."""

from __future__ import annotations

import pytest

from oneservice.node.lifecycle import (
    TABLE,
    WITH_HANDSHAKE,
    WITH_SESSION,
    Event,
    Send,
    State,
    transition,
    without_handshake,
)
from tests.unit.corenet import NETWORK_ID, ipv4_packet, two_nodes

B_ENDPOINT = ("192.0.2.2", 9993)


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
            assert event is Event.RESPONSE or {Send.ABANDON_HANDSHAKE, Send.FORGET} & set(sends), (
                f"{row}: a handshake gone without its answer, and not given up")
        if state in WITH_SESSION and after not in WITH_SESSION:
            assert event in (Event.EXPIRED, Event.GOODBYE, Event.REMOVED), (
                f"{row}: a session gone by itself")
        if {Send.ABANDON_HANDSHAKE, Send.FORGET} & set(sends):
            assert after not in WITH_HANDSHAKE, row
        if Send.FORGET in sends:
            assert after is State.IDLE, row


def agrees(peer) -> bool:
    """A peer's sessions and handshake are what its stored state says."""
    return ((peer.current is not None) == (peer.state in WITH_SESSION)
            and (peer.handshake is not None) == (peer.state in WITH_HANDSHAKE))  # fmt: skip


def moved_as_the_table_says(before: State, event: Event, after: State) -> bool:
    expected, sends = transition(before, event)
    could_not_leave = Send.INITIATION in sends and after == without_handshake(expected)
    return after == expected or could_not_leave


def record_transitions(core) -> list[tuple]:
    """(state before, event, state after, whether the fields agreed) for every event the
    core's machine handles."""
    seen: list[tuple] = []
    machine = core.parts.machine
    fire = machine.fire

    def recorded(peer, event, now):
        before = peer.state
        fire(peer, event, now)
        seen.append((before, event, peer.state, agrees(peer)))

    machine.fire = recorded
    return seen


def peer_in(state: State):
    """a's machine and its peer b, brought to ``state`` by real traffic and the machine's own
    events (b's endpoint dead where nothing may answer)."""
    sim = two_nodes()
    a = sim.nodes["a"]
    machine = a.parts.machine
    if state in (State.HANDSHAKING, State.UNREACHABLE):
        sim.dead.add(B_ENDPOINT)
    sim.run(40 if state is State.UNREACHABLE else 0.5, step=0.1)
    peer = a.peers[sim.nodes["b"].identity.address]
    if state is State.IDLE:
        machine.fire(peer, Event.GOODBYE, sim.now)
    elif state is State.REKEYING:
        sim.dead.add(B_ENDPOINT)
        machine.fire(peer, Event.REKEY_DUE, sim.now)
    assert peer.state is state and agrees(peer), (state, peer.state)
    return sim, machine, peer


# RESPONSE and CONFIRMED need a real answer or a real session: the scenario below has them.
@pytest.mark.parametrize("event", [e for e in Event if e not in (Event.RESPONSE,
                                                                 Event.CONFIRMED)])  # fmt: skip
@pytest.mark.parametrize("state", list(State))
def test_the_real_machine_moves_as_the_table_says_in_every_state(state, event):
    sim, machine, peer = peer_in(state)
    machine.fire(peer, event, sim.now)
    assert moved_as_the_table_says(state, event, peer.state), (state, event, peer.state)
    assert agrees(peer), (state, event, peer.state, peer.current, peer.handshake)


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
    for before, event, after, agreed in seen:
        assert moved_as_the_table_says(before, event, after), (before, event, after)
        assert agreed, f"{before} x {event} -> {after}: the fields say otherwise"
    pairs = {(before, event) for before, event, _, _ in seen}
    for pair in [(State.IDLE, Event.NEED), (State.HANDSHAKING, Event.RESPONSE),
                 (State.CONNECTED, Event.REKEY_DUE), (State.REKEYING, Event.RESPONSE),
                 (State.UNREACHABLE, Event.RETRY_DUE), (State.CONNECTED, Event.EXPIRED),
                 (State.CONNECTED, Event.GOODBYE), (State.HANDSHAKING, Event.GIVE_UP),
                 (State.HANDSHAKING, Event.REMOVED), (State.IDLE, Event.ANSWERED)]:  # fmt: skip
        assert pair in pairs, f"the scenario never went through {pair}"
    assert a.packet_drops["queue_dropped_unreachable"] > 0, "an unreachable peer's queue"
    assert b.peers[a.identity.address].current is not None, "a was still there: back"


def test_a_peer_keeps_its_fields_in_slots_not_a_dict():
    """A node keeps a Peer for each member it meets (a root: every node it serves). With 45
    fields in a __dict__, past the 30 a dict's keys are shared for, each cost 1.2 KiB more
    (issue 29, item 3)."""
    from oneservice.node.peer import Peer
    from tests.unit.corenet import identity

    peer = Peer(identity(2))
    assert not hasattr(peer, "__dict__")
    with pytest.raises(AttributeError):
        peer.misspelled_field = 1  # (and a typo in a field's name fails at once)


def test_a_new_peer_holds_no_empty_containers_of_its_own():
    """A peer that has sent nothing yet costs at most 1.2 KiB: what waits for its session is a
    list (an empty deque took 0.6 KiB), and the endpoint sets that are replaced whole start
    as one shared empty set (216 bytes each otherwise). Was 2.5 KiB (issue 29, item 3)."""
    import gc
    import tracemalloc

    from oneservice.node.peer import Peer
    from tests.unit.corenet import identity

    known = identity(2)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        peers = [Peer(known) for _ in range(100)]
        per_peer = (tracemalloc.get_traced_memory()[0] - before) / len(peers)
    finally:
        tracemalloc.stop()
    assert per_peer <= 1200, f"{per_peer:.0f} bytes a peer"
