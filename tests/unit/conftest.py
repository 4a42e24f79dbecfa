"""Fixtures of the unit tests.

``tripwires``: unit tests that run `python -m oneservice`'s main() must never start a node
(there is no namespace here). Service.start is replaced by a tripwire (a test that gets that
far fails instead of touching the kernel) and Service.stop by nothing."""

from __future__ import annotations

import pytest

from oneservice import service as service_module


@pytest.fixture
def tripwires(monkeypatch):
    async def start(self):
        raise AssertionError("main() got as far as starting the node")

    async def stop(self, keep_kill_switch: bool = False):
        return None

    monkeypatch.setattr(service_module.Service, "start", start)
    monkeypatch.setattr(service_module.Service, "stop", stop)
