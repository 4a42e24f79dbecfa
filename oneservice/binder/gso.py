"""UDP segmentation offload: which datagrams one send can carry, and what a refused send
says about its socket (pure; the binder sends)."""

from __future__ import annotations

import errno
from collections.abc import Iterable

# With UDP segmentation offload (where the backend has it: UDP_OFFLOADS) one send carries up
# to this many datagrams of one size, so a full-speed burst costs one system call, not dozens.
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000
# What a GSO send's error says about the socket. These mean the kernel or the device cannot
# segment UDP at all (EIO: the device has no transmit checksumming, which UDP_SEGMENT needs;
# EINVAL, ENOPROTOOPT: an old kernel), but EINVAL also answers one batch that does not fit
# (a segment over the path's MTU): so those two count only at a socket's first GSO send, EIO
# whenever it comes (as wireguard-go decides). Any other error is the batch's, not the
# socket's: the batch goes one datagram per send and the next batch uses GSO again.
GSO_UNSUPPORTED_ALWAYS = frozenset({errno.EIO})
GSO_UNSUPPORTED_AT_FIRST = frozenset({errno.EINVAL, errno.ENOPROTOOPT})


def errno_name(error: OSError) -> str:
    """An OSError's errno as its symbolic name (EMSGSIZE), for counters people read."""
    return errno.errorcode.get(error.errno or 0, str(error.errno))


def gso_unsupported(error: OSError, proven: bool) -> bool:
    """Whether a GSO send's error means this socket can never use GSO (see the sets above)."""
    return error.errno in GSO_UNSUPPORTED_ALWAYS or (
        not proven and error.errno in GSO_UNSUPPORTED_AT_FIRST
    )


def uniform_size(datagrams: list[bytes]) -> int:
    """The size every datagram but a shorter last one has, or 0 if they differ otherwise.
    Looked at with C-level calls (a relay's batches come without it: sized one by one in
    Python, they were a root's largest Python cost)."""
    lengths = list(map(len, datagrams))
    first = lengths[0]
    if lengths[-1] <= first and lengths.count(first) >= len(lengths) - (lengths[-1] != first):
        return first
    return 0


def gso_batches(
    runs: Iterable[tuple[int, tuple, list[bytes], int]],
) -> list[tuple[int, tuple, list[bytes]]]:
    """Cut and join runs of (socket id, destination, datagrams, uniform size) into batches
    that one GSO send can carry: same socket and destination, all of the first one's size
    except a shorter last one, within the kernel's limits. A run's uniform size, when not 0,
    says its datagrams are all of that size but a shorter last one (NodeCore knows this of
    a super-packet's segments): then they need no look at each."""
    batches: list[tuple[int, tuple, list[bytes]]] = []
    open_batch = False  # the last batch can still grow
    for socket_id, address, datagrams, uniform in runs:
        at, count = 0, len(datagrams)
        if not uniform and count > 1:
            uniform = uniform_size(datagrams)
        while at < count:
            if open_batch:
                last_id, last_address, items = batches[-1]
                size = len(items[0])
                room = min(MAX_GSO_SEGMENTS, MAX_GSO_BYTES // size) - len(items)
                if last_id == socket_id and last_address == address and room > 0:
                    if uniform == size:
                        # All of this size but maybe the run's last: as many as fit at once.
                        # (A flush holds several super-packets to one peer: joined one by
                        # one, they made this loop a large part of a sender's Python time.)
                        taken = datagrams[at : at + room]
                        items.extend(taken)
                        open_batch = len(taken[-1]) == size
                        at += len(taken)
                        continue
                    datagram = datagrams[at]
                    if len(datagram) <= size:
                        items.append(datagram)
                        open_batch = len(datagram) == size  # a shorter one ends the batch
                        at += 1
                        continue
            # A new batch: as much of the run as fits at once where its sizes are known.
            size = len(datagrams[at])
            end = min(count, at + max(1, min(MAX_GSO_SEGMENTS, MAX_GSO_BYTES // size)))
            if uniform and size == uniform:
                open_batch = end < count or len(datagrams[end - 1]) == size
            else:
                end, open_batch = at + 1, True
            batches.append((socket_id, address, datagrams[at:end]))
            at = end
    return batches
