"""Relay frames in batches (issue 27, item 6): grouped by address, framed and unframed for a
whole batch, short ones left out."""

from __future__ import annotations

from oneservice.node import relayframes, wire


def test_relay_frames_are_grouped_and_reframed_for_a_whole_batch_at_once():
    a, b = b"\xaa" * 5, b"\xbb" * 5
    data, probe = bytes([1, wire.TYPE_DATA, 0, 0]), bytes([1, 9, 0, 0])
    frames = [a + data, b + probe, a + probe, b + data]
    assert relayframes.whole(frames) is frames, "all whole: the same list, no copy"
    assert relayframes.by_address(frames) == {a: [a + data, a + probe], b: [b + probe, b + data]}
    assert relayframes.by_address(frames[:1]) == {a: frames[:1]}
    assert relayframes.unframed([a + data, a + probe]) == [data, probe]
    assert relayframes.kinds_inside([a + probe, a + data]) == {9, wire.TYPE_DATA}
    long_data = a + data + bytes(wire.DATA_OVERHEAD - len(data))
    assert relayframes.thin_fits([long_data], {wire.TYPE_DATA})
    assert not relayframes.thin_fits([a + data], {wire.TYPE_DATA}), "too short to be data"
    assert not relayframes.thin_fits([long_data, a + probe], {wire.TYPE_DATA, 9})
    short = [a, a + b"\x01", a + data]
    assert relayframes.whole(short) == [a + data], "nothing behind the address: left out"
    assert relayframes.whole([]) == []
