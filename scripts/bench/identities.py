"""Real identities for the big-network benchmark, generated once (an scrypt run each: about
an hour of CPU for 10,000 on one core, minutes on several) and cached outside the repository.
Public identities only: the benchmark's many members never speak, they are listed."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from oneservice.identity import Identity

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oneservice"


def _one(_: int) -> str:
    return Identity.generate().public_text()


def cached_identities(count: int) -> list[Identity]:
    """``count`` valid public identities, from the cache or made now (and added to it)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "bench-identities.txt"
    lines = path.read_text().split() if path.exists() else []
    if len(lines) < count:
        with multiprocessing.Pool(os.cpu_count() or 1) as pool:
            for text in pool.imap_unordered(_one, range(count - len(lines)), chunksize=16):
                lines.append(text)
                if len(lines) % 500 == 0:
                    path.write_text("\n".join(lines) + "\n")  # progress survives an interrupt
        path.write_text("\n".join(lines) + "\n")
    return [Identity.parse(text, verify=False) for text in lines[:count]]


if __name__ == "__main__":
    import sys

    print(len(cached_identities(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)))
