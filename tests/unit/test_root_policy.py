"""What roots tell and what nodes believe of it (node/roots.py), without a simulator."""

from __future__ import annotations

from oneservice.node.paths import DirectPath, RelayPath
from oneservice.node.roots import (
    MAX_ADVERTISED_ENDPOINTS,
    advertised_endpoints,
    may_tell,
    read_announcement,
)
from tests.unit.corenet import identity

NOBODY = {}.get


def test_a_root_tells_only_about_nodes_that_share_a_network_or_asked_to_be_found():
    assert may_tell(["n1", "n2"], ["n2"], target_findable=False)
    assert not may_tell(["n1"], ["n2"], target_findable=False)
    assert not may_tell([], [], target_findable=False)
    assert may_tell([], [], target_findable=True)


def test_advertised_endpoints_are_live_direct_addresses_each_once_and_at_most_eight():
    now = 100.0
    paths = []
    for n in range(12):
        for socket_id in (1, 2):  # two of our sockets reach each address
            path = DirectPath(socket_id, (f"192.0.2.{n}", 9993))
            path.last_received = now
            paths.append(path)
    dead = DirectPath(1, ("198.51.100.1", 9993))
    relay = RelayPath("3f00000001", "3f00000002")
    relay.last_received = now
    told = advertised_endpoints([relay, dead, *paths], now, window=3.0)
    assert told == [f"192.0.2.{n}/9993" for n in range(MAX_ADVERTISED_ENDPOINTS)]


def test_an_announcement_is_believed_only_if_its_identity_holds_and_contradicts_nothing():
    real, other = identity(5).public(), identity(6).public()
    endpoints = [f"192.0.2.{n}/9993" for n in range(20)]
    announced = read_announcement(real.public_text(), endpoints, identity(1).address, NOBODY)
    assert announced is not None and announced.identity == real
    assert len(announced.endpoints) == MAX_ADVERTISED_ENDPOINTS
    # Not about us; not another identity for an address we hold; not with a bad endpoint.
    assert read_announcement(real.public_text(), [], real.address, NOBODY) is None
    held = {real.address: other}.get
    assert read_announcement(real.public_text(), [], identity(1).address, held) is None
    assert read_announcement(real.public_text(), ["junk"], identity(1).address, NOBODY) is None
    forged = f"{real.address}:1:{other.x25519_public.hex()}:{other.ed25519_public.hex()}"
    assert read_announcement(forged, [], identity(1).address, NOBODY) is None
