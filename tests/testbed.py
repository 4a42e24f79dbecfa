"""A testbed of hosts made of Linux network namespaces, veth links and real processes.

Every namespace gets an egress guard: an nftables table that drops output and forwarded
packets to anything outside the documentation ranges, the 10/8 blocks tests assign, and loopback,
and counts them. A test whose guard counted a drop fails at teardown, so "nothing leaves the
test's own addresses" is checked, not hoped. Everything created is removed afterwards, also
when the test fails; namespaces left by a test run that was killed are swept at the next start
(their names carry the creating process's PID).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

NAMESPACE_PREFIX = "ost-"
GUARD_TABLE = "oneservice_test_guard"
# Of 10/8 only the blocks tests and benchmarks assign (add one here before using it): the
# machine's own resolver may live elsewhere in 10/8, and a stray DNS query must be caught.
# Link-local multicast (224.0.0.0/24, never forwarded; IPv6's ff02::/16 below): a bridge's
# IGMP reports, as a NAT lab's LAN switch sends them. 192.0.3.0/24: the WAN of a NAT lab's
# router that maps ports (miniupnpd refuses reserved blocks; natlab.MAPPING_WAN), assigned
# inside the lab only.
ALLOWED_IPV4 = (
    "127.0.0.0/8", "192.0.2.0/24", "192.0.3.0/24", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/24",
    "10.0.0.0/16", "10.7.0.0/16", "10.98.0.0/15", "10.147.0.0/16", "10.150.0.0/15",
    "10.152.0.0/16",
)  # fmt: skip
# Link-local and link-scope multicast keep IPv6 neighbour discovery working.
ALLOWED_IPV6 = ("::1/128", "2001:db8::/32", "fe80::/10", "ff02::/16")
REPO_ROOT = Path(__file__).resolve().parent.parent


def missing_requirements(need_tun: bool = False) -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if sys.platform != "linux":
        return "needs Linux network namespaces"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (run as root, as CI does)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs '{tool}' (apt-get install iproute2 nftables)"
    if need_tun and not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun for TUN devices"
    return None


def _guard_ruleset() -> str:
    v4 = ", ".join(ALLOWED_IPV4)
    v6 = ", ".join(ALLOWED_IPV6)
    rules = (
        f"meta nfproto ipv4 ip daddr != {{ {v4} }} counter name leaked drop\n"
        f"    meta nfproto ipv6 ip6 daddr != {{ {v6} }} counter name leaked drop"
    )
    return f"""
table inet {GUARD_TABLE} {{
  counter leaked {{ }}
  chain output {{
    type filter hook output priority -300; policy accept;
    {rules}
  }}
  chain forward {{
    type filter hook forward priority -300; policy accept;
    {rules}
  }}
}}
"""


def run(argv: Sequence[str], check: bool = True, timeout: float = 30, **kwargs):
    return subprocess.run(
        list(argv), check=check, timeout=timeout, capture_output=True, text=True, **kwargs
    )


def sweep_stale_namespaces() -> None:
    """Remove namespaces of ours whose creating test process is gone (killed test runs)."""
    listing = run(["ip", "-j", "netns", "list"], check=False)
    try:
        entries = json.loads(listing.stdout or "[]")
    except json.JSONDecodeError:
        return
    for entry in entries:
        name = entry.get("name", "")
        if not name.startswith(NAMESPACE_PREFIX):
            continue
        pid_text = name[len(NAMESPACE_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            run(["ip", "netns", "del", name], check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Host:
    """One namespace. Commands run inside it with ``ip netns exec``."""

    def __init__(self, bed: Testbed, name: str, namespace: str) -> None:
        self.bed = bed
        self.name = name
        self.namespace = namespace

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 30, **kwargs):
        result = run(self.argv(*argv), check=False, timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(
                f"[{self.name}] {' '.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def ip(self, *args: str, check: bool = True):
        return self.run("ip", *args, check=check)

    def spawn(self, *argv: str, **kwargs) -> subprocess.Popen:
        """Start a process in this host; the testbed ends it (by PID) at teardown."""
        # `ip netns exec` execs the command, so the PID is the command's own.
        process = subprocess.Popen(self.argv(*argv), **kwargs)
        self.bed.processes.append(process)
        return process

    def python(self, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
        """Our Python in this host; ``env`` adds to the inherited environment."""
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", **(env or {}))
        return self.spawn(sys.executable, *args, env=env, **kwargs)

    def link_index(self, ifname: str) -> int:
        return json.loads(self.ip("-j", "link", "show", "dev", ifname).stdout)[0]["ifindex"]

    def guard_drops(self) -> int:
        result = self.run(
            "nft", "-j", "list", "counter", "inet", GUARD_TABLE, "leaked", check=False
        )
        if result.returncode != 0:
            return 0
        for item in json.loads(result.stdout)["nftables"]:
            if "counter" in item:
                return item["counter"]["packets"]
        return 0


class Testbed:
    __test__ = False  # not a pytest test class, despite the name
    _serial = 0

    def __init__(self) -> None:
        Testbed._serial += 1
        self._prefix = f"{NAMESPACE_PREFIX}{os.getpid()}-{Testbed._serial}-"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen] = []

    def host(self, name: str, forwarding: bool = False) -> Host:
        namespace = self._prefix + name
        run(["ip", "netns", "add", namespace])
        host = Host(self, name, namespace)
        self.hosts.append(host)
        host.ip("link", "set", "lo", "up")
        host.run("nft", "-f", "-", input=_guard_ruleset())
        if forwarding:
            host.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            host.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        return host

    def link(
        self,
        a: Host,
        a_ifname: str,
        b: Host,
        b_ifname: str,
        a_addresses: Sequence[str] = (),
        b_addresses: Sequence[str] = (),
    ) -> None:
        """A veth pair between two hosts, addressed and up. IPv6 addresses skip duplicate
        address detection so tests need not wait for it."""
        run([
            "ip", "link", "add", a_ifname, "netns", a.namespace, "type", "veth",
            "peer", "name", b_ifname, "netns", b.namespace,
        ])  # fmt: skip
        for host, ifname, addresses in ((a, a_ifname, a_addresses), (b, b_ifname, b_addresses)):
            for cidr in addresses:
                host.ip("addr", "add", cidr, "dev", ifname, *(["nodad"] if ":" in cidr else []))
            host.ip("link", "set", ifname, "up")

    def cleanup(self) -> list[str]:
        """End our processes, read the egress guards, delete the namespaces. Returns the
        guards' complaints (the caller fails the test on them)."""
        for process in self.processes:
            stop_process(process)
        complaints = []
        for host in self.hosts:
            with contextlib.suppress(Exception):
                drops = host.guard_drops()
                if drops:
                    complaints.append(
                        f"egress guard of host {host.name} dropped {drops} packet(s) "
                        "addressed outside the test's own ranges"
                    )
            run(["ip", "netns", "del", host.namespace], check=False)
        self.hosts.clear()
        self.processes.clear()
        return complaints


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> int | None:
    """SIGTERM, wait, then SIGKILL: only this process, by its PID."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=timeout)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
    return process.returncode


def wait_until(
    condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.02, what: str = ""
):
    """Poll until ``condition()`` is truthy and return its value; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)
