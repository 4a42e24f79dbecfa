"""Random numbers from the system's random bytes (os.urandom) alone.

The random module would do most of this, but with what it loads (secrets, base64, bisect,
_sha512) it costs an idle node 0.15 MiB, for a few draws an hour
(docs/PERFORMANCE.md, seventeenth session)."""

from __future__ import annotations

import binascii
import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def random_u32() -> int:
    """A uniform 32-bit number (an index, a message or query id)."""
    return int.from_bytes(os.urandom(4), "little")


def random_below(limit: int) -> int:
    """A uniform integer from 0 to ``limit`` - 1: a draw of as many bits as ``limit`` - 1
    has, again while it is too big (no bias towards small numbers, as a remainder has)."""
    if limit < 1:
        raise ValueError(f"random_below needs a limit of at least 1, got {limit}")
    bits = (limit - 1).bit_length()
    while True:
        value = int.from_bytes(os.urandom((bits + 7) // 8), "little") & ((1 << bits) - 1)
        if value < limit:
            return value


def random_sample(population: Sequence[T], count: int) -> list[T]:
    """``count`` members of ``population`` at distinct places, each choice equally likely: a
    few of many by drawing places until that many differ (a range of 40,000 ports is not
    made into a list for 3 of them), otherwise the start of a Fisher-Yates shuffle."""
    if not 0 <= count <= len(population):
        raise ValueError(f"cannot take {count} of {len(population)}")
    if 4 * count < len(population):
        places: dict[int, None] = {}  # (in the order drawn)
        while len(places) < count:
            places[random_below(len(population))] = None
        return [population[place] for place in places]
    pool = list(population)
    for at in range(count):
        chosen = at + random_below(len(pool) - at)
        pool[at], pool[chosen] = pool[chosen], pool[at]
    return pool[:count]


def random_token(size: int = 24) -> str:
    """``size`` random bytes as URL-safe base64 without padding (an API token)."""
    text = binascii.b2a_base64(os.urandom(size), newline=False).decode("ascii")
    return text.replace("+", "-").replace("/", "_").rstrip("=")


class RandomPool:
    """The system's random bytes (os.urandom), fetched ``size`` at a time and handed out in
    order, each byte once: for public values needed per datagram, such as a cookie reply's
    nonce. Under a flood of initiations from made-up sources (one reply each) a getrandom
    call per reply was the largest cost after sending and receiving in a profile (sampled
    as 9 %, which overstates system calls; docs/PERFORMANCE.md, sixteenth session).
    Keys still come from os.urandom itself, so no secret sits in the pool."""

    __slots__ = ("_at", "_bytes", "_size")

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._bytes = b""
        self._at = 0

    def __call__(self, count: int) -> bytes:
        if count > self._size:
            return os.urandom(count)
        at = self._at
        if at + count > len(self._bytes):
            self._bytes, at = os.urandom(self._size), 0
        self._at = at + count
        return self._bytes[at : at + count]
