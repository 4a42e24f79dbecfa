"""Memory and join-time benchmarks (ours only; see run.py)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vpns

from oneservice.identity import Identity
from tests.integration.nodes import NETWORK_ID, Node, member, write_home
from tests.integration.test_full_tunnel_netns import GW_UPLINK, GW_VIRTUAL, TunnelLab
from tests.testbed import Testbed, wait_until

FARM = Path(__file__).resolve().parent / "peer_farm.py"
REPO = Path(__file__).resolve().parents[2]
IDLE_S = 30
# After the last session is up: handshakes retried under the farm's per-source rate limit and
# the first probes are over by then.
SETTLE_S = 15


def memory(args: argparse.Namespace) -> dict:
    """Our node's VmRSS and CPU (every thread, from schedstat) while idle with N peers (run
    in a farm process on host b), and its peak VmRSS since start (VmHWM). Measured as a node
    runs from its second start on: with its bytecode cached (Python writes it at the first
    import; compiling at every start instead, as under PYTHONDONTWRITEBYTECODE, leaves
    ~1 MiB more)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "oneservice")],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    results = {}
    for count in (int(n) for n in args.peers.split(",")):
        bed = Testbed()
        try:
            a, b = bed.host("a"), bed.host("b")
            bed.link(a, "eth0", b, "eth0", [f"{vpns.A_UNDERLAY}/24"], [f"{vpns.B_UNDERLAY}/24"])
            with tempfile.TemporaryDirectory() as work:
                ours = Identity.generate()
                farm = [Identity.generate() for _ in range(count)]
                network = {"id": NETWORK_ID, "name": "memory", "members": [
                    member(ours, ["10.147.0.1/16"], [f"{vpns.A_UNDERLAY}/9993"]),
                    *(member(p, [f"10.147.{1 + n // 250}.{1 + n % 250}/16"],
                             [f"{vpns.B_UNDERLAY}/{20000 + n}"]) for n, p in enumerate(farm)),
                ]}  # fmt: skip
                spec = Path(work) / "farm.json"
                spec.write_text(json.dumps({"address": vpns.B_UNDERLAY, "base_port": 20000,
                                            "secrets": [p.secret_text() for p in farm],
                                            "network": network}))  # fmt: skip
                farm_process = b.python(str(FARM), str(spec), stdout=subprocess.PIPE, text=True)
                assert farm_process.stdout is not None
                farm_process.stdout.readline()
                node = Node(a, write_home(Path(work) / "a", ours, [network]))
                node.wait_log("oneservice started", timeout=120)
                # Peers, not lines: a peer whose handshake crossed ours is logged twice.
                wait_until(lambda node=node, count=count: len({
                    line.split("peer ", 1)[1].split(":")[0] for line in node.log
                    if "session established" in line}) >= count,
                    timeout=120, what=f"{count} peers connected")  # fmt: skip
                time.sleep(SETTLE_S)
                cpu_before = vpns.run_time_seconds(node.process.pid)
                time.sleep(IDLE_S)
                cpu = vpns.run_time_seconds(node.process.pid) - cpu_before
                rss = vpns.rss_kib(node.process.pid) / 1024
                peak = vpns.rss_kib(node.process.pid, "VmHWM") / 1024
                results[count] = {"rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1),
                                  "cpu_percent": round(100 * cpu / IDLE_S, 2)}  # fmt: skip
                print(f"{count:4} peers: VmRSS {rss:6.1f} MiB (peak {peak:5.1f}), idle CPU "
                      f"{100 * cpu / IDLE_S:5.2f} %", flush=True)  # fmt: skip
        finally:
            bed.cleanup()
    return {"idle_s": IDLE_S, "results": results}


def join(args: argparse.Namespace) -> dict:
    """Seconds from `join` (already authorized) to the first ping through the network, and
    from allowDefault=1 to the first answer from the internet through the gateway."""
    samples: dict[str, list[float]] = {"join_to_packet": [], "allow_default_to_packet": []}
    for trial in range(args.rounds):
        bed = Testbed()
        try:
            with tempfile.TemporaryDirectory() as work:
                lab = TunnelLab(bed, Path(work))
                for name in ("ctrl", "gw", "client"):
                    lab.start(name)
                nwid = lab.create_network("ctrl", {
                    "name": "join", "routes": [{"target": "10.147.17.0/24"},
                                               {"target": "0.0.0.0/0", "via": GW_VIRTUAL}],
                    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10",
                                           "ipRangeEnd": "10.147.17.99"}],
                })  # fmt: skip
                lab.api("gw", "POST", f"/network/{nwid}", {})
                lab.authorize("ctrl", nwid, "gw", ipAssignments=[GW_VIRTUAL])
                lab.authorize("ctrl", nwid, "client")
                lab.wait_status("gw", nwid, "OK")
                client = lab.hosts["client"]
                start = time.monotonic()
                lab.api("client", "POST", f"/network/{nwid}", {})
                while client.run("ping", "-c", "1", "-W", "0.1", GW_VIRTUAL,
                                 check=False).returncode != 0:  # fmt: skip
                    if time.monotonic() - start > 30:
                        raise RuntimeError("no packet through the network within 30 s")
                samples["join_to_packet"].append(time.monotonic() - start)
                start = time.monotonic()
                lab.set_flags(nwid, allowDefault=True)
                while lab.whoami(timeout=0.3) != GW_UPLINK:
                    if time.monotonic() - start > 30:
                        raise RuntimeError("no answer through the full tunnel within 30 s")
                samples["allow_default_to_packet"].append(time.monotonic() - start)
                print(f"trial {trial + 1}: join -> packet {samples['join_to_packet'][-1]:.2f} s, "
                      f"allowDefault -> packet {samples['allow_default_to_packet'][-1]:.2f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            bed.cleanup()
    medians = {key: round(statistics.median(values), 3) for key, values in samples.items()}
    print(f"median join -> first packet {medians['join_to_packet']} s; allowDefault -> first "
          f"packet through the gateway {medians['allow_default_to_packet']} s")  # fmt: skip
    return {"trials": args.rounds, "samples": samples, "median_s": medians}
