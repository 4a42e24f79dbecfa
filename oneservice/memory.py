"""Keep memory that was freed from staying resident (glibc's allocator)."""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def pin_mmap_threshold() -> bool:
    """glibc raises its mmap threshold after a large block is freed, so later large blocks
    (scrypt takes 16 MiB for every identity it checks) come from the heap and stay resident
    after they are freed: ~10 MiB for good in an idle node. With the threshold pinned, every
    large block is mapped on its own and given back when freed. False where not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
