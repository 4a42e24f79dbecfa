"""Relay frames in batches (pure): each datagram behind the address of the peer it is for
(or from), taken off, grouped by and looked into for a whole batch with the interpreter's C
iterators, so a root's and a relayed member's hot path runs no Python code per datagram.
(Putting an address on is the sealer's: ``Session.seal_frames``.)"""

from __future__ import annotations

from operator import itemgetter, methodcaller

from . import wire

_ADDRESS = itemgetter(slice(0, wire.ADDRESS_LEN))
_AFTER_ADDRESS = itemgetter(slice(wire.ADDRESS_LEN, None))
_KIND_INSIDE = itemgetter(wire.ADDRESS_LEN + 1)  # the type byte of the datagram inside


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


def kinds_inside(frames: list[bytes]) -> set[int]:
    """The types of the datagrams in whole() frames (their type byte is in the clear)."""
    return set(map(_KIND_INSIDE, frames))


def thin_fits(frames: list[bytes], kinds: set[int]) -> bool:
    """Whether every whole() frame (``kinds``: kinds_inside() of them) holds a data datagram
    long enough to be one: what a thin frame may carry (node/aead.py)."""
    return kinds == {wire.TYPE_DATA} and min(map(len, frames)) >= (
        wire.ADDRESS_LEN + wire.DATA_OVERHEAD)  # fmt: skip
