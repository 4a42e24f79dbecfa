"""Typed control messages: the same bytes on the wire as before, and nothing but MessageError
out of anything a peer may send."""

from __future__ import annotations

import contextlib
import random

import msgpack
import pytest

from oneservice.messages import (
    AddressAnswer,
    AddressQuery,
    ChunkRequest,
    ConfigAnswer,
    ConfigRequest,
    Goodbye,
    Introduction,
    LocalEndpoints,
    MessageError,
    Ping,
    Pong,
    Whois,
    WhoisAnswer,
    decode,
    encode,
)

EVERY_KIND = [
    (Ping(7), {"t": "ping", "i": 7}),
    (Ping(8, preferred=True), {"t": "ping", "i": 8, "p": 1}),
    (Ping(9, True, "198.51.100.20/9993"), {"t": "ping", "i": 9, "p": 1, "s": "198.51.100.20/9993"}),
    (Pong(7), {"t": "pong", "i": 7}),
    (Pong(7, "198.51.100.20/9993"), {"t": "pong", "i": 7, "s": "198.51.100.20/9993"}),
    (Ping(7, thin=True), {"t": "ping", "i": 7, "r": 1}),
    (Pong(7, thin=True), {"t": "pong", "i": 7, "r": 1}),
    (Goodbye(), {"t": "bye"}),
    (Whois("0123456789"), {"t": "whois", "a": "0123456789"}),
    (WhoisAnswer("0123456789"), {"t": "whoisr", "a": "0123456789"}),
    (WhoisAnswer("0123456789", "id", ("192.0.2.1/9993",)),
     {"t": "whoisr", "a": "0123456789", "id": "id", "e": ["192.0.2.1/9993"]}),
    (Introduction("id", ("192.0.2.1/9993",)), {"t": "intro", "id": "id", "e": ["192.0.2.1/9993"]}),
    (ChunkRequest(3, (1, 4)), {"t": "chunks", "m": 3, "i": [1, 4]}),
    (ConfigRequest("8056c2e21c000001", -1), {"t": "ncr", "n": "8056c2e21c000001", "r": -1}),
    (ConfigAnswer("8056c2e21c000001", b"{}", b"s" * 64),
     {"t": "nc", "n": "8056c2e21c000001", "c": b"{}", "s": b"s" * 64}),
    (ConfigAnswer("8056c2e21c000001", error="NOT_FOUND"),
     {"t": "nc", "n": "8056c2e21c000001", "err": "NOT_FOUND"}),
    (AddressQuery(5), {"t": "whoami", "i": 5}),
    (AddressAnswer(5, "192.0.2.1/9993", ("203.0.113.10",)),
     {"t": "whoamir", "i": 5, "s": "192.0.2.1/9993", "x": ["203.0.113.10"]}),
    (AddressAnswer(5, "192.0.2.1/9993", ("203.0.113.10",), False),
     {"t": "whoamir", "i": 5, "s": "192.0.2.1/9993", "x": ["203.0.113.10"], "f": 0}),
    (AddressAnswer(5, "192.0.2.1/9993", (), True),
     {"t": "whoamir", "i": 5, "s": "192.0.2.1/9993", "x": [], "f": 1}),
    (LocalEndpoints(("10.0.1.10/9993",)), {"t": "here", "e": ["10.0.1.10/9993"]}),
    (LocalEndpoints(("10.0.1.10/9993", "192.0.3.10/41000"), ("192.0.3.10/41000",)),
     {"t": "here", "e": ["10.0.1.10/9993", "192.0.3.10/41000"], "m": ["192.0.3.10/41000"]}),
]  # fmt: skip


@pytest.mark.parametrize(("message", "fields"), EVERY_KIND)
def test_every_kind_has_the_wire_form_it_always_had_and_reads_back(message, fields):
    assert encode(message) == msgpack.packb(fields)
    assert decode(msgpack.packb(fields)) == message


@pytest.mark.parametrize("fields", [
    {"t": "ping"},  # no probe id
    {"t": "ping", "i": "7"},
    {"t": "ping", "i": True},  # a bool is no number here
    {"t": "whois", "a": 5},
    {"t": "whoisr", "a": "x", "id": "y", "e": "192.0.2.1/9993"},
    {"t": "whoisr", "a": "x", "id": "y", "e": [1]},
    {"t": "intro", "e": []},
    {"t": "chunks", "m": 1, "i": ["1"]},
    {"t": "chunks", "m": 1},
    {"t": "ncr", "n": "8056c2e21c000001"},
    {"t": "nc", "n": "8056c2e21c000001", "c": "text", "s": b"s"},
    {"t": "nc", "n": "8056c2e21c000001", "err": 3},
    {"t": "hello"},
    {"t": 5},
    {"x": 1},
])  # fmt: skip
def test_a_field_missing_or_of_the_wrong_type_is_a_message_error(fields):
    with pytest.raises(MessageError):
        decode(msgpack.packb(fields))


def test_random_and_mutated_bytes_give_a_message_or_a_message_error_only():
    rng = random.Random(11)
    samples = [encode(message) for message, _ in EVERY_KIND]
    for _ in range(20_000):
        if rng.random() < 0.5:
            data = bytearray(rng.choice(samples))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[: rng.randint(0, len(data))])
        else:
            data = rng.randbytes(rng.randint(0, 64))
        with contextlib.suppress(MessageError):  # anything else fails the test
            decode(data)


def test_a_map_that_claims_more_items_than_it_has_is_refused_cheaply():
    with pytest.raises(MessageError):
        decode(b"\xdf\xff\xff\xff\xff")  # map32 of 4 billion entries, none there
    with pytest.raises(MessageError):
        decode(b"\x92\x01\x02")  # a list, not a map
