"""The full tunnel never breaks or leaks silently: tried as a new user would (issue 12)."""

from __future__ import annotations

import subprocess

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import write_home
from tests.integration.test_full_tunnel_netns import (
    GW_UPLINK,
    assert_unchanged,
    full_tunnel,
    routing_state,
)

pytestmark = pytest.mark.integration


def second_start(host, home, port: int) -> tuple[int, str]:
    process = host.python("-m", "oneservice", "--home", str(home), "--port", str(port),
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    code = process.wait(timeout=20)
    assert process.stderr is not None
    return code, process.stderr.read()


def test_a_second_start_changes_nothing_and_names_the_running_node(testbed, tmp_path):
    lab, network_id = full_tunnel(testbed, tmp_path)
    other_home = write_home(tmp_path / "other", Identity.generate(), [])
    attempts = [
        ("client", lab.homes["client"], 9993, "with home"),  # the same command run twice
        ("client", other_home, 9994, "manages this network namespace"),  # another home and port
        ("gw", lab.homes["gw"], 9993, "with home"),  # scripts/run-service run twice on the exit
    ]
    for name, home, port, reason in attempts:
        host = lab.hosts[name]
        before = routing_state(host)
        state_file = lab.homes["gw"] / "exit-node.state"
        saved = state_file.read_text()
        code, error = second_start(host, home, port)
        assert code == 1, error
        assert f"PID {lab.nodes[name].process.pid}" in error and reason in error, error
        assert "nothing was changed" in error
        assert_unchanged(before, routing_state(host), f"{name} after a second start")
        assert state_file.read_text() == saved, "the exit node's saved sysctls are kept"
        assert lab.nodes[name].process.poll() is None
    assert not any("left by an earlier run" in line for line in lab.nodes["client"].log)
    assert lab.network("client", network_id)["fullTunnel"] == "on"
    assert lab.whoami() == GW_UPLINK, "traffic still goes through the gateway"
