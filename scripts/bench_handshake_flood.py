#!/usr/bin/env python3
"""Handshake flood: does a node stay usable while strangers flood it with valid initiations?

Topology (network namespaces, tests/integration/test_hostile_netns.py): victim, member,
attacker and newcomer behind one router. The victim is a root and shares a network with the
member. For 10 s the attacker sends valid initiations (fresh identities, the victim's real
key, correct mac1) to the victim: from spoofed addresses (a range local to the attacker's own
namespace, so every answer comes back to it), from four real addresses that answer cookie
replies, or both. Meanwhile the member pings the victim through the tunnel every 100 ms, and
1 s into the flood a newcomer the victim never heard of starts and connects to it as its root.
A fresh topology per case.

The last two cases send few initiations (--strangers, 40 a second from the four real
addresses), each from a fresh identity, to the victim as a root and as a plain member (no
newcomer then: it would need the victim as its root): what strangers cost in CPU.

Run as root from the repository: `python3 scripts/bench_handshake_flood.py [--seconds 10]
[--rate 10000] [--strangers 40] [--json F]`. Goals (issue 13): ping median under 50 ms with
0 % loss, the newcomer connected within 5 s, nothing queued 1 s after the flood; (issue 29)
strangers cost a root at most 25 % of a core and a plain member at most 5 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_hostile_netns import build, run_flood
from tests.testbed import Testbed, missing_requirements


def one_case(seconds: float, spoofed: int, real: int, root: bool = True) -> dict:
    bed = Testbed()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lab = build(bed, Path(tmp), root=root)
            lab.start("victim")
            lab.start("member")
            lab.nodes["member"].wait_log("session established")
            time.sleep(1)
            return run_flood(lab, seconds, spoofed, real, newcomer=root)
    finally:
        complaints = bed.cleanup()
        if complaints:
            raise SystemExit("; ".join(complaints))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=10_000, help="initiations per second")
    parser.add_argument("--strangers", type=int, default=40,
                        help="fresh identities per second in the strangers cases")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    reason = missing_requirements(need_tun=True)
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    cases = {
        "spoofed sources": (args.rate, 0, True),
        "real sources (4)": (0, args.rate, True),
        "both (80 % spoofed)": (args.rate * 8 // 10, args.rate * 2 // 10, True),
        # Strangers: few initiations, each a fresh identity (each costs a check at a root).
        f"strangers {args.strangers}/s, root": (0, args.strangers, True),
        f"strangers {args.strangers}/s, member": (0, args.strangers, False),
    }
    results = {}
    print(f"{args.rate} valid initiations/s for {args.seconds:g} s; member pings every 100 ms")
    print(f"{'case':22} {'ping median':>11} {'max':>8} {'lost':>6} {'newcomer':>9} "
          f"{'queued 1 s after':>16} {'CPU (loop)':>13} {'cookies':>8}")  # fmt: skip
    for name, (spoofed, real, root) in cases.items():
        figures = results[name] = one_case(args.seconds, spoofed, real, root)
        ping = figures["ping"]
        newcomer = figures["newcomerConnectS"]
        queued = figures["socketBacklogBytesAfter1s"] + (figures["initiationsWaitingAfter1s"] or 0)
        print(f"{name:22} {ping['medianMs']:>8} ms {ping['maxMs']:>5} ms "
              f"{ping['lost']:>3}/{ping['sent']:<3} "
              f"{'never' if newcomer is None else f'{newcomer} s':>8} {queued:>16} "
              f"{figures['victimCpuPercent']:>5}% ({figures['victimLoopCpuPercent']:>4}%) "
              f"{figures['cookieRepliesSent']:>8}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
