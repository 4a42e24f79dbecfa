"""The exit node's saved sysctl values: a damaged state file is reported and never replaced."""

from __future__ import annotations

import ipaddress

import pytest

from oneservice.routing import exit_linux, sysctls
from oneservice.routing.exit_linux import ExitNodeError, LinuxExitNode
from oneservice.routing.exit_node import ExitPlan


def test_a_damaged_state_file_stops_the_exit_node_and_is_left_alone(tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(sysctls, "write_sysctl", lambda path, value: writes.append((path, value)))
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
    monkeypatch.setattr(sysctls, "read_sysctl", lambda path: values[path])
    monkeypatch.setattr(exit_linux, "_nft", lambda document, missing_ok=False: None)

    def write(path, value):
        # The old value is on disk before the new one is written (a crash here can undo it).
        assert '"0"' in (tmp_path / "exit-node.state").read_text()
        values[path] = value

    monkeypatch.setattr(sysctls, "write_sysctl", write)
    node = LinuxExitNode(tmp_path)
    node.apply(ExitPlan((ipaddress.ip_network("10.147.17.0/24"),), frozenset({4}), {}), ["eth0"])
    assert values[exit_linux.FORWARDING_SYSCTLS[4]] == "1"
    node.restore()
    assert values[exit_linux.FORWARDING_SYSCTLS[4]] == "0"
    assert not (tmp_path / "exit-node.state").exists()


def test_a_journal_restores_only_what_it_is_asked_and_forgets_what_is_gone(tmp_path, monkeypatch):
    values = {"/proc/sys/a": "1", "/proc/sys/b": "1"}
    monkeypatch.setattr(sysctls, "read_sysctl", lambda path: values[path])
    monkeypatch.setattr(sysctls, "write_sysctl", values.__setitem__)
    journal = sysctls.SysctlJournal(tmp_path / "x.state", lambda path: path in values)
    journal.set("/proc/sys/a", "2")
    journal.set("/proc/sys/b", "2")
    journal.set("/proc/sys/a", "3")  # the first previous value is the one kept
    assert journal.saved() == {"/proc/sys/a": "1", "/proc/sys/b": "1"}
    assert journal.restore(["/proc/sys/a"]) == ["/proc/sys/a = 1"]
    assert values == {"/proc/sys/a": "1", "/proc/sys/b": "2"}
    journal.forget(["/proc/sys/b"])  # its device went away
    assert values["/proc/sys/b"] == "2" and not (tmp_path / "x.state").exists()
    with pytest.raises(sysctls.SysctlError, match="unexpected content"):
        (tmp_path / "x.state").write_text('{"/etc/passwd": "x"}')
        journal.restore()
