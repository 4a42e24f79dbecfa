#!/usr/bin/env python3
"""Relayed throughput beside direct, on one host: how fast a root carries a pair that cannot
reach each other, and what each GB costs the root.

    python3 scripts/bench/relay.py [--rounds 2] [--seconds 8]

Three nodes in namespaces behind one router (tests/integration/test_controller_netns.py's
lab): ctrl (root and controller), gw and client. iperf3 TCP from the client to gw through
the tunnel, first direct, then with everything between client and gw dropped at the router
(so the root relays), alternating each round. Prints Mbit/s and the CPU seconds per GB of
the root and of both members. Run as root from the repository; everything is removed
afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vpns

from tests.integration.test_controller_netns import Lab, block, members_in_touch
from tests.testbed import Testbed, wait_until


def preferred_via(lab: Lab, peer: str) -> str:
    address = lab.identities[peer].address
    paths = (lab.api("client", "GET", f"/peer/{address}")[1] or {}).get("paths", [])
    # (Older nodes say no kind: a relay path names its root in "via".)
    return next((p.get("kind") or ("relayed" if p.get("via") else "direct")
                 for p in paths if p["preferred"]), "")  # fmt: skip


def one_round(seconds: int) -> dict[str, dict[str, float]]:
    bed = Testbed()
    try:
        with tempfile.TemporaryDirectory() as work:
            lab = Lab(bed, Path(work))
            gw_ip = members_in_touch(lab)
            lab.hosts["gw"].spawn("iperf3", "-s", "-B", gw_ip, stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            pids = {name: lab.nodes[name].process.pid for name in ("ctrl", "client", "gw")}
            results = {}
            for mode in ("direct", "relayed"):
                if mode == "relayed":
                    block(lab.router, "198.51.100.10", "203.0.113.10")
                    wait_until(lambda: preferred_via(lab, "gw") == "relayed", timeout=15,
                               interval=0.2, what="the relay to carry the pair")  # fmt: skip
                    vpns.iperf(lab.hosts["client"], gw_ip, 2, both_ways=False)  # MSS settles
                before = {n: vpns.cpu_seconds([p]) for n, p in pids.items()}
                mbits = vpns.iperf(lab.hosts["client"], gw_ip, seconds, both_ways=False)
                gigabytes = mbits * seconds / 8 / 1000
                results[mode] = {"mbit_s": mbits, **{
                    f"{n}_cpu_s_per_gb": (vpns.cpu_seconds([p]) - before[n]) / gigabytes
                    for n, p in pids.items()}}  # fmt: skip
            return results
    finally:
        vpns.clean_up(bed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if vpns.cannot_run(need_tun=True):
        return 2
    rounds = [one_round(args.seconds) for _ in range(args.rounds)]
    print(f"relay benchmark: {args.rounds} rounds of {args.seconds} s, medians")
    print(f"{'path':<8} {'Mbit/s':>8} {'root s/GB':>10} {'client s/GB':>12} {'gw s/GB':>8}")
    for mode in ("direct", "relayed"):
        median = {key: statistics.median(r[mode][key] for r in rounds)
                  for key in rounds[0][mode]}  # fmt: skip
        print(f"{mode:<8} {median['mbit_s']:>8.0f} {median['ctrl_cpu_s_per_gb']:>10.2f} "
              f"{median['client_cpu_s_per_gb']:>12.2f} {median['gw_cpu_s_per_gb']:>8.2f}")
    direct = statistics.median(r["direct"]["mbit_s"] for r in rounds)
    relayed = statistics.median(r["relayed"]["mbit_s"] for r in rounds)
    print(f"relayed / direct: {relayed / direct:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
