#!/usr/bin/env python3
"""Benchmarks beside the peers, in network namespaces; prints a table and writes JSON.

    python3 scripts/bench/run.py throughput [--rounds 3] [--seconds 10] [--only a,b]
    python3 scripts/bench/run.py memory      # our idle RSS and CPU with 1, 10, 100 peers
    python3 scripts/bench/run.py join        # join -> first packet; allowDefault -> first packet
    python3 scripts/bench_handover.py        # handover per case (see that script)

Throughput: two hosts on one veth (192.0.2.1 -- 192.0.2.2); each VPN in turn carries iperf3
TCP one way and both ways; the order rotates every round and medians are reported, with
ours/theirs ratios (the headline: these machines are noisy) and the VPN processes' CPU
seconds per GB moved. Run as root from the repository; everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import footprint
import vpns

from tests.testbed import Testbed, missing_requirements

ALL = ["oneservice", "wireguard-go", "nebula", "openvpn", "zerotier"]


def throughput(args: argparse.Namespace) -> dict:
    names = [n for n in (args.only.split(",") if args.only else ALL)]
    skipped = {n: why for n in names if (why := vpns.missing(n, args.zerotier))}
    runnable = [n for n in names if n not in skipped]
    samples: dict[str, dict[str, list[float]]] = {
        n: {"one_way": [], "both_ways": [], "cpu_s_per_gb": []} for n in runnable
    }
    for round_number in range(args.rounds):
        shift = round_number % len(runnable)
        for name in runnable[shift:] + runnable[:shift]:
            bed = Testbed()
            try:
                a, b = bed.host("a"), bed.host("b")
                bed.link(a, "eth0", b, "eth0", [f"{vpns.A_UNDERLAY}/24"], [f"{vpns.B_UNDERLAY}/24"])
                with tempfile.TemporaryDirectory() as work:
                    tunnel = vpns.start(name, a, b, Path(work))
                    b.spawn("iperf3", "-s", stdout=subprocess.DEVNULL)
                    time.sleep(0.5)
                    cpu_before = vpns.cpu_seconds(tunnel.pids)
                    one_way = vpns.iperf(a, tunnel.peer_address, args.seconds, both_ways=False)
                    cpu = vpns.cpu_seconds(tunnel.pids) - cpu_before
                    both = vpns.iperf(a, tunnel.peer_address, args.seconds, both_ways=True)
                gigabytes = one_way * args.seconds / 8 / 1000
                samples[name]["one_way"].append(one_way)
                samples[name]["both_ways"].append(both)
                samples[name]["cpu_s_per_gb"].append(cpu / gigabytes if gigabytes else 0.0)
                print(f"round {round_number + 1} {name:13} one way {one_way:8.0f} Mbit/s, "
                      f"both ways {both:8.0f} Mbit/s, {cpu / max(gigabytes, 1e-9):5.1f} CPU s/GB",
                      file=sys.stderr, flush=True)  # fmt: skip
            except Exception as exc:
                skipped[name] = f"failed: {exc}"
                print(f"round {round_number + 1} {name}: failed: {exc}", file=sys.stderr)
            finally:
                bed.cleanup()
    results = {
        name: {key: statistics.median(values) for key, values in series.items() if values}
        for name, series in samples.items()
        if series["one_way"]
    }
    ours = results.get("oneservice", {})
    for name, result in results.items():
        if ours and name != "oneservice":
            result["ratio_one_way"] = ours["one_way"] / result["one_way"]
            result["ratio_both_ways"] = ours["both_ways"] / result["both_ways"]
    rows = [[name, f"{r['one_way']:.0f}", f"{r['both_ways']:.0f}", f"{r['cpu_s_per_gb']:.1f}",
             f"{r['ratio_one_way']:.2f}" if "ratio_one_way" in r else "-",
             f"{r['ratio_both_ways']:.2f}" if "ratio_both_ways" in r else "-"]
            for name, r in results.items()]  # fmt: skip
    print(table(["vpn", "one way Mbit/s", "both ways Mbit/s", "CPU s/GB",
                 "ours/theirs (1)", "ours/theirs (2)"], rows))  # fmt: skip
    for name, why in skipped.items():
        print(f"{name}: {why}")
    return {"rounds": args.rounds, "seconds": args.seconds, "results": results,
            "skipped": skipped}  # fmt: skip


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True))
                     for row in [headers, *rows])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["throughput", "memory", "join"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--zerotier", help="path to a zerotier-one binary (never downloaded)")
    parser.add_argument("--peers", default="1,10,100", help="memory: peer counts")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    reason = missing_requirements(need_tun=True)
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    if args.what == "throughput":
        result = throughput(args)
    else:
        result = footprint.memory(args) if args.what == "memory" else footprint.join(args)
    result["measured"] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                          "machine": platform.node(), "cpus": os.cpu_count(),
                          "kernel": platform.release()}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
