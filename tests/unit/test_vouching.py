"""Member identities vouched for by their controllers (node/vouching.py): used without an
scrypt run each, and checked first where another source disagrees about an address or key."""

from __future__ import annotations

from ipaddress import ip_interface

from oneservice.identity import Identity
from oneservice.network.config import Member, NetworkConfig
from oneservice.node.vouching import Holder, choose_holders
from tests.unit.corenet import Sim, identity, ipv4_packet

REAL = identity(2).public()
# Someone else's keys under the real one's address: what the controller of another network
# could put in its config.
FORGED = Identity(REAL.address, identity(7).x25519_public, identity(7).ed25519_public)
NOBODY = {}.get
NEVER_CHECKED = {}.get


def test_an_identity_nobody_contradicts_is_used_without_a_check():
    verdict = choose_holders([("A", REAL), ("B", REAL)], NOBODY, NOBODY, NEVER_CHECKED)
    assert verdict.holders == {REAL.address: REAL}
    assert verdict.to_check == [] and verdict.refused == []


def test_two_networks_that_disagree_get_neither_until_both_are_checked():
    verdict = choose_holders([("B", FORGED), ("A", REAL)], NOBODY, NOBODY, NEVER_CHECKED)
    assert verdict.holders == {}
    assert set(verdict.to_check) == {FORGED, REAL}
    assert sorted(verdict.refused) == [("A", REAL.address), ("B", REAL.address)]
    # Meanwhile the one that held the address keeps it, for its own networks.
    verdict = choose_holders([("B", FORGED), ("A", REAL)], {REAL.address: Holder(REAL, False)}.get,
                             NOBODY, NEVER_CHECKED)  # fmt: skip
    assert verdict.holders == {REAL.address: REAL} and verdict.refused == [("B", REAL.address)]
    # Checked: the forged one is refused for good.
    checked = {REAL: True, FORGED: False}.get
    verdict = choose_holders([("B", FORGED), ("A", REAL)], NOBODY, NOBODY, checked)
    assert verdict.holders == {REAL.address: REAL} and verdict.to_check == []
    assert verdict.refused == [("B", REAL.address)]


def test_a_checked_holder_beats_any_vouched_claim_that_differs():
    held = {REAL.address: Holder(REAL, True)}.get
    verdict = choose_holders([("B", FORGED)], held, NOBODY, NEVER_CHECKED)
    assert verdict.holders == {} and verdict.to_check == []
    assert verdict.refused == [("B", REAL.address)]


def test_an_identity_reusing_someone_elses_key_is_disputed_too():
    """Sessions are found by X25519 key: another address with the real one's key would take
    the real one's handshakes."""
    stolen = Identity(identity(8).address, REAL.x25519_public, identity(8).ed25519_public)
    verdict = choose_holders([("A", REAL), ("B", stolen)], NOBODY, NOBODY, NEVER_CHECKED)
    assert verdict.holders == {} and set(verdict.to_check) == {REAL, stolen}
    by_key = {REAL.x25519_public: Holder(REAL, True)}.get
    verdict = choose_holders([("B", stolen)], NOBODY, by_key, NEVER_CHECKED)
    assert verdict.holders == {} and verdict.refused == [("B", stolen.address)]


def member(who: Identity, virtual: str, ip: str) -> Member:
    return Member(who, (ip_interface(virtual),), ((ip, 9993),))


def lied_to() -> tuple[Sim, object, object, NetworkConfig]:
    """a and b on the wire, and network B, whose controller lists b's address with keys of
    its own choosing (FORGED) at an endpoint nobody answers on."""
    sim = Sim()
    a, b = sim.add_node("a", 1), sim.add_node("b", 2)
    sim.add_socket("a", 1, ("198.51.100.1", 9993))
    sim.add_socket("b", 1, ("192.0.2.2", 9993))
    network_b = NetworkConfig("7f00000001000000", "B", (
        member(identity(1).public(), "10.2.0.1/24", "198.51.100.1"),
        member(FORGED, "10.2.0.2/24", "203.0.113.9")))  # fmt: skip
    return sim, a, b, network_b


def test_a_big_network_is_joined_without_checking_its_members():
    sim = Sim()
    a = sim.add_node("a", 1)
    sim.add_socket("a", 1, ("198.51.100.1", 9993))
    others = [member(identity(n).public(), f"10.9.0.{n}/16", "192.0.2.9")
              for n in range(10, 50)]  # fmt: skip
    a.set_networks([NetworkConfig("8056c2e21c000009", "big", (
        member(identity(1).public(), "10.9.0.1/16", "198.51.100.1"), *others))], sim.now)
    assert a.identity_requests() == []
    assert len(a.peers) == 40 and a.refused_member_identities == 0


def test_a_forged_member_in_another_network_never_takes_the_real_ones_traffic():
    """Network B's controller lists b's address with keys of its own. a, in both networks,
    checks the two identities before giving the address to either: b keeps its real keys,
    network B gets no member at that address, and a's traffic to b in A reaches b."""
    sim, a, b, network_b = lied_to()
    network_a = NetworkConfig("8056c2e21c00000a", "A", (
        member(identity(1).public(), "10.1.0.1/24", "198.51.100.1"),
        member(REAL, "10.1.0.2/24", "192.0.2.2")))  # fmt: skip
    a.set_networks([network_b, network_a], sim.now)
    b.set_networks([network_a], sim.now)
    for _ in range(5):
        a.send_packet(network_a.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        a.send_packet(network_b.id, ipv4_packet("10.2.0.1", "10.2.0.2"), sim.now)
        sim.run(0.2)
    assert a.peers[REAL.address].identity == REAL
    assert [(n, p[16:20]) for n, p, _ in sim.delivered["b"]][:1] == [(network_a.id,
                                                                     bytes([10, 1, 0, 2]))]
    assert a.forged_identities == 1 and a.refused_member_identities == 1
    assert a.packet_drops["no_route"] >= 1, "B's packets for that address go nowhere"
    assert not any(d == ("203.0.113.9", 9993) for _, d, _ in sim.wire_log)


def test_a_checked_newcomer_replaces_a_forged_member_that_held_its_address():
    """Only network B (lying) names b's address, so a uses its keys: nobody can answer them.
    Then the real b reaches a (b's own network names a): its address is derived, so the
    forged identity gives way at once, and B's claim is refused."""
    sim, a, b, network_b = lied_to()
    a.set_networks([network_b], sim.now)
    assert a.peers[REAL.address].identity == FORGED and a.identity_requests() == []
    network_c = NetworkConfig("8056c2e21c00000c", "C", (
        member(identity(1).public(), "10.3.0.1/24", "198.51.100.1"),
        member(REAL, "10.3.0.2/24", "192.0.2.2")))  # fmt: skip
    b.set_networks([network_c], sim.now)
    sim.run(1.0)
    held = a.peers[REAL.address]
    assert held.identity == REAL and held.current is not None
    assert a.forged_identities == 1 and a.refused_member_identities == 1
