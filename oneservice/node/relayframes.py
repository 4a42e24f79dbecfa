"""Relay frames in batches (pure): each datagram behind the address of the peer it is for
(or from), put on and taken off for a whole batch with the interpreter's C iterators, so a
root's and a relayed member's hot path runs no Python code per datagram."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from operator import itemgetter, methodcaller

from . import wire

_ADDRESS = itemgetter(slice(0, wire.ADDRESS_LEN))
_AFTER_ADDRESS = itemgetter(slice(wire.ADDRESS_LEN, None))
_KIND_INSIDE = itemgetter(wire.ADDRESS_LEN + 1)  # the type byte of the datagram inside


def framed(address: bytes, datagrams: Iterable[bytes]) -> list[tuple[bytes, int]]:
    """Each datagram behind ``address``, as the (payload, hint) pairs seal_many takes."""
    return list(zip(map(address.__add__, datagrams), repeat(0)))


def whole(frames: list[bytes]) -> list[bytes]:
    """The frames that hold more than an address (the others are truncated)."""
    if min(map(len, frames), default=0) > wire.ADDRESS_LEN + 1:
        return frames  # the common case: one look per frame, in C
    return [f for f in frames if len(f) > wire.ADDRESS_LEN + 1]


def unframed(frames: list[bytes]) -> list[bytes]:
    """The datagrams inside whole() frames."""
    return list(map(_AFTER_ADDRESS, frames))


def by_address(frames: list[bytes]) -> dict[bytes, list[bytes]]:
    """whole() frames grouped by the address in front, in arrival order within each."""
    addresses = set(map(_ADDRESS, frames))
    if len(addresses) == 1:
        return {addresses.pop(): frames}
    return {a: list(filter(methodcaller("startswith", a), frames)) for a in addresses}


def carries_data(frames: list[bytes]) -> bool:
    """Whether any whole() frame holds a data datagram (its type byte is in the clear)."""
    return wire.TYPE_DATA in map(_KIND_INSIDE, frames)


def all_data(frames: list[bytes]) -> bool:
    """Whether every whole() frame holds a data datagram long enough to be one: what a thin
    frame may carry (node/aead.py)."""
    return (min(map(len, frames), default=0) >= wire.ADDRESS_LEN + wire.DATA_OVERHEAD
            and set(map(_KIND_INSIDE, frames)) == {wire.TYPE_DATA})  # fmt: skip
