"""Handshake admission: MACs, cookies under load, rate limits, identity checks off the core."""

from __future__ import annotations

import os

from oneservice.identity import Identity
from oneservice.node import admission, cookies, wire
from oneservice.node.noise import MESSAGE_1_OVERHEAD
from oneservice.randomness import RandomPool
from tests.unit.corenet import NETWORK_ID, Sim, identity, initiation, ipv4_packet, two_nodes


def connected(sim: Sim) -> bool:
    """a and b have sessions with each other (b may also keep the flood's stranger)."""
    a, b = sim.nodes["a"], sim.nodes["b"]
    return (a.peers[b.identity.address].current is not None
            and b.peers[a.identity.address].current is not None)  # fmt: skip


def spoofed(n: int) -> tuple[str, int]:
    return (f"203.0.{n // 250}.{n % 250 + 1}", 40000 + n % 1000)


def test_without_a_valid_mac1_an_initiation_costs_nothing_and_gets_no_answer():
    sim = two_nodes()
    b = sim.nodes["b"]
    junk = bytes([wire.PROTOCOL_VERSION, wire.TYPE_HANDSHAKE_INIT]) + os.urandom(
        wire.HANDSHAKE_INIT_LEN - 2
    )
    for n in range(1000):
        b.receive_datagram(junk, 1, spoofed(n), sim.now)
    b.process_handshakes(sim.now)
    assert b.drops["handshake_bad_mac"] == 1000
    assert b.datagrams_to_send() == [] and b.initiations_waiting() == 0


def test_under_load_spoofed_initiations_get_only_a_cookie_reply():
    """Valid initiations (a real identity, our key) from 1000 sources at once: a few are
    queued before the node counts as under load; every other one is answered with a small
    cookie reply to its own source and never reaches a Diffie-Hellman."""
    sim = two_nodes()
    b = sim.nodes["b"]
    stranger = Identity.generate()
    genuine = initiation(stranger, b.identity.x25519_public)
    for n in range(1000):
        b.receive_datagram(genuine, 1, spoofed(n), sim.now)
    queued = b.initiations_waiting()
    assert queued <= admission.LOAD_QUEUE_LENGTH
    assert b.drops["cookie_required"] == 1000 - queued
    replies = b.datagrams_to_send()
    assert len(replies) == 1000 - queued
    answered = {spoofed(n) for n in range(queued, 1000)}
    assert {destination for _, destination, _, _ in replies} == answered
    assert all(len(d) == wire.COOKIE_REPLY_LEN < len(genuine) for _, _, [d], _ in replies)
    b.process_handshakes(sim.now)
    assert b.initiations_waiting() <= admission.LOAD_QUEUE_LENGTH  # at most one identity check


def flood(b, now: float, count: int = 200) -> None:
    """Valid initiations from ``count`` spoofed sources: b is under load; its cookie replies
    (to the spoofed sources) are taken away."""
    datagram = initiation(Identity.generate(), b.identity.x25519_public)
    for n in range(count):
        b.receive_datagram(datagram, 1, spoofed(n), now)
    b.datagrams_to_send()


def test_a_real_initiator_proves_its_address_and_connects_while_the_peer_is_flooded():
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    flood(b, sim.now)
    a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    sim.step()
    assert connected(sim), "the cookie reply made a send the same initiation with a mac2"
    assert a.drops == {} and len(sim.delivered["b"]) == 1
    initiations = [d for name, _, d in sim.wire_log if name == "a" and d[1] == 1]
    assert len(initiations) == 2
    assert initiations[0][:-16] == initiations[1][:-16]  # the same initiation, now with mac2
    assert initiations[0][-16:] == bytes(16) != initiations[1][-16:]


def test_a_cookie_is_kept_for_its_path_and_used_by_the_next_initiation():
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    flood(b, sim.now)
    sim.run(0.1)
    assert connected(sim)
    [peer_b] = a.peers.values()
    assert set(peer_b.cookies) == {("192.0.2.2", 9993)}
    sent_before = b.cookie_replies_sent
    a.parts.machine.initiate(peer_b, sim.now)  # a rekey while b is still under load
    flood(b, sim.now)
    sim.step()
    assert b.cookie_replies_sent == sent_before + 200, "no cookie needed for a's initiation"


def test_a_cookie_reply_that_does_not_match_our_initiation_is_dropped():
    sim = two_nodes()
    a = sim.nodes["a"]
    a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    [peer_b] = a.peers.values()
    a.datagrams_to_send()
    forged = wire.cookie_reply(peer_b.handshake_index, os.urandom(12), os.urandom(32))
    a.receive_datagram(forged, 1, ("192.0.2.2", 9993), sim.now)
    unknown = wire.cookie_reply(peer_b.handshake_index ^ 1, os.urandom(12), os.urandom(32))
    a.receive_datagram(unknown, 1, ("192.0.2.2", 9993), sim.now)
    a.receive_datagram(forged[:-1], 1, ("192.0.2.2", 9993), sim.now)
    assert a.drops == {"cookie_reply_invalid": 1, "unknown_session": 1,
                       "cookie_reply_malformed": 1}  # fmt: skip
    assert peer_b.cookies == {} and a.datagrams_to_send() == []


def test_a_cookie_is_bound_to_the_source_address_and_port():
    issuer = cookies.CookieIssuer(identity(2).x25519_public, now=0.0)
    body = bytes(wire.HANDSHAKE_INIT_BODY_LEN)
    mac1 = cookies.mac(cookies.mac1_key(identity(2).x25519_public), body)
    nonce, sealed = issuer.reply(body + mac1 + bytes(16), ("192.0.2.7", 5000), now=1.0)
    cookie = cookies.open_cookie(cookies.cookie_key(identity(2).x25519_public), mac1, nonce,
                                 sealed)  # fmt: skip
    proven = cookies.with_macs(body, mac1, cookie)
    assert issuer.mac1_valid(proven)
    assert issuer.mac2_valid(proven, ("192.0.2.7", 5000), now=2.0)
    assert not issuer.mac2_valid(proven, ("192.0.2.7", 5001), now=2.0)
    assert not issuer.mac2_valid(proven, ("192.0.2.8", 5000), now=2.0)
    later = 1.0 + cookies.COOKIE_SECRET_LIFETIME_S
    assert not issuer.mac2_valid(proven, ("192.0.2.7", 5000), now=later), "the secret rotated"
    assert cookies.open_cookie(cookies.cookie_key(identity(3).x25519_public), mac1, nonce,
                               sealed) is None  # fmt: skip


def test_cookie_replies_have_fresh_nonces_without_a_system_call_each(monkeypatch):
    """Under a flood from made-up sources every initiation gets a reply: its nonce comes from
    a pool of the system's random bytes (not a getrandom call per reply), and no two replies
    share one."""
    calls = []

    def urandom(count):
        calls.append(count)
        return os.getrandom(count)

    monkeypatch.setattr(os, "urandom", urandom)
    issuer = cookies.CookieIssuer(identity(2).x25519_public, now=0.0, random=urandom)
    calls.clear()  # (the cookie secret's)
    body = bytes(wire.HANDSHAKE_INIT_BODY_LEN)
    mac1 = cookies.mac(cookies.mac1_key(identity(2).x25519_public), body)
    nonces = [issuer.reply(body + mac1 + bytes(16), ("192.0.2.7", 5000 + n), now=1.0)[0]
              for n in range(1000)]  # fmt: skip
    assert len(set(nonces)) == 1000 and {len(n) for n in nonces} == {cookies.NONCE_LEN}
    assert len(calls) <= 3, calls


def test_a_random_pool_hands_out_each_byte_once_and_refills(monkeypatch):
    source = iter(range(1, 1000))
    monkeypatch.setattr(os, "urandom", lambda count: bytes(next(source) for _ in range(count)))
    pool = RandomPool(size=8)
    assert pool(3) + pool(3) == bytes([1, 2, 3, 4, 5, 6])
    assert pool(3) == bytes([9, 10, 11]), "what is left of a pool that cannot serve is dropped"
    assert pool(20) == bytes(range(17, 37)), "more than the pool holds comes straight"
    assert pool(5) == bytes([12, 13, 14, 15, 16])


def test_initiations_from_one_source_are_rate_limited_before_any_diffie_hellman():
    sim = two_nodes()
    b = sim.nodes["b"]
    key = cookies.mac1_key(b.identity.x25519_public)
    body = bytes([wire.PROTOCOL_VERSION, wire.TYPE_HANDSHAKE_INIT]) + os.urandom(
        wire.HANDSHAKE_INIT_BODY_LEN - 2
    )
    junk_noise = cookies.with_macs(body, cookies.mac(key, body), None)
    for _ in range(12):
        b.receive_datagram(junk_noise, 1, ("203.0.113.50", 4000), sim.now)
        b.process_handshakes(sim.now)
    assert b.drops["handshake_failed"] == admission.HANDSHAKES_PER_SOURCE_BURST
    assert b.drops["handshake_rate_limited"] == 12 - admission.HANDSHAKES_PER_SOURCE_BURST


def test_an_unknown_identity_is_checked_outside_the_core_then_answered():
    sim = two_nodes()
    b = sim.nodes["b"]
    stranger = Identity.generate()
    b.receive_datagram(initiation(stranger, b.identity.x25519_public), 1, ("203.0.113.9", 9993),
                       sim.now)  # fmt: skip
    b.process_handshakes(sim.now)
    [key] = b.identity_requests()
    assert key == stranger.x25519_public + stranger.ed25519_public
    assert stranger.address not in b.peers and b.datagrams_to_send() == []
    assert b.initiations_waiting() == 1
    b.identity_derived(key, stranger.address, sim.now + 0.05)
    assert stranger.address in b.peers
    [(_, destination, [response], _)] = b.datagrams_to_send()
    assert destination == ("203.0.113.9", 9993) and response[1] == wire.TYPE_HANDSHAKE_RESPONSE
    assert b.initiations_waiting() == 0
    # Known from now on: no second check.
    b.receive_datagram(initiation(stranger, b.identity.x25519_public, wall_time=1.8e9), 1,
                       ("203.0.113.9", 9993), sim.now + 1)  # fmt: skip
    b.process_handshakes(sim.now + 1)
    assert b.identity_requests() == [] and len(b.datagrams_to_send()) == 1


def test_one_source_cannot_take_every_identity_check_slot():
    sim = two_nodes()
    b = sim.nodes["b"]
    b.set_roles(relay=False, meets_strangers=True)  # as a controller (others: a trickle)
    for n in range(5):
        b.receive_datagram(initiation(Identity.generate(), b.identity.x25519_public), 1,
                           ("203.0.113.66", 9993), sim.now + n * 0.01)  # fmt: skip
        b.process_handshakes(sim.now + n * 0.01)
    assert len(b.identity_requests()) == admission.MAX_IDENTITY_CHECKS_PER_SOURCE
    assert b.drops["identity_checks_per_source"] == 5 - admission.MAX_IDENTITY_CHECKS_PER_SOURCE
    newcomer = Identity.generate()
    b.receive_datagram(initiation(newcomer, b.identity.x25519_public), 1, ("203.0.113.9", 9993),
                       sim.now + 0.1)  # fmt: skip
    b.process_handshakes(sim.now + 0.1)
    assert b.identity_requests() == [newcomer.x25519_public + newcomer.ed25519_public]


def test_an_identity_check_answered_too_late_or_never_is_counted_and_frees_its_slot():
    sim = two_nodes()
    b = sim.nodes["b"]
    b.set_roles(relay=False, meets_strangers=True)  # as a controller (others: a trickle)
    late, lost = Identity.generate(), Identity.generate()
    for n, stranger in enumerate((late, lost)):
        b.receive_datagram(initiation(stranger, b.identity.x25519_public), 1,
                           (f"203.0.113.{n + 1}", 9993), sim.now)  # fmt: skip
    b.process_handshakes(sim.now)
    b.identity_requests()
    b.identity_derived(late.x25519_public + late.ed25519_public, late.address,
                       sim.now + admission.IDENTITY_WAIT_S + 1)  # fmt: skip
    assert b.drops["identity_check_late"] == 1 and b.datagrams_to_send() == []
    b.handle_timer(sim.now + 30 * admission.IDENTITY_WAIT_S)
    assert b.drops["identity_check_late"] == 2 and b.initiations_waiting() == 0


def test_a_wrong_length_initiation_is_malformed():
    sim = two_nodes()
    b = sim.nodes["b"]
    short = initiation(Identity.generate(), b.identity.x25519_public)[:-1]
    b.receive_datagram(short, 1, ("203.0.113.1", 9993), sim.now)
    assert b.drops["handshake_malformed"] == 1
    assert wire.HANDSHAKE_INIT_LEN == 8 + MESSAGE_1_OVERHEAD + wire.INITIATION_PAYLOAD_LEN + 32


def _strangers(node, count: int, now: float) -> int:
    """``count`` fresh identities' initiations, each from its own address, at ``now``: how
    many identity checks (scrypt runs) they cost."""
    for n in range(count):  # (each handled before the next: no load, no cookie replies)
        node.receive_datagram(initiation(Identity.generate(), node.identity.x25519_public), 1,
                              (f"203.0.113.{n + 1}", 9993), now)  # fmt: skip
        node.process_handshakes(now)
    return len(node.identity_requests())


def test_strangers_cost_a_plain_node_a_trickle_and_a_root_a_bounded_rate():
    """Each check is ~40 ms of a core: a node that is neither a root nor a controller checks
    at most QUIET_UNKNOWN_PEERS_PER_S strangers, a root at most UNKNOWN_PEERS_PER_S."""
    sim = two_nodes()
    plain = sim.nodes["b"]
    assert _strangers(plain, 10, sim.now) == 1
    assert plain.drops["unknown_peer_rate_limited"] == 9
    later = sim.now + 1 / admission.QUIET_UNKNOWN_PEERS_PER_S
    assert _strangers(plain, 10, later) == 1, "one more once the trickle allows it"
    root = two_nodes().nodes["b"]
    root.set_roles(relay=True, meets_strangers=True)
    assert _strangers(root, 10, sim.now) == int(admission.UNKNOWN_PEERS_PER_S)
