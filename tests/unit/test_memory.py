"""Freed scrypt blocks must not stay resident (glibc's moving mmap threshold)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.testbed import REPO_ROOT

# Which way glibc is called: our extension (oneservice/_allocator.c), or ctypes without it.
WAYS = {
    "extension": "import oneservice._allocator",
    "ctypes": "import sys; sys.modules['oneservice._allocator'] = None",
}

PROBE = """
import hashlib, re, sys
from oneservice.memory import tune_malloc
if sys.argv[1] == "pin":
    assert tune_malloc()
rss = lambda: int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
before = rss()
for _ in range(3):  # as when a node checks the identities of a network's members
    hashlib.scrypt(b"x", salt=b"s", n=2**14, r=8, p=1, maxmem=64 * 2**20, dklen=32)
print(rss() - before)
"""


def resident_growth_kib(mode: str, way: str) -> int:
    result = subprocess.run([sys.executable, "-c", f"{WAYS[way]}\n{PROBE}", mode],
                            cwd=REPO_ROOT, check=True, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    return int(result.stdout)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


@linux_only
@pytest.mark.parametrize("way", WAYS)
def test_pinned_threshold_gives_scrypt_memory_back(way: str):
    assert resident_growth_kib("plain", way) > 12 * 1024, "the probe shows the problem unpinned"
    assert resident_growth_kib("pin", way) < 4 * 1024


@linux_only
@pytest.mark.parametrize("way", WAYS)
def test_freed_heap_memory_is_given_back(way: str):
    probe = WAYS[way] + """
import re, sys
from oneservice.memory import give_back, tune_malloc
assert tune_malloc()
rss = lambda: int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
before = rss()
blocks = [bytes(2000) for _ in range(8000)]  # 16 MB of heap, then freed but every 50th
kept = blocks[::50]
del blocks
held = rss() - before
assert give_back()
print(held, rss() - before, "ctypes" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    held, after, through_ctypes = result.stdout.split()
    assert through_ctypes == str(way == "ctypes"), "ctypes is loaded only without the extension"
    held, after = int(held), int(after)
    assert held > 8 * 1024, "the probe's freed blocks stay resident until given back"
    assert after < 2 * 1024


@linux_only
@pytest.mark.parametrize("way", WAYS)
def test_a_flush_s_freed_datagrams_stay_for_the_next_flush(way: str):
    """Bulk traffic frees a few MB of datagrams at every flush and takes as much again at the
    next: the heap keeps them (64 MiB trim threshold) instead of shrinking and faulting each
    page in again (4 MiB: 10,000-28,000 page faults a second on a receiving node)."""
    probe = WAYS[way] + """
import resource
from oneservice.memory import tune_malloc
assert tune_malloc()
def flush():  # 96 reads of 64 KiB, as a batch of GRO reads holds them, then all freed
    held = [bytearray(64 * 1024) for _ in range(96)]
    del held
flush()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    flush()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert int(result.stdout) < 200, f"{result.stdout.strip()} page faults in 10 flushes"
