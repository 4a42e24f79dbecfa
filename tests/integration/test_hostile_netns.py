"""Hostile peers: a flood of valid handshakes stalls nothing (issue 13, item 1).

Topology: victim, member, attacker and newcomer, each behind one router. The victim is a root
(relay) and shares a network with the member; the newcomer, whom the victim has never heard of,
uses the victim as its root. The attacker sends valid initiations to the victim from spoofed
addresses (a range local to the attacker's own namespace, so every answer comes back to it)
and from real addresses that answer cookie replies.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import (
    NETWORK_ID,
    Node,
    api,
    member,
    write_home,
    write_local_conf,
)
from tests.testbed import REPO_ROOT, Host, Testbed, wait_until

pytestmark = pytest.mark.integration

VICTIM_IP, MEMBER_IP = "192.0.2.10", "198.51.100.10"
ATTACKER_IP, NEWCOMER_IP = "203.0.113.10", "10.0.3.10"
REAL_SOURCES = ("203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14")
SPOOFED_NET = "10.99.0.0/16"
VICTIM_VIRTUAL = "10.147.17.1"
PING_INTERVAL_S = 0.1
RTT = re.compile(r"icmp_seq=\d+ .*time=([\d.]+) ms")


@dataclass
class FloodLab:
    hosts: dict[str, Host]
    homes: dict[str, Path]
    identities: dict[str, Identity]
    nodes: dict[str, Node] = field(default_factory=dict)

    def start(self, name: str) -> Node:
        node = self.nodes[name] = Node(self.hosts[name], self.homes[name])
        node.wait_log("oneservice started")
        return node

    def status(self, name: str) -> dict:
        return api(self.hosts[name], self.homes[name], "GET", "/status")[1]


def build(bed: Testbed, tmp_path: Path, root: bool = True) -> FloodLab:
    """``root``: the victim is a root (else a plain member, which has little reason to meet
    strangers)."""
    router = bed.host("router", forwarding=True)
    hosts = {name: bed.host(name) for name in ("victim", "member", "attacker", "newcomer")}
    for name, ip in (("victim", VICTIM_IP), ("member", MEMBER_IP), ("attacker", ATTACKER_IP),
                     ("newcomer", NEWCOMER_IP)):  # fmt: skip
        gateway = ip.rsplit(".", 1)[0] + ".1"
        bed.link(hosts[name], "eth0", router, f"r-{name}", [f"{ip}/24"], [f"{gateway}/24"])
        hosts[name].ip("route", "add", "default", "via", gateway)
    attacker = hosts["attacker"]
    for ip in REAL_SOURCES:
        attacker.ip("addr", "add", f"{ip}/24", "dev", "eth0")
    # The spoofed range is the attacker's own (local to its namespace): answers come back.
    attacker.ip("route", "add", "local", SPOOFED_NET, "dev", "lo")
    router.ip("route", "add", SPOOFED_NET, "via", ATTACKER_IP)
    identities = {name: Identity.generate() for name in ("victim", "member", "newcomer")}
    network = {"id": NETWORK_ID, "name": "lab", "members": [
        member(identities["victim"], [f"{VICTIM_VIRTUAL}/24"], [f"{VICTIM_IP}/9993"]),
        member(identities["member"], ["10.147.17.2/24"], [f"{MEMBER_IP}/9993"]),
    ]}  # fmt: skip
    homes = {
        "victim": write_home(tmp_path / "victim", identities["victim"], [network]),
        "member": write_home(tmp_path / "member", identities["member"], [network]),
        "newcomer": write_home(tmp_path / "newcomer", identities["newcomer"], []),
    }
    write_local_conf(homes["victim"], {"settings": {"relay": root}})
    write_local_conf(homes["newcomer"], {"roots": [{
        "identity": identities["victim"].public_text(), "endpoints": [f"{VICTIM_IP}/9993"],
    }]})  # fmt: skip
    return FloodLab(hosts, homes, identities)


def start_flood(lab: FloodLab, seconds: float, spoofed_rate: int, real_rate: int):
    argv = ["-m", "tests.integration.flood", VICTIM_IP, "9993",
            lab.identities["victim"].x25519_public.hex(), "--seconds", str(seconds),
            "--spoofed-rate", str(spoofed_rate), "--spoofed-net", SPOOFED_NET,
            "--real-rate", str(real_rate)]  # fmt: skip
    for ip in REAL_SOURCES:
        argv += ["--real-source", ip]
    return lab.hosts["attacker"].python(*argv, cwd=str(REPO_ROOT), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip


def start_pings(lab: FloodLab, seconds: float) -> subprocess.Popen:
    count = str(int(seconds / PING_INTERVAL_S))
    return lab.hosts["member"].spawn("ping", "-n", "-i", str(PING_INTERVAL_S), "-c", count,
                                     "-W", "2", VICTIM_VIRTUAL, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip


def ping_figures(process: subprocess.Popen) -> dict:
    output, _ = process.communicate(timeout=120)
    rtts = [float(m.group(1)) for m in RTT.finditer(output)]
    sent = re.search(r"(\d+) packets transmitted", output)
    total = int(sent.group(1)) if sent else 0
    return {
        "sent": total,
        "lost": total - len(rtts),
        "medianMs": round(statistics.median(rtts), 2) if rtts else None,
        "maxMs": round(max(rtts), 2) if rtts else None,
    }


def socket_backlog(host: Host, port: int = 9993) -> int:
    """Bytes waiting in the receive queues of the UDP sockets on ``port`` (IPv4 and IPv6)."""
    waiting = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        for line in host.run("cat", table).stdout.splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time of a process, or of one of its threads (the main thread: its PID)."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def newcomer_connected(lab: FloodLab) -> bool:
    victim = lab.identities["victim"].address
    return any(victim in line and "session established" in line
               for line in lab.nodes["newcomer"].log)  # fmt: skip


def run_flood(lab: FloodLab, seconds: float, spoofed_rate: int, real_rate: int,
              newcomer: bool = True) -> dict:  # fmt: skip
    """Flood the victim while the member pings it; a newcomer (which has the victim as its
    root) starts 1 s into the flood. Returns the figures the test and the benchmark look at."""
    pings = start_pings(lab, seconds + 2)
    time.sleep(1)  # a baseline second before the flood
    victim_pid = lab.nodes["victim"].process.pid
    cpu_before, flood_started = cpu_seconds(victim_pid), time.monotonic()
    loop_before = cpu_seconds(victim_pid, thread=victim_pid)
    flood = start_flood(lab, seconds, spoofed_rate, real_rate)
    time.sleep(1)
    started = ready = time.monotonic()
    connect_s = None
    if newcomer:
        lab.start("newcomer")
        ready = time.monotonic()
        wait_until(lambda: newcomer_connected(lab) or time.monotonic() - ready > 15, timeout=20)
        connect_s = time.monotonic() - ready if newcomer_connected(lab) else None
    out, err = flood.communicate(timeout=seconds + 60)
    assert flood.returncode == 0, err
    ended = time.monotonic()
    cpu = (cpu_seconds(victim_pid) - cpu_before) / (ended - flood_started)
    loop_cpu = (cpu_seconds(victim_pid, thread=victim_pid) - loop_before) / (ended - flood_started)
    time.sleep(max(0.0, ended + 1.0 - time.monotonic()))
    backlog = socket_backlog(lab.hosts["victim"])
    counters = lab.status("victim")["counters"]
    return {
        "flood": json.loads(out),
        "ping": ping_figures(pings),
        "newcomerConnectS": None if connect_s is None else round(connect_s, 2),
        "newcomerStartS": round(ready - started, 2),
        "socketBacklogBytesAfter1s": backlog,
        "initiationsWaitingAfter1s": counters.get("initiationsWaiting"),
        "cookieRepliesSent": counters.get("cookieRepliesSent"),
        "victimCpuPercent": round(100 * cpu, 1),
        "victimLoopCpuPercent": round(100 * loop_cpu, 1),  # the event loop's thread alone
        "datagramDrops": counters["datagramDrops"],
    }


def test_a_flood_of_valid_handshakes_stalls_neither_tunnel_nor_newcomers(testbed, tmp_path):
    lab = build(testbed, tmp_path)
    lab.start("victim")
    lab.start("member")
    lab.nodes["member"].wait_log("session established")
    figures = run_flood(lab, seconds=6, spoofed_rate=8000, real_rate=2000)
    report = json.dumps(figures, indent=1)
    print(report)
    assert figures["flood"]["spoofed"] >= 40000, report
    ping = figures["ping"]
    assert ping["lost"] == 0, f"pings through the tunnel were lost during the flood:\n{report}"
    # A functional bound (the target, 50 ms median, is the benchmark's): before cookies and
    # off-loop identity checks the RTT reached seconds.
    assert ping["maxMs"] < 1000, report
    assert figures["newcomerConnectS"] is not None and figures["newcomerConnectS"] < 5, report
    assert figures["socketBacklogBytesAfter1s"] == 0, report
    assert figures["initiationsWaitingAfter1s"] == 0, report
    drops = figures["datagramDrops"]
    assert drops.get("cookie_required", 0) > 30000, "the spoofed flood got cookies, no DH"
    assert figures["flood"]["cookiesReceived"] > 0, "real sources got cookies and used them"
    assert drops.get("handshake_rate_limited", 0) > 0, report
