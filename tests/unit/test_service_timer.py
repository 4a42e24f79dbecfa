"""The service's timer can never die: a failing round is logged and counted, and the next
round comes anyway (without it there would be no probes, rekeys or retries)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from oneservice.control import ControlPlane
from oneservice.network.membership import Memberships
from oneservice.service import Service


class FailingOnceCore:
    def __init__(self, loop) -> None:
        self.loop = loop
        self.rounds = 0

    def handle_timer(self, now: float) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise ValueError("a config that does not parse")  # e.g. a bad stored endpoint

    def next_timer(self) -> float:
        return self.loop.time() + 0.01


class NoRouting:
    """Routing with nothing due (its part of the timer's deadline)."""

    def next_due(self) -> float:
        return float("inf")


def test_a_failing_timer_round_does_not_stop_the_timer(caplog):
    async def main() -> Service:
        service = Service.__new__(Service)  # only what a timer round touches
        service.loop = asyncio.get_running_loop()
        service.core = FailingOnceCore(service.loop)
        service.callback_failures = 0
        service.control = ControlPlane(None, Memberships(Path("/nonexistent")), None, None)
        service.routing = NoRouting()
        service._timer_round = lambda: service.core.handle_timer(0.0)
        service._on_timer()
        await asyncio.sleep(0.1)
        service._timer.cancel()
        return service

    with caplog.at_level(logging.ERROR):
        service = asyncio.run(main())
    assert service.core.rounds >= 3, "rounds went on after the failure"
    assert service.callback_failures == 1
    assert "timer round failed" in caplog.text and "a config that does not parse" in caplog.text


class FailingCore:
    def process_handshakes(self, now: float) -> None:
        raise KeyError("a state nobody expected")


def test_a_failing_callback_is_logged_and_counted_not_lost(caplog):
    service = Service.__new__(Service)  # only what a flush touches before it fails
    service.loop = asyncio.new_event_loop()
    service.core = FailingCore()
    service.callback_failures = 0
    service._flush_scheduled = True
    try:
        with caplog.at_level(logging.ERROR):
            service._flush()  # as the loop runs it (call_soon): nothing may escape
    finally:
        service.loop.close()
    assert service.callback_failures == 1
    assert "flush failed" in caplog.text and "a state nobody expected" in caplog.text


def test_the_timer_runs_on_uvloop_too():
    """uvloop's timer handles have no when(): the service keeps the time itself."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> Service:
        service = Service.__new__(Service)
        service.loop = asyncio.get_running_loop()
        service.core = FailingOnceCore(service.loop)
        service.callback_failures = 0
        service.control = ControlPlane(None, Memberships(Path("/nonexistent")), None, None)
        service.routing = NoRouting()
        service._timer = None
        service._timer_round = lambda: (service.core.handle_timer(0.0), service._rearm())
        service._on_timer()
        await asyncio.sleep(0.1)
        service._timer.cancel()
        return service

    service = uvloop.run(main())
    assert service.core.rounds >= 3
    assert service.callback_failures == 1, "only the round that was made to fail"
