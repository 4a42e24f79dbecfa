#!/usr/bin/env python3
"""The local API under a crowd: a burst of legitimate requests, and a local user holding
connections half-open.

    python3 scripts/bench/api_burst.py [--requests 1000] [--rounds 3]

One node in a namespace, run with 1024 file descriptors as a service usually is. Each round:
N concurrent GET /status (each on its own connection, all sent before any answer is read;
tests/integration/burst_requests.py), how many were answered and how long the burst took;
then N connections held half-open (tests/integration/hold_connections.py) and how long a
GET /status takes meanwhile. Run as root from the repository; everything is removed
afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vpns

from oneservice.identity import Identity
from tests.integration.nodes import api, start_with_descriptors, write_home
from tests.testbed import Testbed


def one_round(requests: int) -> dict:
    bed = Testbed()
    try:
        with tempfile.TemporaryDirectory() as work:
            host = bed.host("solo")
            home = write_home(Path(work) / "solo", Identity.generate(), [])
            start_with_descriptors(host, home)
            token = (home / "authtoken.secret").read_text().strip()
            burst = host.python("tests/integration/burst_requests.py", "9993", token,
                                str(requests), stdout=subprocess.PIPE, text=True)  # fmt: skip
            summary = json.loads(burst.communicate(timeout=120)[0])
            hog = host.python("tests/integration/hold_connections.py", "9993", str(requests),
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert hog.stdout is not None
            hog.stdout.readline()
            started = time.monotonic()
            code, _ = api(host, home, "GET", "/status")
            held_ms = (time.monotonic() - started) * 1000 if code == 200 else float("inf")
            return {"answered": summary["answered"].get("200", 0),
                    "burst_s": summary["seconds"], "held_ms": held_ms}  # fmt: skip
    finally:
        vpns.clean_up(bed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if vpns.cannot_run():
        return 2
    rounds = [one_round(args.requests) for _ in range(args.rounds)]
    for n, r in enumerate(rounds, 1):
        print(f"round {n}: {r['answered']}/{args.requests} concurrent GET /status answered "
              f"in {r['burst_s']:.2f} s; with {args.requests} connections held half-open, "
              f"GET /status in {r['held_ms']:.0f} ms")  # fmt: skip
    print(f"median: {statistics.median(r['answered'] for r in rounds)} answered, burst "
          f"{statistics.median(r['burst_s'] for r in rounds):.2f} s, held "
          f"{statistics.median(r['held_ms'] for r in rounds):.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
