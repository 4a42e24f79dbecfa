"""One node per home and per network namespace: the second is refused, naming the first."""

from __future__ import annotations

import os

import pytest

from oneservice import instance
from oneservice.instance import AlreadyRunning, InstanceLock


@pytest.fixture(autouse=True)
def _private_namespace_lock(monkeypatch):
    # A name of this test's own, so a node running on the machine is neither hit nor needed.
    name = f"\0oneservice-test-{os.getpid()}".encode()
    monkeypatch.setattr(instance, "NAMESPACE_LOCK_NAME", name)


def test_a_second_node_with_the_same_home_is_refused_with_the_first_ones_pid(tmp_path):
    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning, match=f"PID {os.getpid()}.* with home {tmp_path}"):
            InstanceLock(tmp_path).acquire()
    finally:
        first.release()
    again = InstanceLock(tmp_path)
    again.acquire()  # released locks are free again
    again.release()


def test_a_second_node_with_another_home_in_the_same_namespace_is_refused(tmp_path):
    first = InstanceLock(tmp_path / "a")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning, match=f"PID {os.getpid()}.*network namespace"):
            InstanceLock(tmp_path / "b").acquire()
        # Refused whole: the second did not keep the home lock of b either.
        probe = InstanceLock(tmp_path / "b")
        probe._lock_home()
        probe.release()
    finally:
        first.release()
