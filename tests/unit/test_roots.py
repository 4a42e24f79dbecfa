"""Roots: identity look-up, introduction, and bounds on nodes nobody vouched for."""

from __future__ import annotations

import os
from ipaddress import ip_interface

import pytest

from oneservice.identity import Identity
from oneservice.messages import ConfigRequest, Introduction, Ping, Pong, WhoisAnswer, encode
from oneservice.network.config import Member, NetworkConfig
from oneservice.node import pathing, wire
from oneservice.node.admission import UNKNOWN_PEERS_PER_S
from oneservice.node.core import ControlReceived
from oneservice.node.lookups import LOOKUP_GIVE_UP_S
from oneservice.node.paths import RelayPath
from oneservice.offload import GSO_TCPV4, NEEDS_CSUM, VNET_HDR, SuperPacket, read_frame
from tests.unit.corenet import Sim, identity, initiation, ipv4_packet
from tests.unit.test_offload import tcp_packet

# Any control message for the service above the core will do.
HELLO = ConfigRequest("8056c2e21c0000aa", -1)


def events(node) -> list:
    out = []
    while (event := node.next_event()) is not None:
        out.append(event)
    return out


def nodes_at(sim: Sim, *nodes: tuple[str, int, str], relay: str = "") -> list:
    """(name, identity number, IP) each with one socket on port 9993; ``relay`` names the
    node that relays (a root)."""
    cores = []
    for name, n, ip in nodes:
        cores.append(sim.add_node(name, n, relay=name == relay))
        sim.add_socket(name, 1, (ip, 9993))
    return cores


def network_of(network_id: str, *members: tuple[int, str, str]) -> NetworkConfig:
    """Members as (identity number, virtual address/prefix, IP reached on port 9993)."""
    return NetworkConfig(network_id, "test", tuple(
        Member(identity(n).public(), (ip_interface(virtual),), ((ip, 9993),))
        for n, virtual, ip in members
    ))  # fmt: skip


def rooted(relay: bool = True) -> Sim:
    """a and b know only the root r; nobody shares a network."""
    sim = Sim()
    nodes_at(sim, ("r", 3, "203.0.113.1"), ("a", 1, "198.51.100.1"), ("b", 2, "192.0.2.2"),
             relay="r" if relay else "")  # fmt: skip
    for name in ("a", "b"):
        sim.nodes[name].set_roots([(identity(3).public(), [("203.0.113.1", 9993)])], sim.now)
    sim.run(0.2)
    return sim


def test_nodes_find_each_other_through_a_root():
    sim = rooted()
    a, b = sim.nodes["a"], sim.nodes["b"]
    assert b.identity.address not in a.peers
    a.send_control(b.identity.address, HELLO, sim.now)
    sim.run(0.5)
    received = [e for e in events(b) if isinstance(e, ControlReceived)]
    assert received == [ControlReceived(a.identity.address, HELLO)]
    # Direct, not through the root: a's path to b is b's own endpoint.
    assert a.peers[b.identity.address].preferred.endpoint == ("192.0.2.2", 9993)


def test_lookup_of_an_unknown_address_gives_up_and_counts():
    sim = rooted()
    a = sim.nodes["a"]
    a.send_control("0123456789", HELLO, sim.now)
    sim.run(LOOKUP_GIVE_UP_S + 2, step=0.25)
    assert "0123456789" not in a.peers
    assert a.packet_drops["queue_dropped_unreachable"] == 1


def test_a_root_does_not_answer_for_a_node_claiming_someone_elses_address():
    sim = rooted()
    a, r = sim.nodes["a"], sim.nodes["r"]
    real = a.peers[r.identity.address]
    liar = Identity.generate()
    forged = WhoisAnswer(real.identity.address,
                         f"{real.identity.address}:1:{liar.x25519_public.hex()}:"
                         f"{liar.ed25519_public.hex()}")  # fmt: skip
    a.parts.roots.lookups.start(real.identity.address, sim.now)
    a.parts.roots.receive_whois_answer(real, forged, sim.now)
    assert a.peers[r.identity.address].identity == real.identity  # unchanged
    assert a.packet_drops["whois_answer_invalid"] == 1


def test_strangers_are_accepted_at_a_bounded_rate():
    sim = rooted()
    r = sim.nodes["r"]
    root_public = identity(3).x25519_public
    sim.run(1.0)  # the rate's bucket full again after the members met the root
    accepted_before = len(r.peers)
    strangers = [Identity.generate() for _ in range(int(UNKNOWN_PEERS_PER_S) + 5)]
    for n, stranger in enumerate(strangers):
        r.receive_datagram(initiation(stranger, root_public, n + 1), 1,
                           (f"192.0.2.{n + 10}", 9993), sim.now)  # fmt: skip
        sim.collect()  # its turn, and its identity check
    assert len(r.peers) - accepted_before == int(UNKNOWN_PEERS_PER_S)
    assert r.drops["unknown_peer_rate_limited"] == 5


def test_garbage_whois_and_introductions_are_counted():
    sim = rooted()
    a, r = sim.nodes["a"], sim.nodes["r"]
    root = a.peers[r.identity.address]
    a.parts.roots.receive_introduction(root, Introduction("junk", ("1.2.3.4/5",)), sim.now)
    a.parts.roots.receive_introduction(root, Introduction(os.urandom(3).hex()), sim.now)
    assert a.packet_drops["introduction_invalid"] == 2


DIRECT = frozenset({("198.51.100.1", 9993), ("192.0.2.2", 9993)})  # a <-> b, not via r


def behind_a_root() -> tuple[Sim, object, object, NetworkConfig]:
    """a and b, members of one network, both connected to the relaying root r."""
    sim = Sim()
    _, a, b = nodes_at(sim, ("r", 3, "203.0.113.1"), ("a", 1, "198.51.100.1"),
                       ("b", 2, "192.0.2.2"), relay="r")  # fmt: skip
    network = network_of("8056c2e21c000001", (1, "10.1.0.1/24", "198.51.100.1"),
                         (2, "10.1.0.2/24", "192.0.2.2"))  # fmt: skip
    for node in (a, b):
        node.set_roots([(identity(3).public(), [("203.0.113.1", 9993)])], sim.now)
        node.set_networks([network], sim.now)
    return sim, a, b, network


def test_relay_through_the_root_while_the_direct_path_is_blocked():
    sim, a, b, network = behind_a_root()
    sim.blocked.add(DIRECT)
    for _ in range(30):
        a.send_packet(network.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    assert len(sim.delivered["b"]) >= 25, "traffic flows through the root"
    assert a.peers[b.identity.address].preferred.via == identity(3).address
    # A new config revision re-derives candidate paths: a relay path's "endpoint" (the root's
    # address) must not become a UDP destination (the Sim refuses non-numeric ones).
    a.set_networks([network], sim.now)
    sim.run(2.0)
    assert a.accepted + sum(a.drops.values()) > 0

    sim.blocked.clear()  # the direct path opens: traffic leaves the relay by itself
    for _ in range(40):
        a.send_packet(network.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    assert a.peers[b.identity.address].preferred.via is None
    assert b.peers[a.identity.address].preferred.via is None


def relayed_kinds(sim: Sim, network: NetworkConfig) -> tuple[set[int], set[int]]:
    """Relay a's traffic to b through r; the kinds of datagram a sent r, and r sent b."""
    sim.blocked.add(DIRECT)
    for _ in range(30):
        sim.nodes["a"].send_packet(network.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    assert len(sim.delivered["b"]) >= 25, "traffic flows through the root"
    to_root = {d[1] for name, to, d in sim.wire_log if name == "a" and to[0] == "203.0.113.1"}
    to_b = {d[1] for name, to, d in sim.wire_log if name == "r" and to[0] == "192.0.2.2"}
    return to_root, to_b


def test_data_goes_in_thin_frames_through_a_root_that_takes_them():
    """The data datagrams are sealed end to end: a root that says it takes thin frames
    (its pings and pongs) gets them with only the address encrypted, and sends them on so."""
    sim, a, b, network = behind_a_root()
    to_root, to_b = relayed_kinds(sim, network)
    assert wire.TYPE_RELAY_THIN in to_root and wire.TYPE_RELAYED_THIN in to_b
    root = a.peers[identity(3).address]
    assert root.thin_frames and sim.nodes["r"].peers[b.identity.address].thin_frames


def test_a_tcp_super_packet_goes_through_the_root_without_being_cut_first(monkeypatch):
    """As on a direct path, its segments are sealed straight from it (Session.seal_super)
    and framed for the root; b gets every segment."""
    sim, a, _, network = behind_a_root()
    relayed_kinds(sim, network)  # relayed, and the root takes thin frames
    monkeypatch.setattr(SuperPacket, "segments", lambda self: pytest.fail("cut first"))
    payload = os.urandom(1300 * 4 + 50)
    packet = tcp_packet(4, payload, addresses=("10.1.0.1", "10.1.0.2"))
    frame = VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, 40, 1300, 20, 16) + packet
    super_packet = read_frame(frame)
    assert isinstance(super_packet, SuperPacket)
    before = len(sim.delivered["b"])
    a.send_super_packet(network.id, super_packet, sim.now)
    sim.step()
    delivered = [p for _, p, _ in sim.delivered["b"][before:]]
    assert b"".join(p[40:] for p in delivered) == payload


def test_nodes_that_do_not_say_they_take_thin_frames_get_full_ones(monkeypatch):
    """As older nodes: no thin flag in their pings and pongs, and relaying still works."""
    def without_thin(message):
        if isinstance(message, Ping | Pong):
            message = type(message)(**{**message.__dict__, "thin": False})
        return encode(message)

    monkeypatch.setattr(pathing, "encode", without_thin)
    sim, *_, network = behind_a_root()
    to_root, to_b = relayed_kinds(sim, network)
    assert wire.TYPE_RELAY in to_root and wire.TYPE_RELAYED in to_b
    assert not to_root & wire.THIN_FRAMES and not to_b & wire.THIN_FRAMES


def test_a_relay_path_names_its_root_and_has_no_endpoint_to_tell_anyone():
    """Both directions of a relayed pair see the relay as a path of its own kind: the root it
    goes through, never a made-up endpoint that a controller or a config could be given."""
    sim, a, b, network = behind_a_root()
    sim.blocked.add(DIRECT)
    for _ in range(30):
        a.send_packet(network.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    for near, far in ((a, b), (b, a)):
        path = near.peers[far.identity.address].preferred
        assert isinstance(path, RelayPath)
        assert (path.via, path.to) == (identity(3).address, far.identity.address)
        assert not hasattr(path, "endpoint") and not hasattr(path, "socket_id")
        assert near.peer_endpoints(far.identity.address, sim.now) == []
        [view] = [v for v in near.peer_views(sim.now) if v.address == far.identity.address]
        [relayed] = [p for p in view.paths if p.preferred]
        assert (relayed.via, relayed.endpoint, relayed.socket_id) == (identity(3).address, None,
                                                                      None)  # fmt: skip


def test_nodes_that_are_not_roots_refuse_to_relay():
    sim = rooted(relay=False)
    a, b, r = sim.nodes["a"], sim.nodes["b"], sim.nodes["r"]
    root = a.peers[r.identity.address]
    relay_frame = bytes.fromhex(b.identity.address) + b"x" * 40
    a.parts.tx.send_on(root, root.preferred, 5, relay_frame, sim.now)
    sim.step()
    assert r.packet_drops["relay_refused"] == 1


def test_a_silent_block_under_two_way_traffic_moves_to_the_relay_in_about_a_second():
    sim, a, b, network = behind_a_root()

    def exchange() -> None:  # a request and its answer, every 0.2 s
        a.send_packet(network.id, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.05)
        b.send_packet(network.id, ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        sim.run(0.15)

    for _ in range(20):
        exchange()
    sim.blocked.add(DIRECT)
    blocked_at = sim.now
    while a.peers[b.identity.address].preferred.via is None and sim.now - blocked_at < 3:
        exchange()
    # The answers stop, which earns an early probe instead of waiting for the 1 s schedule.
    assert sim.now - blocked_at <= 1.3


def test_only_roots_answer_whois():
    sim = rooted(relay=False)  # r is an ordinary node that a and b happen to know
    a, b, r = sim.nodes["a"], sim.nodes["b"], sim.nodes["r"]
    a.send_control(b.identity.address, HELLO, sim.now)
    sim.run(3)
    assert b.identity.address not in a.peers
    assert r.packet_drops["whois_refused"] >= 1


def test_a_root_tells_a_stranger_nothing_about_the_members_of_its_networks():
    """r is a root and a member of a network with m; s, a stranger using r as its root, asks
    who m is: it learns nothing (no identity, no endpoints), and r counts the refusal."""
    sim = Sim()
    r, m, s = nodes_at(sim, ("r", 3, "203.0.113.1"), ("m", 4, "192.0.2.4"),
                       ("s", 5, "198.51.100.5"), relay="r")  # fmt: skip
    network = network_of("8056c2e21c0000aa", (3, "10.3.0.3/24", "203.0.113.1"),
                         (4, "10.3.0.4/24", "192.0.2.4"))  # fmt: skip
    for node in (r, m):
        node.set_networks([network], sim.now)
    s.set_roots([(identity(3).public(), [("203.0.113.1", 9993)])], sim.now)
    sim.run(1)
    assert m.identity.address in r.peers
    s.send_control(m.identity.address, HELLO, sim.now)
    sim.run(3)
    assert m.identity.address not in s.peers
    assert r.packet_drops["whois_refused"] >= 1
