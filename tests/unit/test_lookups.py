"""Look-ups through the roots (node/lookups.py): retried, given up, and what waits is bounded."""

from __future__ import annotations

from collections import Counter

from oneservice.node.lookups import LOOKUP_GIVE_UP_S, LOOKUP_RETRY_S, MAX_PENDING_CONTROL, Lookups


def test_a_look_up_is_asked_again_when_due_and_given_up_with_what_waited():
    drops: Counter[str] = Counter()
    lookups = Lookups(drops)
    for n in range(MAX_PENDING_CONTROL + 3):
        lookups.hold("0123456789", {"t": "m", "n": n})
    assert drops["queue_full"] == 3, "what waits is bounded, the rest counted"
    lookups.start("0123456789", 100.0)
    assert lookups.next_due() == 100.0 + LOOKUP_RETRY_S
    assert lookups.due(100.5) == []
    assert lookups.due(100.0 + LOOKUP_RETRY_S) == ["0123456789"]
    lookups.start("0123456789", 101.0)  # asked again: the look-up keeps its start
    assert lookups.due(100.0 + LOOKUP_GIVE_UP_S + 0.1) == []
    assert "0123456789" not in lookups and not lookups.holds("0123456789")
    assert drops["queue_dropped_unreachable"] == MAX_PENDING_CONTROL


def test_a_node_found_takes_what_waited_for_it_and_nothing_is_left_behind():
    lookups = Lookups(Counter())
    lookups.hold("0123456789", {"t": "m"})
    lookups.start("0123456789", 100.0)
    assert lookups.found("0123456789") == [{"t": "m"}]
    assert "0123456789" not in lookups and lookups.next_due() == float("inf")
