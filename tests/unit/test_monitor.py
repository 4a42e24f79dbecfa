"""The change monitor (oneservice/monitor/): bursts told once to every subscriber, our own
writes to nobody, and what each subscriber concludes from a burst."""

from __future__ import annotations

import asyncio

from oneservice.monitor.changes import (
    AddressChange,
    LinkChange,
    Poll,
    RouteChange,
    RuleChange,
    Unknown,
    deleted_links,
    interfaces_may_differ,
    others_routing_changed,
    own_routing_removed,
)
from oneservice.monitor.monitor import DEBOUNCE_S, ChangeMonitor

OUR_ROUTE_ADDED = RouteChange(ours=True, removed=False)
OUR_RULE_REMOVED = RuleChange(ours=True, removed=True)
THEIR_ROUTE = RouteChange(ours=False, removed=False)
THEIR_RULE = RuleChange(ours=False, removed=True)


def test_a_burst_is_told_once_to_every_subscriber_and_our_own_writes_to_nobody():
    async def scenario():
        monitor = ChangeMonitor(poll_interval=3600)
        heard: list[tuple] = []
        other: list[tuple] = []

        def broken(changes):
            raise RuntimeError("subscriber bug")

        monitor.subscribe(broken)
        monitor.subscribe(heard.append)
        monitor.subscribe(other.append)
        monitor.note([LinkChange(3), AddressChange(3)])
        monitor.note([LinkChange(3), OUR_ROUTE_ADDED])  # same burst
        await asyncio.sleep(DEBOUNCE_S * 3)
        assert heard == other == [(LinkChange(3), AddressChange(3))]
        monitor.note([OUR_ROUTE_ADDED, RuleChange(ours=True, removed=False)])
        await asyncio.sleep(DEBOUNCE_S * 3)
        assert len(heard) == 1, "our own writes: nothing to tell"
        monitor.close()

    asyncio.run(scenario())


def test_the_monitor_polls_when_nothing_happens():
    async def scenario():
        monitor = ChangeMonitor(poll_interval=0.02)
        heard: list[tuple] = []
        monitor.subscribe(heard.append)
        await asyncio.sleep(0.2)
        monitor.close()
        assert heard and all(changes == (Poll(),) for changes in heard)

    asyncio.run(scenario())


def test_what_the_binder_and_routing_conclude_from_a_burst():
    # The binder re-reads for links, addresses, others' routes (metrics rank the uplinks), a
    # poll or lost events; not for rules or our own routing.
    assert interfaces_may_differ([LinkChange(2)])
    assert interfaces_may_differ([AddressChange(2)])
    assert interfaces_may_differ([THEIR_ROUTE])
    assert interfaces_may_differ([Poll()]) and interfaces_may_differ([Unknown()])
    assert not interfaces_may_differ([THEIR_RULE, OUR_RULE_REMOVED])
    assert deleted_links([LinkChange(2, deleted=True), LinkChange(3)]) == {2}
    # Routing and the core: others' routing re-probes strictly; ours removed is put back.
    assert others_routing_changed([THEIR_RULE]) and others_routing_changed([THEIR_ROUTE])
    assert not others_routing_changed([OUR_RULE_REMOVED, LinkChange(2), Poll()])
    assert own_routing_removed([OUR_RULE_REMOVED])
    assert not own_routing_removed([THEIR_ROUTE, LinkChange(2), Poll()])
    # Lost events: anything may have changed.
    assert others_routing_changed([Unknown()]) and own_routing_removed([Unknown()])
