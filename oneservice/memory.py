"""glibc's allocator: freed scrypt blocks given back, the data path's buffers kept."""

from __future__ import annotations

import sys
from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value
# Free memory the heap may keep at its top instead of giving it back at once. The data path
# holds a few MB of datagrams between two flushes (64 reads of up to 64 KiB, their plaintexts,
# the merged frames) and frees them together. With glibc's 128 KiB the heap shrank and grew
# again at every flush, and the page faults cost the receiving node half its system time;
# with 4 MiB it still did at most flushes of bulk traffic (10,000-28,000 page faults a second
# on the receiving node, against 220 with 64 MiB; docs/PERFORMANCE.md, seventeenth session).
# The service gives back what is free every 30 s (give_back), so an idle node keeps none.
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def _libc() -> Any:
    """glibc's mallopt and malloc_trim: from our extension (oneservice/_allocator.c), else
    through ctypes (loaded only then: 0.4 MiB); None where not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from . import _allocator
    except ImportError:
        pass
    else:
        return _allocator
    import ctypes

    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None  # not glibc (musl has neither)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return libc  # (its two functions, called as the extension's are)


def give_back() -> bool:
    """Return the heap's free memory to the system (glibc's malloc_trim), what the trim
    threshold keeps and what lies between used blocks alike: the service does this now and
    then, so a burst of traffic or a big config leaves no resident memory behind. False where
    not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def tune_malloc() -> bool:
    """Two glibc allocator settings, made at start; False where not glibc.

    glibc raises its mmap threshold after a large block is freed, so later large blocks
    (scrypt takes 16 MiB for every identity it checks) come from the heap and stay resident
    after they are freed: ~10 MiB for good in an idle node. With the threshold pinned, every
    large block is mapped on its own and given back when freed. Pinning it also pins the
    trim threshold, which is set to TRIM_THRESHOLD_BYTES: at most that much of the heap stays
    resident once freed, until the next give_back."""
    libc = _libc()
    if libc is None:
        return False
    return (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)  # fmt: skip
