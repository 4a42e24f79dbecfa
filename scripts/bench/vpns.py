"""The VPNs under comparison, each set up between two namespace hosts a and b.

Every VPN gets the same underlay (a 192.0.2.1 -- b 192.0.2.2, one veth) and its own tunnel
subnet; ``start`` returns a Tunnel with b's tunnel address and the PIDs whose CPU time is the
VPN's cost. Peers come from Debian's packages (wireguard-go + wireguard-tools, nebula,
openvpn); ZeroTier only from a binary the user names (never downloaded or built here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from oneservice.identity import Identity
from tests.integration.nodes import NETWORK_ID, Node, member, write_home
from tests.testbed import Host, Testbed, missing_requirements, wait_until

A_UNDERLAY, B_UNDERLAY = "192.0.2.1", "192.0.2.2"


@dataclass
class Tunnel:
    peer_address: str  # b's address inside the tunnel, for iperf3 from a
    pids: list[int] = field(default_factory=list)  # the VPN's processes on both ends


def missing(name: str, zerotier: str | None = None) -> str | None:
    """Why a VPN cannot be measured here, or None."""
    needs = {
        "oneservice": [],
        "wireguard-go": ["wireguard-go", "wg"],
        "nebula": ["nebula", "nebula-cert"],
        "openvpn": ["openvpn"],
        "zerotier": [],
    }[name]  # fmt: skip
    if name == "zerotier":
        # A ZeroTier node without a private planet file contacts ZeroTier's public roots,
        # which no benchmark here may do; making such a planet needs ZeroTier's own tools.
        return (
            "not measured: needs a private planet file so the node contacts no public root "
            f"(binary given: {zerotier or 'none'})"
        )
    for tool in needs:
        if shutil.which(tool) is None:
            return f"'{tool}' not installed (apt-get install {name} ...)"
    return None


def start(name: str, a: Host, b: Host, work: Path) -> Tunnel:
    return {
        "oneservice": _oneservice,
        "wireguard-go": _wireguard_go,
        "nebula": _nebula,
        "openvpn": _openvpn,
    }[name](a, b, work)


def _oneservice(a: Host, b: Host, work: Path) -> Tunnel:
    ida, idb = Identity.generate(), Identity.generate()
    network = {"id": NETWORK_ID, "name": "bench", "members": [
        member(ida, ["10.147.17.1/24"], [f"{A_UNDERLAY}/9993"]),
        member(idb, ["10.147.17.2/24"], [f"{B_UNDERLAY}/9993"]),
    ]}  # fmt: skip
    nodes = [Node(host, write_home(work / host.name, identity, [network]))
             for host, identity in ((a, ida), (b, idb))]  # fmt: skip
    for node in nodes:
        node.wait_log("session established", timeout=30)
    return Tunnel("10.147.17.2", [n.process.pid for n in nodes])


def _wireguard_go(a: Host, b: Host, work: Path) -> Tunnel:
    keys = {}
    for host in (a, b):
        private = subprocess.run(["wg", "genkey"], capture_output=True, text=True).stdout.strip()
        public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True,
                                text=True).stdout.strip()  # fmt: skip
        (work / f"{host.name}.key").write_text(private + "\n")
        keys[host.name] = public
    pids = []
    env = {"WG_PROCESS_FOREGROUND": "1", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    for host, other, ip, endpoint in ((a, b, "10.150.0.1", B_UNDERLAY),
                                      (b, a, "10.150.0.2", A_UNDERLAY)):  # fmt: skip
        # One name per host: wireguard-go's control socket (/var/run/wireguard/<name>.sock)
        # is shared by every namespace.
        device = f"wg-{host.namespace[-12:]}"[:15]
        process = host.spawn("env", *(f"{k}={v}" for k, v in env.items()), "wireguard-go",
                             "-f", device, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until(lambda host=host, device=device:
                   host.ip("link", "show", device, check=False).returncode == 0,
                   timeout=10, what=device)  # fmt: skip
        host.run("wg", "set", device, "private-key", str(work / f"{host.name}.key"),
                 "listen-port", "51820", "peer", keys[other.name], "allowed-ips",
                 "10.150.0.0/24", "endpoint", f"{endpoint}:51820")  # fmt: skip
        host.ip("addr", "add", f"{ip}/24", "dev", device)
        host.ip("link", "set", device, "up")
        pids.append(process.pid)
    return Tunnel("10.150.0.2", pids)


def _nebula(a: Host, b: Host, work: Path) -> Tunnel:
    subprocess.run(["nebula-cert", "ca", "-name", "bench", "-out-crt", str(work / "ca.crt"),
                    "-out-key", str(work / "ca.key")], check=True, capture_output=True)  # fmt: skip
    pids = []
    ends = ((a, "10.151.0.1", "10.151.0.2", B_UNDERLAY),
            (b, "10.151.0.2", "10.151.0.1", A_UNDERLAY))  # fmt: skip
    for host, ip, other_ip, other_underlay in ends:
        crt, key = work / f"{host.name}.crt", work / f"{host.name}.key"
        subprocess.run(["nebula-cert", "sign", "-name", host.name, "-ip", f"{ip}/24",
                        "-ca-crt", str(work / "ca.crt"), "-ca-key", str(work / "ca.key"),
                        "-out-crt", str(crt), "-out-key", str(key)], check=True,
                       capture_output=True)  # fmt: skip
        config = work / f"{host.name}.yml"
        config.write_text(textwrap.dedent(f"""\
            pki: {{ca: {work / "ca.crt"}, cert: {crt}, key: {key}}}
            static_host_map: {{"{other_ip}": ["{other_underlay}:4242"]}}
            lighthouse: {{am_lighthouse: false, hosts: []}}
            listen: {{host: 0.0.0.0, port: 4242}}
            punchy: {{punch: false}}
            tun: {{dev: nebula1}}
            logging: {{level: warning}}
            firewall:
              outbound: [{{port: any, proto: any, host: any}}]
              inbound: [{{port: any, proto: any, host: any}}]
            """))  # fmt: skip
        process = host.spawn("nebula", "-config", str(config), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
        pids.append(process.pid)
    wait_until(lambda: a.run("ping", "-c", "1", "-W", "1", "10.151.0.2", check=False)
               .returncode == 0, timeout=20, what="nebula tunnel")  # fmt: skip
    return Tunnel("10.151.0.2", pids)


def _openvpn(a: Host, b: Host, work: Path) -> Tunnel:
    # Point-to-point with a static key: OpenVPN's simplest two-host setup (its data channel
    # is then AES-256-CBC + HMAC-SHA256, in user space).
    key = work / "static.key"
    subprocess.run(["openvpn", "--genkey", "secret", str(key)], check=True, capture_output=True)
    pids = []
    for host, local, remote, direction in ((a, "10.152.0.1", "10.152.0.2", "0"),
                                           (b, "10.152.0.2", "10.152.0.1", "1")):  # fmt: skip
        other = B_UNDERLAY if host is a else A_UNDERLAY
        process = host.spawn(
            "openvpn", "--dev", "tun0", "--dev-type", "tun", "--proto", "udp", "--port", "1194",
            "--remote", other, "--ifconfig", local, remote, "--secret", str(key), direction,
            "--cipher", "AES-256-CBC", "--auth", "SHA256", "--verb", "1",
            "--disable-dco",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        pids.append(process.pid)
    wait_until(lambda: a.run("ping", "-c", "1", "-W", "1", "10.152.0.2", check=False)
               .returncode == 0, timeout=20, what="openvpn tunnel")  # fmt: skip
    return Tunnel("10.152.0.2", pids)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_time_seconds(pid: int) -> float:
    """CPU time of all of a process's threads so far, to the nanosecond (schedstat): an idle
    node wakes for microseconds at a time, which 10 ms clock ticks cannot measure."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory now (VmRSS), or at its peak so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def iperf(a: Host, address: str, seconds: int, both_ways: bool) -> float:
    """Mbit/s received through the tunnel (both directions added with ``both_ways``)."""
    argv = ["iperf3", "-c", address, "-t", str(seconds), "-J"] + (["--bidir"] if both_ways else [])
    result = a.run(*argv, timeout=seconds + 30, check=False)
    report = json.loads(result.stdout or "{}")
    if "error" in report or "end" not in report:
        raise RuntimeError(report.get("error", result.stderr))
    end = report["end"]
    bits = end["sum_received"]["bits_per_second"]
    if both_ways:
        bits += end["sum_received_bidir_reverse"]["bits_per_second"]
    time.sleep(0.2)
    return bits / 1e6


def cannot_run(need_tun: bool = False) -> bool:
    """Whether this host lacks what a benchmark in namespaces needs (said on stderr)."""
    why = missing_requirements(need_tun=need_tun)
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
    return bool(why)


def clean_up(bed: Testbed) -> None:
    """Remove what a benchmark made; anything left over is said, not raised."""
    for complaint in bed.cleanup():
        print(f"warning: {complaint}", file=sys.stderr)

