#!/usr/bin/env python3
"""The full tunnel itself: a client's traffic to a server on the internet through an exit
node that forwards and masquerades it, beside Debian's wireguard-go set up as the same exit
(wg-quick's way), in one run.

    python3 scripts/bench/full_tunnel.py [--rounds 3] [--seconds 10] [--only oneservice]

    client 192.0.2.1 --- 192.0.2.2 exit 203.0.113.2 --- router --- 198.51.100.10 server (iperf3)

oneservice: a network of the two (a file in networks.d on each) whose default route goes via
the exit (10.147.17.2); the client has allowDefault, the exit allowExitNode (it turns on
forwarding and masquerades out of its uplink by itself). wireguard-go: the client's peer has
AllowedIPs 0.0.0.0/0, routed as wg-quick routes it (a table of its own, the tunnel's UDP
marked around it, the main table's defaults suppressed); the exit forwards and masquerades
with an nft rule, as wg-quick's PostUp lines do. iperf3 from the client to the server, one way
and both ways; the order alternates every round; medians, CPU seconds per GB of the VPN's
processes on the client and on the exit. Run as root from the repository; everything is
removed afterwards.
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
from tests.integration.nodes import NETWORK_ID, Node, member, write_home, write_local_conf
from tests.testbed import Host, Testbed, wait_until

CLIENT, EXIT, EXIT_UPLINK, SERVER = "192.0.2.1", "192.0.2.2", "203.0.113.2", "198.51.100.10"
VPNS = ("oneservice", "wireguard-go")


def lab(bed: Testbed) -> tuple[Host, Host]:
    """The server is beyond a router, as the internet is beyond an exit node's own LAN
    (which an exit does not serve unless allowExitNodeLan says so)."""
    client, exit_, router, server = (bed.host(n, forwarding=n == "router")
                                     for n in ("client", "exit", "router", "server"))
    bed.link(client, "eth0", exit_, "eth0", [f"{CLIENT}/24"], [f"{EXIT}/24"])
    bed.link(exit_, "uplink", router, "r-exit", [f"{EXIT_UPLINK}/24"], ["203.0.113.1/24"])
    bed.link(router, "r-server", server, "eth0", ["198.51.100.1/24"], [f"{SERVER}/24"])
    exit_.ip("route", "add", "default", "via", "203.0.113.1")
    server.ip("route", "add", "default", "via", "198.51.100.1")
    # Nothing routes back to the client's underlay: only what the exit masquerades can be
    # answered (traffic that skipped the tunnel gets nowhere).
    client.ip("route", "add", "default", "via", EXIT)
    server.spawn("iperf3", "-s", stdout=subprocess.DEVNULL)
    return client, exit_


def oneservice(client: Host, exit_: Host, work: Path) -> list[int]:
    ids = {"client": Identity.generate(), "exit": Identity.generate()}
    network = {"id": NETWORK_ID, "name": "bench", "members": [
        member(ids["client"], ["10.147.17.1/24"], [f"{CLIENT}/9993"]),
        member(ids["exit"], ["10.147.17.2/24"], [f"{EXIT}/9993"]),
    ], "routes": [{"target": "10.147.17.0/24"}, {"target": "0.0.0.0/0", "via": "10.147.17.2"}]}
    nodes = []
    for host, name in ((client, "client"), (exit_, "exit")):
        home = write_home(work / name, ids[name], [network])
        write_local_conf(home, {"settings": {"allowExitNode": name == "exit",
                                             "portMapping": False}})  # fmt: skip
        if name == "client":
            (home / "networks.d" / f"{NETWORK_ID}.local.conf").write_text(
                json.dumps({"allowDefault": True}))
        nodes.append(Node(host, home))
    nodes[0].wait_log("full tunnel on", timeout=30)
    return [n.process.pid for n in nodes]


def wireguard_go(client: Host, exit_: Host, work: Path) -> list[int]:
    keys = {}
    for name in ("client", "exit"):
        private = subprocess.run(["wg", "genkey"], capture_output=True, text=True).stdout.strip()
        (work / f"{name}.key").write_text(private + "\n")
        keys[name] = subprocess.run(["wg", "pubkey"], input=private, capture_output=True,
                                    text=True).stdout.strip()  # fmt: skip
    env = ["WG_PROCESS_FOREGROUND=1", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"]
    pids = []
    for host, name, other, address, allowed, endpoint in (
            (client, "client", "exit", "10.150.0.1", "0.0.0.0/0", f"{EXIT}:51820"),
            (exit_, "exit", "client", "10.150.0.2", "10.150.0.1/32", None)):  # fmt: skip
        device = f"wg-{host.namespace[-12:]}"[:15]  # (the control socket's name is global)
        pids.append(host.spawn("env", *env, "wireguard-go", "-f", device,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)
        wait_until(lambda host=host, device=device:
                   host.ip("link", "show", device, check=False).returncode == 0,
                   timeout=10, what=device)  # fmt: skip
        peer = ["peer", keys[other], "allowed-ips", allowed,
                *(["endpoint", endpoint] if endpoint else [])]  # fmt: skip
        host.run("wg", "set", device, "private-key", str(work / f"{name}.key"),
                 "listen-port", "51820", *peer)  # fmt: skip
        host.ip("addr", "add", f"{address}/24", "dev", device)
        host.ip("link", "set", device, "mtu", "1420", "up")
        if name == "client":  # wg-quick's routing of 0.0.0.0/0
            host.run("wg", "set", device, "fwmark", "51820")
            host.ip("route", "add", "0.0.0.0/0", "dev", device, "table", "51820")
            host.ip("rule", "add", "not", "fwmark", "51820", "table", "51820")
            host.ip("rule", "add", "table", "main", "suppress_prefixlength", "0")
        else:  # an exit as wg-quick's PostUp lines make one: forward and masquerade
            host.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            host.run("nft", "-f", "-", input=(
                "table ip wgexit {\n chain post {\n  type nat hook postrouting priority 100;\n"
                '  oifname "uplink" masquerade\n }\n}\n'))
    return pids


def one_run(name: str, seconds: int) -> dict[str, float]:
    bed = Testbed()
    try:
        client, exit_ = lab(bed)
        with tempfile.TemporaryDirectory() as work:
            pids = (oneservice if name == "oneservice" else wireguard_go)(client, exit_,
                                                                           Path(work))
            time.sleep(0.5)
            vpns.iperf(client, SERVER, 2, both_ways=False)  # the path settles (MSS, GRO)
            before = [vpns.cpu_seconds([p]) for p in pids]
            one_way = vpns.iperf(client, SERVER, seconds, both_ways=False)
            spent = [vpns.cpu_seconds([p]) - b for p, b in zip(pids, before, strict=True)]
            both = vpns.iperf(client, SERVER, seconds, both_ways=True)
        gigabytes = one_way * seconds / 8 / 1000
        return {"one_way": one_way, "both_ways": both, "client_s_per_gb": spent[0] / gigabytes,
                "exit_s_per_gb": spent[1] / gigabytes}  # fmt: skip
    finally:
        vpns.clean_up(bed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", default=",".join(VPNS))
    args = parser.parse_args()
    if vpns.cannot_run(need_tun=True):
        return 2
    names = [n for n in args.only.split(",") if n in VPNS]
    if "wireguard-go" in names and (why := vpns.missing("wireguard-go")):
        print(f"wireguard-go: {why}", file=sys.stderr)
        names.remove("wireguard-go")
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for round_number in range(args.rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            result = one_run(name, args.seconds)
            samples[name].append(result)
            print(f"round {round_number + 1} {name:13} one way {result['one_way']:6.0f} "
                  f"both ways {result['both_ways']:6.0f} Mbit/s, client "
                  f"{result['client_s_per_gb']:.1f} exit {result['exit_s_per_gb']:.1f} CPU s/GB",
                  file=sys.stderr, flush=True)  # fmt: skip
    print(f"full tunnel, client -> exit -> server: {args.rounds} rounds of {args.seconds} s, "
          "medians")
    print(f"{'vpn':<13} {'one way':>8} {'both ways':>10} {'client s/GB':>12} {'exit s/GB':>10}")
    medians = {}
    for name, runs in samples.items():
        m = medians[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:<13} {m['one_way']:>8.0f} {m['both_ways']:>10.0f} "
              f"{m['client_s_per_gb']:>12.1f} {m['exit_s_per_gb']:>10.1f}")
    if len(medians) == 2:
        ours, theirs = medians["oneservice"], medians["wireguard-go"]
        print(f"oneservice / wireguard-go: one way {ours['one_way'] / theirs['one_way']:.2f}, "
              f"both ways {ours['both_ways'] / theirs['both_ways']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
