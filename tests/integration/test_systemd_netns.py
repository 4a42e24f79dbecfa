"""The systemd unit under a real systemd: Debian booted as PID 1 in a systemd-nspawn container
(in a namespace of the test's own, with its egress guard), the node installed there with
scripts/install-service from the wheels scripts/make-test-rootfs fetched (the container has no
network), and then what a service manager does to it: start (Type=notify), reload, restart
right after a start, a device policy that refuses the TUN device, stop.

The root filesystem is cached by scripts/make-test-rootfs (scripts/run-tests runs it) and
booted with a volatile overlay, so it stays as it was made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import member
from tests.testbed import GUARD_TABLE, REPO_ROOT, Host, Testbed, stop_process, wait_until

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("ONESERVICE_TEST_ROOTFS", "/var/cache/oneservice-test-rootfs"))
NETWORK_ID = "8056c2e21c000001"
HOME = "/var/lib/oneservice"


def missing() -> str | None:
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        return "needs systemd-nspawn (apt-get install systemd-container) and nsenter"
    if not (CACHE / "rootfs" / ".complete").exists() or not (CACHE / "wheels").is_dir():
        return f"needs the test root filesystem in {CACHE}: run scripts/make-test-rootfs"
    return None


class Container:
    """Debian with systemd as PID 1, in ``host``'s network namespace."""

    def __init__(self, bed: Testbed, host: Host, work: Path) -> None:
        source = work / "oneservice"
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,
                               capture_output=True).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, files):
            if (REPO_ROOT / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / name, source / name)
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        self.process = subprocess.Popen([
            "systemd-nspawn", "--quiet", f"--directory={CACHE / 'rootfs'}",
            "--volatile=overlay", "--boot", "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{host.namespace}",
            "--capability=CAP_NET_ADMIN", "--system-call-filter=bpf",
            f"--bind={source}:/opt/oneservice", f"--bind-ro={CACHE / 'wheels'}:/wheels",
            f"--machine=ost{os.getpid()}",
        ], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)  # fmt: skip
        bed.processes.append(self.process)
        self.init = wait_until(self._find_init, timeout=30, interval=0.2,
                               what="the container's systemd")  # fmt: skip
        try:
            wait_until(lambda: self.run("systemctl is-system-running",
                                        check=False).stdout.strip() in ("running", "degraded"),
                       timeout=60, interval=0.5, what="the container booted")  # fmt: skip
        except AssertionError as exc:
            jobs = self.run("systemctl list-jobs --no-pager; systemctl is-system-running",
                            check=False)  # fmt: skip
            raise AssertionError(f"{exc}:\n{jobs.stdout}{jobs.stderr}") from None

    def _find_init(self) -> int | None:
        """The container's PID 1, as the host sees it: nspawn's child once it runs systemd
        (before, it is nspawn's own)."""
        if self.process.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.process.returncode}")
        for child in _children(self.process.pid):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return child
            except OSError:
                continue
        return None

    def run(self, command: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
        result = subprocess.run(
            ["nsenter", "-t", str(self.init), "-m", "-u", "-i", "-n", "-p", "--",
             "/bin/bash", "-c", command],
            capture_output=True, text=True, timeout=timeout, input=input,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"in the container, {command!r} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")  # fmt: skip
        return result

    def api(self, path: str) -> dict:
        out = self.run(f'curl -s -H "X-ZT1-Auth: $(cat {HOME}/authtoken.secret)" '
                       f"http://127.0.0.1:9993{path}").stdout  # fmt: skip
        return json.loads(out)

    def journal(self) -> str:
        return self.run("journalctl -u oneservice --no-pager -o cat").stdout

    def stop(self) -> None:
        stop_process(self.process)  # nspawn powers the container off on SIGTERM


def our_tables(container: Container) -> list[str]:
    """The node's nft tables (not the test's egress guard)."""
    listed = container.run("nft list tables").stdout.splitlines()
    return [t for t in listed if t.strip() and GUARD_TABLE not in t]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_the_unit_under_a_real_systemd(testbed, tmp_path):
    host = testbed.host("sysd")
    testbed.link(host, "eth0", testbed.host("peer"), "eth0", ["192.0.2.10/24"],
                 ["192.0.2.1/24"])  # fmt: skip
    container = Container(testbed, host, tmp_path)
    try:
        container.run("cd /opt/oneservice && PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels "
                      "scripts/install-service --no-start", timeout=600)  # fmt: skip
        # An exit node for a network from a file: forwarding sysctls and a table of ours.
        identity, other = Identity.generate(), Identity.generate()
        network = {"id": NETWORK_ID, "name": "lab", "members": [
            member(identity, ["10.147.17.1/24"], []),
            member(other, ["10.147.17.2/24"], ["192.0.2.1/9993"]),
        ], "routes": [{"target": "10.147.17.0/24"},
                      {"target": "0.0.0.0/0", "via": "10.147.17.1"}]}  # fmt: skip
        container.run(f"mkdir -p {HOME}/networks.d && chmod 700 {HOME} && "
                      f"cat > {HOME}/identity.secret && chmod 600 {HOME}/identity.secret",
                      input=identity.secret_text() + "\n")  # fmt: skip
        container.run(f"cat > {HOME}/networks.d/{NETWORK_ID}.json", input=json.dumps(network))
        container.run(f"cat > {HOME}/local.conf",
                      input=json.dumps({"settings": {"allowExitNode": True}}))  # fmt: skip
        forwarding_before = container.run("sysctl -n net.ipv4.ip_forward").stdout.strip()

        # Type=notify: active only once the node said READY=1.
        container.run("systemctl start oneservice", timeout=60)
        assert container.run("systemctl is-active oneservice").stdout.strip() == "active"
        binder = container.api("/binder")
        assert [b["interface"] for b in binder["bound"]] == ["eth0"], binder
        device = "onet" + NETWORK_ID[-10:]
        wait_until(lambda: container.run(f"ip link show {device}", check=False).returncode == 0,
                   timeout=10, what="the network's TUN device")  # fmt: skip
        wait_until(lambda: container.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == "1",
                   timeout=10, what="forwarding on for the exit node")  # fmt: skip
        ours = wait_until(lambda: our_tables(container), timeout=10, what="the node's nft table")

        container.run("systemctl reload oneservice")
        wait_until(lambda: "reloaded" in container.journal(), timeout=10, what="the reload")
        assert container.run("systemctl is-active oneservice").stdout.strip() == "active"

        # Restarts right after starts: the node's nft children must finish, not be killed.
        for _ in range(3):
            container.run("systemctl restart oneservice", timeout=60)
        assert container.run("systemctl is-active oneservice").stdout.strip() == "active"
        journal = container.journal()
        assert "nft failed" not in journal and "Traceback" not in journal, journal[-3000:]

        # A device policy that refuses the TUN device: said plainly, naming the policy.
        container.run("mkdir -p /etc/systemd/system/oneservice.service.d && "
                      "printf '[Service]\\nDeviceAllow=\\n' > "
                      "/etc/systemd/system/oneservice.service.d/deny-tun.conf && "
                      "systemctl daemon-reload && systemctl restart oneservice")  # fmt: skip
        status = container.api("/status")
        reason = status["portErrors"].get(NETWORK_ID, "")
        assert "device policy" in reason and "DeviceAllow" in reason, status["portErrors"]
        assert "device policy" in container.journal()
        shown = container.api(f"/network/{NETWORK_ID}")
        assert shown["status"] == "PORT_ERROR" and "DeviceAllow" in shown["statusDetail"]
        container.run("rm /etc/systemd/system/oneservice.service.d/deny-tun.conf && "
                      "systemctl daemon-reload && systemctl restart oneservice")  # fmt: skip

        # Stop: forwarding as it was, no table of ours left.
        container.run("systemctl stop oneservice", timeout=60)
        assert container.run("sysctl -n net.ipv4.ip_forward").stdout.strip() == forwarding_before
        assert our_tables(container) == [], f"left behind: {our_tables(container)} (had {ours})"
    finally:
        container.stop()
        time.sleep(0.2)
