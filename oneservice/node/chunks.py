"""Control messages larger than one datagram, in chunks that never need IP fragmentation.

A network's config grows by ~240 bytes per member: past a handful of members one datagram
would need IP fragments (dropped by many NATs, firewalls and most IPv6 paths), and past ~270 it
would not fit a datagram at all. So a control message over CHUNK_LEN bytes travels as type-8
datagrams, each sealed by the session like any control message (so each chunk is
authenticated on its own):

    message id (u32) | index (u16) | count (u16) | up to CHUNK_LEN bytes of the message

With our 32 bytes of overhead, IPv6 and UDP headers, and a root's relay wrapping, a chunk is at
most 1153 bytes on the wire. The receiver puts a message together within bounded memory; when
chunks stop coming before it is whole, it asks for the missing ones only (control message
"chunks": `m` message id, `i` indexes), and the sender, which keeps what it sent for a while,
sends those again. Pure: time comes in as ``now``.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from ..messages import MAX_MESSAGE_BYTES

CHUNK_LEN = 1024
HEADER = struct.Struct("<IHH")
MAX_CHUNKS = MAX_MESSAGE_BYTES // CHUNK_LEN
# Reassembly: per peer this many messages at once, in all this many bytes.
MAX_MESSAGES_PER_PEER = 2
MAX_REASSEMBLY_BYTES = 16 * 1024 * 1024
# Missing chunks are asked for after this much silence, this often at most, this many times;
# an incomplete message is abandoned after GIVE_UP_S without progress.
ASK_AFTER_S = 0.3
ASK_ATTEMPTS = 5
GIVE_UP_S = 5.0
MAX_ASKED_INDEXES = 256
# The sender keeps what it sent this long (and at most this many bytes) for such requests.
KEEP_SENT_S = 10.0
MAX_KEPT_BYTES = 32 * 1024 * 1024


def split(message: bytes, message_id: int) -> list[bytes]:
    """The chunk payloads of one message (more than CHUNK_LEN bytes, at most MAX_CHUNKS)."""
    count = -(-len(message) // CHUNK_LEN)
    if count > MAX_CHUNKS:
        raise ValueError(f"control message of {len(message)} bytes is over {MAX_CHUNKS} chunks")
    return [HEADER.pack(message_id, index, count) + message[index * CHUNK_LEN:
                                                            (index + 1) * CHUNK_LEN]
            for index in range(count)]  # fmt: skip


@dataclass
class _Partial:
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    progress: float = 0.0  # when a new chunk last arrived
    asked: float = -1e18
    asks: int = 0

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.parts][:MAX_ASKED_INDEXES]


class Reassembly:
    """Chunks from every peer; whole messages out. Drops are counted in ``drops``."""

    def __init__(self, drops) -> None:
        self._partials: OrderedDict[tuple[str, int], _Partial] = OrderedDict()
        self._done: OrderedDict[tuple[str, int], None] = OrderedDict()  # recently completed
        self._bytes = 0
        self._drops = drops

    def add(self, peer: str, chunk: bytes, now: float) -> bytes | None:
        """The whole message, once this chunk completes it."""
        if len(chunk) <= HEADER.size:
            self._drops["chunk_malformed"] += 1
            return None
        message_id, index, count = HEADER.unpack_from(chunk)
        data = chunk[HEADER.size :]
        last = index == count - 1
        if (not 2 <= count <= MAX_CHUNKS or index >= count or len(data) > CHUNK_LEN
                or (not last and len(data) != CHUNK_LEN)):  # fmt: skip
            self._drops["chunk_malformed"] += 1
            return None
        key = (peer, message_id)
        if key in self._done:
            return None  # a chunk sent again after the message was whole: nothing to do
        partial = self._partials.get(key)
        if partial is None:
            partial = self._start(key, count, now)
            if partial is None:
                return None
        if partial.count != count:
            self._drops["chunk_malformed"] += 1
            return None
        if index in partial.parts:
            return None
        partial.parts[index] = data
        partial.size += len(data)
        self._bytes += len(data)
        partial.progress = now
        if len(partial.parts) < count:
            return None
        self._forget(key)
        self._done[key] = None
        if len(self._done) > 256:
            self._done.popitem(last=False)
        return b"".join(partial.parts[i] for i in range(count))

    def _start(self, key: tuple[str, int], count: int, now: float) -> _Partial | None:
        mine = [k for k in self._partials if k[0] == key[0]]
        if len(mine) >= MAX_MESSAGES_PER_PEER:
            self._forget(mine[0])  # a newer message supersedes the peer's oldest
            self._drops["chunked_message_superseded"] += 1
        if self._bytes + count * CHUNK_LEN > MAX_REASSEMBLY_BYTES:
            self._drops["chunk_memory_full"] += 1
            return None
        partial = self._partials[key] = _Partial(count, progress=now)
        return partial

    def _forget(self, key: tuple[str, int]) -> None:
        partial = self._partials.pop(key)
        self._bytes -= partial.size

    def forget_peer(self, peer: str) -> None:
        for key in [k for k in self._partials if k[0] == peer]:
            self._forget(key)

    def due_requests(self, now: float) -> list[tuple[str, int, list[int]]]:
        """(peer, message id, missing indexes) to ask for now; abandons what is stuck."""
        requests = []
        for key, partial in list(self._partials.items()):
            if now - partial.progress > GIVE_UP_S:
                self._forget(key)
                self._drops["chunked_message_incomplete"] += 1
            elif (now - partial.progress >= ASK_AFTER_S and now - partial.asked >= ASK_AFTER_S
                  and partial.asks < ASK_ATTEMPTS):  # fmt: skip
                partial.asked, partial.asks = now, partial.asks + 1
                requests.append((key[0], key[1], partial.missing()))
        return requests

    def next_due(self) -> float:
        """When due_requests next has something to ask for or abandon."""
        due = math.inf
        for partial in self._partials.values():
            due = min(due, partial.progress + GIVE_UP_S)
            if partial.asks < ASK_ATTEMPTS:
                due = min(due, max(partial.progress, partial.asked) + ASK_AFTER_S)
        return due

    def pending_bytes(self) -> int:
        return self._bytes


class SentChunks:
    """What was sent in chunks, kept a while to answer "chunks" requests."""

    def __init__(self) -> None:
        self._sent: OrderedDict[tuple[str, int], tuple[float, list[bytes]]] = OrderedDict()
        self._bytes = 0

    def keep(self, peer: str, message_id: int, chunks: list[bytes], now: float) -> None:
        self._expire(now)
        self._sent[(peer, message_id)] = (now, chunks)
        self._bytes += sum(map(len, chunks))
        while self._bytes > MAX_KEPT_BYTES and len(self._sent) > 1:
            self._drop_oldest()

    def again(self, peer: str, message_id: int, indexes: list, now: float) -> list[bytes]:
        """The chunks asked for (those that exist), if the message is still kept."""
        self._expire(now)
        kept = self._sent.get((peer, message_id))
        if kept is None:
            return []
        chunks = kept[1]
        wanted = dict.fromkeys(i for i in indexes[:MAX_ASKED_INDEXES]
                               if isinstance(i, int) and 0 <= i < len(chunks))  # fmt: skip
        return [chunks[i] for i in wanted]

    def _expire(self, now: float) -> None:
        while self._sent and now - next(iter(self._sent.values()))[0] > KEEP_SENT_S:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, (_, chunks) = self._sent.popitem(last=False)
        self._bytes -= sum(map(len, chunks))
