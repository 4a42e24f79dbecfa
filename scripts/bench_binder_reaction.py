#!/usr/bin/env python3
"""How fast the binder follows interface changes: time from the change (the moment the `ip`
command starts) to the binder's event, per kind of change, several trials, in namespaces.

Run as root from the repository: `python3 scripts/bench_binder_reaction.py [--trials N]`.
Prints a table (median and worst, ms) and writes JSON with --json FILE. Goal: < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.drivers import BinderDriver
from tests.testbed import Testbed, missing_requirements, wait_until

# The kernel's linkwatch batches carrier changes that come within a second of the previous
# batch; real networks change far less often than a benchmark loop, so each change waits this
# long first and the figures show what a roaming laptop sees.
SETTLE_S = 1.2


def measure(driver: BinderDriver, action, event_kind: str, socket_filter=lambda e: True) -> float:
    time.sleep(SETTLE_S)
    seen = len(driver.events)
    started = time.monotonic()
    action()
    event = wait_until(
        lambda: next((e for e in driver.events[seen:]
                      if e["event"] == event_kind and socket_filter(e)), None),
        timeout=10, what=event_kind,
    )  # fmt: skip
    return (event["t"] - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reason = missing_requirements()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    bed = Testbed()
    results: dict[str, list[float]] = {}
    try:
        node, router = bed.host("node"), bed.host("router")
        bed.link(node, "wifi0", router, "r-wifi", ["192.0.2.2/24"], ["192.0.2.1/24"])
        driver = BinderDriver(node)
        cases = {
            "link down": (lambda: node.ip("link", "set", "wifi0", "down"), "down",
                          lambda: node.ip("link", "set", "wifi0", "up"), "up"),
            "carrier lost": (lambda: router.ip("link", "set", "r-wifi", "down"), "down",
                             lambda: router.ip("link", "set", "r-wifi", "up"), "up"),
            "link up": (lambda: node.ip("link", "set", "wifi0", "up"), "up",
                        lambda: node.ip("link", "set", "wifi0", "down"), "down"),
            "address changed": (
                lambda: node.ip("addr", "replace", "192.0.2.3/24", "dev", "wifi0"), "address",
                lambda: node.ip("addr", "flush", "dev", "wifi0", "to", "192.0.2.3/32"), None),
        }  # fmt: skip
        for _ in range(args.trials):
            for name, (action, kind, undo, undo_kind) in cases.items():
                if name == "link up":
                    measure(driver, undo, "down")
                results.setdefault(name, []).append(measure(driver, action, kind))
                if name != "link up" and undo_kind:
                    measure(driver, undo, undo_kind)
                elif not undo_kind:
                    undo()
                    time.sleep(0.1)
        print(f"{'change':<18}{'median ms':>10}{'worst ms':>10}  trials")
        for name, values in results.items():
            median, worst = statistics.median(values), max(values)
            print(f"{name:<18}{median:>10.1f}{worst:>10.1f}  {len(values)}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        complaints = bed.cleanup()
        for complaint in complaints:
            print(f"WARNING: {complaint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
