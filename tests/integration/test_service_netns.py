"""`python -m oneservice` as a user runs it: starts, says what it bound, stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

from tests.integration.drivers import UdpSink
from tests.integration.nodes import api
from tests.integration.test_binder_netns import two_uplinks
from tests.testbed import Host, wait_until

pytestmark = pytest.mark.integration


def start_service(host: Host, home, *args: str) -> tuple[subprocess.Popen, list[str]]:
    process = host.python(
        "-m", "oneservice", "--home", str(home), *args, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []

    def collect() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=collect, daemon=True).start()
    return process, lines


def udp_sockets_on_port(host: Host, port: int) -> list[str]:
    out = host.run("ss", "-H", "-u", "-a", "-n", "sport", "=", f":{port}").stdout
    return [line for line in out.splitlines() if line.strip()]


def test_service_starts_reports_its_bindings_and_stops_cleanly_on_sigterm(testbed, tmp_path):
    node, _router = two_uplinks(testbed)
    process, log = start_service(node, tmp_path / "home", "--port", "9993")
    wait_until(lambda: any("started" in line for line in log), timeout=15, what="startup log")
    text = "\n".join(log)
    assert "UDP port 9993" in text
    for expected in ("bound   wifi0", "bound   cell0", "skipped lo", "loopback"):
        assert expected in text, f"{expected!r} missing from startup log:\n{text}"
    assert len(udp_sockets_on_port(node, 9993)) == 4  # 2 uplinks x 2 families
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert udp_sockets_on_port(node, 9993) == []
    assert any("oneservice stopped" in line for line in log)


def test_sigint_also_stops_cleanly(testbed, tmp_path):
    node, _router = two_uplinks(testbed)
    process, log = start_service(node, tmp_path, "--port", "0")
    wait_until(lambda: any("started" in line for line in log), timeout=15, what="startup")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0


def test_port_in_use_is_a_clear_error_naming_the_port(testbed, tmp_path):
    node, _router = two_uplinks(testbed)
    UdpSink(node, "0.0.0.0", 9993)  # some other program holds the port
    process, log = start_service(node, tmp_path, "--port", "9993")
    assert process.wait(timeout=15) == 1
    wait_until(lambda: any("error" in line for line in log), what="the error line")
    error = next(line for line in log if line.startswith("oneservice: error:"))
    assert "UDP port 9993 is already in use" in error
    assert "--port" in error


def test_one_link_deletion_plans_routing_once(testbed, tmp_path):
    """The change monitor's burst reaches the binder first; routing and the core hear of it
    once the binder has re-read the interfaces, and routing is planned once for all of it
    (the burst, each socket closed, the paths that died with them)."""
    node, _router = two_uplinks(testbed)
    home = tmp_path / "home"
    process, log = start_service(node, home, "--port", "9993")
    wait_until(lambda: any("oneservice started" in line for line in log), timeout=15,
               what="startup")  # fmt: skip

    def plans() -> int:
        return api(node, home, "GET", "/routes")[1]["plans"]

    def bound() -> list[str]:
        return sorted({b["interface"] for b in api(node, home, "GET", "/binder")[1]["bound"]})

    def settled() -> int | None:
        """The plan count if no plan came for 1.5 s (IPv6 link-local addresses finish their
        duplicate address detection a second or two after the links come up)."""
        count = plans()
        time.sleep(1.5)
        return count if plans() == count else None

    before = wait_until(settled, timeout=20, what="routing settled after start")
    node.ip("link", "del", "cell0")
    wait_until(lambda: bound() == ["wifi0"], timeout=5, what="cell0's sockets closed")
    after = wait_until(settled, timeout=20, what="routing settled after the deletion")
    assert after - before == 1, "\n".join(log[-20:])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
