"""The exit node's saved sysctl values: a damaged state file is reported and never replaced."""

from __future__ import annotations

import ipaddress

import pytest

from oneservice.routing import exit_linux
from oneservice.routing.exit_linux import ExitNodeError, LinuxExitNode
from oneservice.routing.exit_node import ExitPlan


def test_a_damaged_state_file_stops_the_exit_node_and_is_left_alone(tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(exit_linux, "_write", lambda path, value: writes.append((path, value)))
    monkeypatch.setattr(exit_linux, "_nft", lambda document, missing_ok=False: None)
    state = tmp_path / "exit-node.state"
    state.write_text("{not json")
    node = LinuxExitNode(tmp_path)
    with pytest.raises(ExitNodeError, match="fix or remove it"):
        node.restore()
    plan = ExitPlan((ipaddress.ip_network("10.147.17.0/24"),), frozenset({4}), {})
    with pytest.raises(ExitNodeError):
        node.apply(plan, ["eth0"])
    assert writes == [], "no sysctl touched"
    assert state.read_text() == "{not json"


def test_previous_values_are_saved_before_the_change_and_restored(tmp_path, monkeypatch):
    values = {exit_linux.FORWARDING_SYSCTLS[4]: "0"}
    monkeypatch.setattr(exit_linux, "_read", lambda path: values[path])
    monkeypatch.setattr(exit_linux, "_nft", lambda document, missing_ok=False: None)

    def write(path, value):
        # The old value is on disk before the new one is written (a crash here can undo it).
        assert '"0"' in (tmp_path / "exit-node.state").read_text()
        values[path] = value

    monkeypatch.setattr(exit_linux, "_write", write)
    node = LinuxExitNode(tmp_path)
    node.apply(ExitPlan((ipaddress.ip_network("10.147.17.0/24"),), frozenset({4}), {}), ["eth0"])
    assert values[exit_linux.FORWARDING_SYSCTLS[4]] == "1"
    node.restore()
    assert values[exit_linux.FORWARDING_SYSCTLS[4]] == "0"
    assert not (tmp_path / "exit-node.state").exists()
