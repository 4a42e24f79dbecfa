"""Control messages larger than a datagram travel in chunks (issue 14, item 1)."""

from __future__ import annotations

from collections import Counter

from oneservice.messages import ConfigAnswer, encode
from oneservice.node import chunks, wire
from oneservice.node.core import ControlReceived
from tests.unit.corenet import connected_after_one_packet

BIG = ConfigAnswer("8056c2e21c000001", bytes(range(256)) * 400, b"s" * 64)


def received(core) -> list[ConfigAnswer]:
    out = []
    while (event := core.next_event()) is not None:
        if isinstance(event, ControlReceived):
            out.append(event.message)
    return out


def chunk_datagrams(sim, sender: str) -> list[bytes]:
    return [d for name, _, d in sim.wire_log if name == sender and d[1] == wire.TYPE_CONTROL_CHUNK]


def test_a_message_larger_than_a_datagram_arrives_whole_in_chunks_that_need_no_fragments():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    received(b)
    a.send_control(b.identity.address, BIG, sim.now)
    sim.step()
    assert received(b) == [BIG]
    sent = chunk_datagrams(sim, "a")
    assert len(sent) == -(-len(encode(BIG)) // chunks.CHUNK_LEN)
    # IPv6 (40) and UDP (8) headers, and a root's relay wrapping (37): still at most 1200.
    assert max(len(d) for d in sent) + 48 + 37 <= 1200


def test_only_the_missing_chunks_are_sent_again():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    received(b)
    seen = Counter()

    def lose_two(name, destination, data):
        if name == "a" and data[1] == wire.TYPE_CONTROL_CHUNK:
            seen["n"] += 1
            return seen["n"] in (4, 9)  # the 4th and 9th chunk of the first sending
        return False

    sim.drop = lose_two
    a.send_control(b.identity.address, BIG, sim.now)
    sim.step()
    assert received(b) == []
    first = len(chunk_datagrams(sim, "a"))
    sim.run(1.0)
    assert received(b) == [BIG], "b asked for the two it missed"
    assert len(chunk_datagrams(sim, "a")) - first == 2 and a.chunks_resent == 2


def test_malformed_chunks_are_counted_and_change_nothing():
    reassembly = chunks.Reassembly(drops := Counter())
    for bad in (
        chunks.HEADER.pack(1, 0, 1) + b"x",  # one chunk is no chunked message
        chunks.HEADER.pack(1, 5, 5) + b"x" * chunks.CHUNK_LEN,  # index past the count
        chunks.HEADER.pack(1, 0, 5) + b"x" * 10,  # a short chunk that is not the last
        chunks.HEADER.pack(1, 0, chunks.MAX_CHUNKS + 1) + b"x" * chunks.CHUNK_LEN,
        b"\1\2",
    ):
        assert reassembly.add("peer", bad, 0.0) is None
    assert drops == {"chunk_malformed": 5} and reassembly.pending_bytes() == 0


def test_reassembly_memory_is_bounded_per_peer_and_stuck_messages_are_abandoned():
    reassembly = chunks.Reassembly(drops := Counter())
    for message_id in range(10):  # first chunks of ten big messages, never the rest
        reassembly.add("peer", chunks.HEADER.pack(message_id, 0, 4000) + b"x" * chunks.CHUNK_LEN,
                       0.0)  # fmt: skip
    assert reassembly.pending_bytes() == chunks.MAX_MESSAGES_PER_PEER * chunks.CHUNK_LEN
    assert drops["chunked_message_superseded"] == 8
    asked = reassembly.due_requests(chunks.ASK_AFTER_S)
    assert [(peer, message_id) for peer, message_id, _ in asked] == [("peer", 8), ("peer", 9)]
    assert asked[0][2] == list(range(1, 1 + chunks.MAX_ASKED_INDEXES))
    reassembly.due_requests(chunks.GIVE_UP_S + 1)
    assert reassembly.pending_bytes() == 0 and drops["chunked_message_incomplete"] == 2


def test_a_request_for_chunks_never_sent_or_long_gone_gets_nothing():
    sent = chunks.SentChunks()
    parts = chunks.split(b"y" * 5000, 7)
    sent.keep("peer", 7, parts, 0.0)
    assert sent.again("peer", 7, [1, 1, 99, -1, "x"], 1.0) == [parts[1]]
    assert sent.again("other", 7, [1], 1.0) == []
    assert sent.again("peer", 7, [1], chunks.KEEP_SENT_S + 1) == []
