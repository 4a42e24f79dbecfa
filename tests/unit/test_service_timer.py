"""The service's timer can never die: a failing round is logged and counted, and the next
round comes anyway (without it there would be no probes, rekeys or retries). The timer and the
flush live in the pump (oneservice/pump.py), built here with only what they touch."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from oneservice.guard import Failures
from oneservice.pump import CorePump
from oneservice.routefeed import ROUTING_RETRY_S, RoutingFeed


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


class FailingCore:
    def process_handshakes(self, now: float) -> None:
        raise KeyError("a state nobody expected")


def pump(loop, core, on_round=lambda now: None) -> CorePump:
    """A pump whose other components have nothing due and no outputs."""
    return CorePump(
        loop, core, Failures(), send_many=lambda *args: None, tap_of=lambda network_id: None,
        on_event=lambda event: None, after_flush=lambda: None,
        deadline=lambda: float("inf"), on_round=on_round,
    )  # fmt: skip


def rounds_of_a_timer_that_fails_once(run) -> CorePump:
    async def main() -> CorePump:
        loop = asyncio.get_running_loop()
        timer = pump(loop, FailingOnceCore(loop))
        timer.flush = timer.rearm  # only the rounds (and re-arming, as a flush ends) under test
        timer.start()
        await asyncio.sleep(0.1)
        timer.stop()
        return timer

    return run(main())


def test_a_failing_timer_round_does_not_stop_the_timer(caplog):
    with caplog.at_level(logging.ERROR):
        timer = rounds_of_a_timer_that_fails_once(asyncio.run)
    assert timer.core.rounds >= 3, "rounds went on after the failure"
    assert timer.failures.count == 1
    assert "timer round failed" in caplog.text and "a config that does not parse" in caplog.text


def test_a_failing_callback_is_logged_and_counted_not_lost(caplog):
    loop = asyncio.new_event_loop()
    flusher = pump(loop, FailingCore())
    try:
        with caplog.at_level(logging.ERROR):
            flusher.flush()  # as the loop runs it (call_soon): nothing may escape
    finally:
        loop.close()
    assert flusher.failures.count == 1
    assert "flush failed" in caplog.text and "a state nobody expected" in caplog.text


def test_routing_wakes_the_node_only_for_work_of_its_own():
    """No fixed tick: with nothing due and nothing failed, routing adds no wake-up to the
    core's deadline (an idle node sleeps); a refused route change is retried 5 s after the
    plan it came from (routefeed.py)."""
    routing = SimpleNamespace(failing=lambda: False, next_due=lambda: float("inf"),
                              gateways_to_watch=lambda networks: set(),
                              update=lambda inputs, force: None)  # fmt: skip
    core = SimpleNamespace(live_peers=lambda now, among: set(),
                           set_watched=lambda gateways, now: None)  # fmt: skip
    binder = SimpleNamespace(uplinks=(), port=9993)
    networks = SimpleNamespace(active=lambda: [])
    devices = SimpleNamespace(taps={}, applied=True)
    feed = RoutingFeed("3e399c1131", routing, core, binder, networks, devices, lambda: 100.0,
                       lambda: None)  # fmt: skip
    feed.ask()
    feed.plan_if_asked()  # a plan at 100.0
    assert feed.deadline() == float("inf")
    routing.next_due = lambda: 110.0  # a fail-back, or a login window's end
    assert feed.deadline() == 110.0
    routing.next_due = lambda: float("inf")
    routing.failing = lambda: True
    assert feed.deadline() == 100.0 + ROUTING_RETRY_S
