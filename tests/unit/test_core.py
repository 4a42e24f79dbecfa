"""Two NodeCores against each other in memory with a fake clock."""

from __future__ import annotations

import dataclasses
import ipaddress
import os

from oneservice import offload
from oneservice.identity import Identity
from oneservice.messages import AddressAnswer
from oneservice.network.config import Member, NetworkConfig, Route
from oneservice.node import responder as responder_module
from oneservice.node import wire
from oneservice.node.core import PeerConnected
from oneservice.node.paths import RelayPath
from oneservice.node.prefixes import PrefixTable
from oneservice.node.timing import (
    ACTIVE_PROBE_INTERVAL_S,
    EAGER_NETWORK_MEMBERS,
    IDLE_PROBE_INTERVAL_S,
    REKEY_AFTER_S,
)
from tests.unit.corenet import (
    NETWORK_ID,
    Sim,
    connected_after_one_packet,
    identity,
    ipv4_packet,
    two_nodes,
)


def connected(sim) -> bool:
    return all(p.current is not None for core in sim.nodes.values() for p in core.peers.values())


def test_handshake_then_packets_flow_both_ways():
    sim = two_nodes()
    sim.run(0.1)
    assert connected(sim)
    a, b = sim.nodes["a"], sim.nodes["b"]
    a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2", b"hello"), sim.now)
    b.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.2", "10.1.0.1", b"back"), sim.now)
    sim.step()
    assert [p[-5:] for _, p, _ in sim.delivered["b"]] == [b"hello"]
    assert [p[-4:] for _, p, _ in sim.delivered["a"]] == [b"back"]
    events = []
    while (event := a.next_event()) is not None:
        events.append(event)
    assert PeerConnected(b.identity.address) in events


def test_packets_sent_before_the_handshake_are_queued_not_lost():
    sim = two_nodes()
    a = sim.nodes["a"]
    for n in range(5):
        a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2", bytes([n]) * 20),
                      sim.now)  # fmt: skip
    sim.run(0.1)
    assert [p[-1] for _, p, _ in sim.delivered["b"]] == [0, 1, 2, 3, 4]


def test_a_partial_checksum_hint_travels_with_its_packet_and_a_bad_one_is_dropped():
    sim = two_nodes()
    sim.run(0.1)
    a, b = sim.nodes["a"], sim.nodes["b"]
    tcp = ipv4_packet("10.1.0.1", "10.1.0.2", bytes(20))
    hint = offload.partial_hint(20, offload.TCP_CHECKSUM_OFFSET)
    a.send_packet(NETWORK_ID, tcp, sim.now, hint)
    sim.step()
    assert sim.delivered["b"] == [(NETWORK_ID, tcp, hint)]
    # A hint that would make b's kernel write into the IP header (the source address).
    a.send_packet(NETWORK_ID, tcp, sim.now, offload.partial_hint(6, offload.UDP_CHECKSUM_OFFSET))
    sim.step()
    assert len(sim.delivered["b"]) == 1
    assert b.packet_drops["inner_malformed"] == 1


def super_packet(payload: bytes, mss: int = 1380) -> offload.SuperPacket:
    """What a TUN with offloads hands over: a TCP super-packet from a to b, not cut yet."""
    tcp = bytes.fromhex("9c401451000003e80000004d50100200") + bytes(4)
    packet = ipv4_packet("10.1.0.1", "10.1.0.2", tcp + payload)
    frame = offload.VNET_HDR.pack(offload.NEEDS_CSUM, offload.GSO_TCPV4, 40, mss, 20, 16)
    read = offload.read_frame(frame + packet)
    assert isinstance(read, offload.SuperPacket)
    return read


def test_a_super_packet_arrives_as_the_segments_it_would_be_cut_into():
    sim = two_nodes()
    sim.run(0.1)
    a, b = sim.nodes["a"], sim.nodes["b"]
    whole = super_packet(os.urandom(1380 * 30 + 7))
    sim.wire_log.clear()
    a.send_super_packet(NETWORK_ID, whole, sim.now)
    sim.step()
    assert [(p, h) for _, p, h in sim.delivered["b"]] == whole.segments()
    data = [d for name, _, d in sim.wire_log if name == "a" and d[1] == wire.TYPE_DATA]
    assert len(data) == 31 and not b.drops and not b.packet_drops
    # Before a session (queued), and too big for the MTU: the way of the cut segments.
    sim.delivered["b"].clear()
    big = super_packet(os.urandom(3000), mss=1500)
    a.send_super_packet(NETWORK_ID, big, sim.now)
    sim.step()
    assert a.packet_drops["oversize"] == 2
    assert [(p, h) for _, p, h in sim.delivered["b"]] == big.segments()[2:]


def test_a_super_packet_sent_before_the_handshake_is_queued_not_lost():
    sim = two_nodes()
    whole = super_packet(os.urandom(1380 * 3))
    sim.nodes["a"].send_super_packet(NETWORK_ID, whole, sim.now)
    sim.run(0.2)
    assert [(p, h) for _, p, h in sim.delivered["b"]] == whole.segments()


def test_nothing_is_sent_in_the_clear():
    sim = two_nodes()
    sim.run(0.1)
    secret = b"plaintext-marker-" * 2
    sim.nodes["a"].send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2", secret),
                               sim.now)  # fmt: skip
    sim.step()
    assert sim.delivered["b"]
    assert all(secret not in data and b"10.1.0" not in data for _, _, data in sim.wire_log)


def test_replayed_and_forged_datagrams_are_dropped_and_counted():
    sim = connected_after_one_packet()
    b = sim.nodes["b"]
    _, _, data = next(e for e in reversed(sim.wire_log) if e[0] == "a"
                                and e[2][1] == wire.TYPE_DATA and len(e[2]) > 40)  # fmt: skip
    before = len(sim.delivered["b"])
    b.receive_datagram(data, 1, ("198.51.100.1", 9993), sim.now)
    forged = bytearray(data)
    forged[-1] ^= 0x01
    b.receive_datagram(bytes(forged[:8]) + (2**40).to_bytes(8, "little") + bytes(forged[16:]),
                       1, ("198.51.100.1", 9993), sim.now)  # fmt: skip
    sim.collect()
    assert len(sim.delivered["b"]) == before
    assert b.drops["replayed"] == 1
    assert b.drops["authentication_failed"] == 1


def test_source_address_must_belong_to_the_sending_peer():
    sim = two_nodes()
    sim.run(0.1)
    sim.nodes["a"].send_packet("8056c2e21c000001", ipv4_packet("10.1.0.77", "10.1.0.2"), sim.now)
    sim.step()
    assert sim.delivered["b"] == []
    assert sim.nodes["b"].packet_drops["source_not_allowed"] == 1


def test_handshake_survives_heavy_loss():
    sim = two_nodes(loss=0.5)
    sim.run(10)
    assert connected(sim)


def test_rekey_replaces_the_session_without_losing_traffic():
    sim = two_nodes()
    sim.run(0.1)
    a = sim.nodes["a"]
    first = next(iter(a.peers.values())).current
    for _ in range(int((REKEY_AFTER_S + 5) / 0.5)):
        a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.5, step=0.1)
    sent = int((REKEY_AFTER_S + 5) / 0.5)
    assert next(iter(a.peers.values())).current is not first
    assert len(sim.delivered["b"]) == sent


def test_failover_when_the_active_socket_goes_away():
    """b has two uplinks; when its active one disappears, traffic moves at once."""
    sim = two_nodes(b_endpoints=(("192.0.2.2", 9993), ("203.0.113.2", 9993)))
    a, b = sim.nodes["a"], sim.nodes["b"]
    for _ in range(30):  # traffic, so both paths are probed and warm
        b.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        sim.run(0.1)
    peer_a = next(iter(b.peers.values()))
    active = peer_a.preferred.socket_id
    assert all(path.alive(sim.now) for path in peer_a.paths.values())
    delivered = len(sim.delivered["a"])
    sim.remove_socket("b", active)
    b.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
    sim.step(0.001)
    assert len(sim.delivered["a"]) == delivered + 1, "the very next packet takes the other uplink"
    assert peer_a.preferred.socket_id != active
    # And a's replies follow b to its remaining address (a learns it from authenticated traffic).
    a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    sim.step(0.001)
    assert sim.delivered["b"][-1][1][12:16] == bytes([10, 1, 0, 1])


def test_silently_dead_path_is_abandoned_within_seconds():
    sim = two_nodes(b_endpoints=(("192.0.2.2", 9993), ("203.0.113.2", 9993)))
    b = sim.nodes["b"]
    for _ in range(30):
        b.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        sim.run(0.1)
    peer_a = next(iter(b.peers.values()))
    dead = sim.sockets[("b", peer_a.preferred.socket_id)]
    sim.dead.add(dead)  # no interface event: the upstream just stops answering
    for _ in range(50):
        b.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        sim.run(0.1)
    assert sim.sockets[("b", peer_a.preferred.socket_id)] != dead
    assert len(sim.delivered["a"]) >= 30 + 50 - 35  # at most ~3.5 s of packets lost


def test_a_route_change_that_breaks_only_our_way_out_is_caught_by_strict_probes():
    sim = two_nodes(b_endpoints=(("192.0.2.2", 9993), ("203.0.113.2", 9993)))
    a, b = sim.nodes["a"], sim.nodes["b"]
    for _ in range(30):
        b.send_packet(NETWORK_ID, ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    peer_a = next(iter(b.peers.values()))
    broken = sim.sockets[("b", peer_a.preferred.socket_id)]
    # b's route on that uplink now points at a dead gateway: b's datagrams are lost, a's still
    # arrive (a keeps sending), and the only hint b gets is the route event.
    sim.one_way.add((broken, ("198.51.100.1", 9993)))
    b.routes_changed(sim.now)
    for _ in range(8):  # 0.8 s
        b.send_packet(NETWORK_ID, ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    assert sim.sockets[("b", peer_a.preferred.socket_id)] != broken, "b left the path in < 1 s"


def test_roaming_peer_is_followed_after_readdressing():
    sim = two_nodes()
    sim.run(0.1)
    a, b = sim.nodes["a"], sim.nodes["b"]
    old = sim.sockets.pop(("b", 1))
    del sim.endpoints[old]
    sim.endpoints[("192.0.2.99", 9993)] = ("b", 1)
    sim.sockets[("b", 1)] = ("192.0.2.99", 9993)
    b.socket_readdressed(1, sim.now)
    sim.step()
    a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    sim.step()
    assert len(sim.delivered["b"]) == 1
    assert next(iter(a.peers.values())).preferred.endpoint == ("192.0.2.99", 9993)


def test_keepalive_probe_timing():
    sim = two_nodes()
    sim.run(0.1)
    sim.wire_log.clear()
    sim.run(IDLE_PROBE_INTERVAL_S * 3)
    idle_pings = [e for e in sim.wire_log if e[0] == "a" and e[2][1] == wire.TYPE_CONTROL]
    # Idle: a ping every IDLE_PROBE_INTERVAL_S (pongs are the other direction's controls).
    assert 3 <= len(idle_pings) <= 8
    sim.wire_log.clear()
    for _ in range(50):
        sim.nodes["a"].send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2"),
                                   sim.now)  # fmt: skip
        sim.run(0.1)
    active = [e for e in sim.wire_log if e[0] == "a" and e[2][1] == wire.TYPE_CONTROL]
    expected = 5.0 / ACTIVE_PROBE_INTERVAL_S
    assert expected * 0.8 <= len(active) <= expected * 2.5


def test_endpoint_inside_a_virtual_network_is_refused():
    sim = two_nodes(b_endpoints=(("10.1.0.2", 9993),))  # b's hint is inside the network itself
    sim.run(1)
    assert not connected(sim)
    b_address = sim.nodes["b"].identity.address
    assert sim.nodes["a"].refused_hints == {(b_address, ("10.1.0.2", 9993))}
    assert not any(destination[0] == "10.1.0.2" for _, destination, _ in sim.wire_log)


def test_a_goodbye_ends_the_peer_at_once_and_a_new_handshake_brings_it_back():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    assert b.identity.address in a.live_peers(sim.now)
    b.say_goodbye(sim.now)
    sim.step(0.001)
    assert b.identity.address not in a.live_peers(sim.now), "gone without waiting for probes"
    sim.run(2.0)  # b did not really stop here: a's handshake retries find it again
    assert b.identity.address in a.live_peers(sim.now)


def test_packets_for_other_destinations_go_to_the_gateway_of_the_most_specific_route():
    from oneservice.network.config import Member, NetworkConfig, Route

    members = tuple(Member(identity(n).public(), (ipaddress.ip_interface(f"10.1.0.{n}/24"),))
                    for n in (1, 2, 3))  # fmt: skip
    config = NetworkConfig(NETWORK_ID, "test", members, routes=(
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.2")),
        Route(ipaddress.ip_network("192.168.5.0/24"), ipaddress.ip_address("10.1.0.3")),
    ))  # fmt: skip
    network = PrefixTable(config, identity(1).address)
    packed = ipaddress.ip_address
    assert network.gateway_for(packed("192.168.5.7").packed) == identity(3).address
    assert network.gateway_for(packed("198.51.100.10").packed) == identity(2).address
    assert network.gateway_for(packed("2001:db8::1").packed) is None  # no IPv6 default
    # The gateway of the default may send from the internet (longest prefix: only there).
    assert network.source_owner(packed("198.51.100.10").packed) == identity(2).address


def test_a_gateway_cannot_speak_for_other_members_or_their_subnets():
    """A member that is the via of the default route used to be allowed any source address,
    other members' virtual addresses included; now the longest prefix decides (WireGuard)."""
    from oneservice.network.config import Member, NetworkConfig, Route

    members = tuple(Member(identity(n).public(), (ipaddress.ip_interface(f"10.1.0.{n}/24"),))
                    for n in (1, 2, 3))  # fmt: skip
    config = NetworkConfig(NETWORK_ID, "test", members, routes=(
        Route(ipaddress.ip_network("10.1.0.0/24")),
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.2")),
        Route(ipaddress.ip_network("192.168.5.0/24"), ipaddress.ip_address("10.1.0.3")),
    ))  # fmt: skip
    network = PrefixTable(config, identity(1).address)
    owner = lambda text: network.source_owner(ipaddress.ip_address(text).packed)  # noqa: E731
    assert owner("10.1.0.3") == identity(3).address, "a member's own address is its alone"
    assert owner("10.1.0.1") == identity(1).address, "ours too: nobody may send as us"
    assert owner("10.1.0.77") is None, "the network's own subnet: members only"
    assert owner("192.168.5.7") == identity(3).address, "the more specific route wins"
    assert owner("198.51.100.10") == identity(2).address, "the rest: the default's gateway"


def test_impersonation_by_the_default_gateway_is_dropped_and_counted():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    from oneservice.network.config import Route

    config = next(iter(a.networks.values())).config
    third = Member(identity(3).public(), (ipaddress.ip_interface("10.1.0.3/24"),), ())
    routed = dataclasses.replace(config, members=(*config.members, third), routes=(
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.2")),))  # fmt: skip
    a.set_networks([routed], sim.now)
    b.set_networks([routed], sim.now)
    sim.run(0.2)
    before = len(sim.delivered["a"])
    for source in ("198.51.100.10", "10.1.0.3", "10.1.0.1", "10.1.0.99"):
        b.send_packet(NETWORK_ID, ipv4_packet(source, "10.1.0.1"), sim.now)
    sim.step()
    delivered = [p[12:16] for _, p, _ in sim.delivered["a"][before:]]
    assert delivered == [ipaddress.ip_address("198.51.100.10").packed]
    assert a.packet_drops["source_not_allowed"] == 3


def test_a_gateway_may_send_from_the_subnets_it_routes_and_from_nothing_else():
    import dataclasses

    from oneservice.network.config import Route

    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    config = a.networks[NETWORK_ID].config
    routed = dataclasses.replace(config, routes=(
        Route(ipaddress.ip_network("192.168.5.0/24"), ipaddress.ip_address("10.1.0.2")),
    ))  # fmt: skip
    a.set_networks([routed], sim.now)
    b.set_networks([routed], sim.now)
    sim.run(0.1)
    for source in ("192.168.5.0", "192.168.5.255", "192.168.6.0", "192.168.4.255"):
        b.send_packet(NETWORK_ID, ipv4_packet(source, "10.1.0.1"), sim.now)
    sim.step()
    delivered = [p[12:16] for _, p, _ in sim.delivered["a"]]
    assert delivered == [ipaddress.ip_address(s).packed for s in ("192.168.5.0", "192.168.5.255")]
    assert a.packet_drops["source_not_allowed"] == 2


def test_prefixes_match_packed_addresses_of_their_own_family_only():
    from oneservice.node.prefixes import first_match, prefix

    entries = [(prefix(ipaddress.ip_network(n)), n) for n in
               ("2001:db8:5::/48", "10.0.0.0/8", "0.0.0.0/0")]  # fmt: skip
    packed = lambda text: ipaddress.ip_address(text).packed  # noqa: E731
    assert first_match(packed("2001:db8:5:ffff::1"), entries) == "2001:db8:5::/48"
    assert first_match(packed("2001:db8:6::1"), entries) is None
    assert first_match(packed("10.255.255.255"), entries) == "10.0.0.0/8"
    assert first_match(packed("11.0.0.0"), entries) == "0.0.0.0/0"


def _b_also_listed_at(sim, endpoint) -> NetworkConfig:
    """The network again, with b's hints including ``endpoint`` (a stale one of an old install)."""
    config = next(iter(sim.nodes["a"].networks.values())).config
    members = tuple(
        Member(m.identity, m.addresses, (*m.endpoints, endpoint))
        if m.address == sim.nodes["b"].identity.address else m
        for m in config.members
    )
    return NetworkConfig(config.id, config.name, members)


def test_the_nodes_own_addresses_are_never_a_peers_endpoint():
    sim = two_nodes()
    a = sim.nodes["a"]
    own = ("198.51.100.1", 9993)  # a's own socket
    a.set_own_addresses(["198.51.100.1"], sim.now)
    a.set_networks([_b_also_listed_at(sim, own)], sim.now)
    sim.run(2)
    assert connected(sim)
    assert (sim.nodes["b"].identity.address, own) in a.refused_hints
    assert not any(name == "a" and destination == own for name, destination, _ in sim.wire_log)


def test_a_path_to_an_address_that_becomes_ours_is_dropped():
    sim = two_nodes()
    a = sim.nodes["a"]
    stale = ("192.0.2.77", 9993)
    a.set_networks([_b_also_listed_at(sim, stale)], sim.now)
    sim.run(0.5)
    assert any(p.endpoint == stale for p in next(iter(a.peers.values())).paths.values())
    a.set_own_addresses(["192.0.2.77"], sim.now)  # e.g. DHCP gave this machine that address
    sent = len(sim.wire_log)
    sim.run(5)
    assert connected(sim)
    assert not any(p.endpoint == stale for p in next(iter(a.peers.values())).paths.values())
    assert not any(destination == stale for _, destination, _ in sim.wire_log[sent:])


def _liveness_changes(sim, watcher, gateway_address: str, seconds: float) -> list[float]:
    """Times at which the gateway's liveness (as routing sees it) flipped, with a full
    tunnel's traffic going to it and the service's once-a-second watch."""
    changes, live, end = [], gateway_address in watcher.live_peers(sim.now), sim.now + seconds
    while sim.now < end:
        watcher.set_watched({gateway_address}, sim.now)
        watcher.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.05)
        now_live = gateway_address in watcher.live_peers(sim.now)
        if now_live != live:
            changes.append(round(sim.now, 2))
            live = now_live
    return changes


def test_a_dead_gateway_is_withdrawn_once_and_stays_withdrawn_until_it_answers():
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    gateway = b.identity.address
    _liveness_changes(sim, a, gateway, 2)  # connected, traffic flowing
    assert gateway in a.live_peers(sim.now)
    killed_at = sim.now
    sim.dead.add(("192.0.2.2", 9993))  # SIGKILL: no goodbye, nothing answers any more
    changes = _liveness_changes(sim, a, gateway, 8)
    assert len(changes) == 1, f"liveness flipped at {changes} (killed at {killed_at:.2f})"
    assert changes[0] - killed_at <= 1.0 + 0.05
    sim.dead.discard(("192.0.2.2", 9993))  # back: live again once a probe is answered
    changes = _liveness_changes(sim, a, gateway, 3)
    assert len(changes) == 1 and gateway in a.live_peers(sim.now)


def test_the_uplink_the_os_prefers_carries_the_traffic_both_ways_and_gets_it_back():
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    sim.add_socket("a", 2, ("198.51.100.2", 9993))  # a's second uplink, "wifi"
    sim.rank_uplinks("a", {1: 200, 2: 100})  # default routes: cell metric 200, wifi 100

    def wires() -> tuple[int, str]:
        [to_b], [to_a] = a.peers.values(), b.peers.values()
        return to_b.preferred.socket_id, to_a.preferred.endpoint[0]

    for _ in range(20):
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    assert wires() == (2, "198.51.100.2"), "both directions ride wifi"

    sim.remove_socket("a", 2)  # wifi gone: cell at once
    sim.run(0.3)
    assert wires()[0] == 1
    sim.add_socket("a", 3, ("198.51.100.2", 9993))  # wifi back (a new socket)
    sim.rank_uplinks("a", {1: 200, 3: 100})
    back = sim.now
    while wires() != (3, "198.51.100.2"):
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.05)
        assert sim.now - back < 1.0, "back on the preferred uplink within 1 s"


def test_a_peers_advertised_endpoints_are_direct_addresses_each_once():
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    sim.add_socket("a", 2, ("198.51.100.2", 9993))  # a second socket reaches b's address too
    for _ in range(10):
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
    [peer_b] = a.peers.values()
    relay = RelayPath("3f00000001", b.identity.address)
    relay.last_received = sim.now
    peer_b.paths[relay.key] = relay
    assert a.peer_endpoints(b.identity.address, sim.now) == ["192.0.2.2/9993"]


def test_a_full_table_of_transient_peers_makes_room_by_evicting_the_idlest(monkeypatch):
    """Strangers (not members of any network of ours) are kept as transient peers, up to a
    cap; at the cap a newcomer replaces the one idle longest instead of being refused."""
    monkeypatch.setattr(responder_module, "MAX_TRANSIENT_PEERS", 2)
    sim = two_nodes()
    a = sim.nodes["a"]
    a.set_roles(relay=False, meets_strangers=True)  # as a controller (others: a trickle)

    def stranger(n: int) -> str:
        name = f"s{n}"
        s = sim.add_node(name, 20 + n)
        sim.add_socket(name, 1, (f"203.0.113.{n}", 9993))
        s.set_networks([NetworkConfig("8056c2e21c0000ee", "theirs", (
            Member(identity(1).public(), (ipaddress.ip_interface("10.9.0.1/24"),),
                   (("198.51.100.1", 9993),)),
            Member(identity(20 + n).public(), (ipaddress.ip_interface(f"10.9.0.{10 + n}/24"),),
                   ()),
        ))], sim.now)  # fmt: skip
        return s.identity.address

    first, second = stranger(1), stranger(2)
    sim.run(1)
    assert {first, second} <= set(a.peers)
    for name in ("s1", "s2"):
        sim.remove_socket(name, 1)  # they go away without a word
    sim.run(15)
    third = stranger(3)
    sim.run(1)
    assert third in a.peers, "the newcomer is let in"
    assert first not in a.peers and a.evicted_transient_peers == 1
    assert a.drops["too_many_peers"] == 0


def test_a_member_removed_from_the_network_loses_its_sessions_at_that_revision():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    config = next(iter(a.networks.values())).config
    without_b = dataclasses.replace(
        config, revision=config.revision + 1,
        members=tuple(m for m in config.members if m.address != b.identity.address),
    )  # fmt: skip
    a.set_networks([without_b], sim.now)
    sim.step()
    assert b.identity.address not in a.peers, "its sessions ended at once"
    assert next(iter(b.peers.values())).current is None, "and it was told"
    sim.run(10)
    # b keeps its old config and knocks again: a stranger now, whose traffic gets nowhere.
    before = len(sim.delivered["a"])
    b.send_packet(NETWORK_ID, ipv4_packet("10.1.0.2", "10.1.0.1"), sim.now)
    sim.run(1)
    assert len(sim.delivered["a"]) == before


def test_traffic_held_for_a_dead_gateway_does_not_turn_every_packet_into_probes():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    sim.dead.add(("192.0.2.2", 9993))
    sim.run(3.5)  # the path is dead
    assert b.identity.address not in a.live_peers(sim.now)
    peer = a.peers[b.identity.address]
    before = peer.probe_counter  # counts every probe sent, lost or not
    for _ in range(100):  # a busy application, 100 packets in 0.5 s
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.005, step=0.005)
    probes = peer.probe_counter - before
    assert probes <= 6, f"{probes} probes for 100 held packets"


def test_with_several_default_gateways_only_the_one_in_use_carries_and_may_send_from_anywhere():
    third = identity(3)
    config = NetworkConfig(NETWORK_ID, "lab", (
        Member(identity(1).public(), (ipaddress.ip_interface("10.1.0.1/24"),), ()),
        Member(identity(2).public(), (ipaddress.ip_interface("10.1.0.2/24"),), ()),
        Member(third.public(), (ipaddress.ip_interface("10.1.0.3/24"),), ()),
    ), routes=(
        Route(ipaddress.ip_network("10.1.0.0/24")),
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.3"), 10),
        Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.2")),
    ))  # fmt: skip
    network = PrefixTable(config, identity(1).address)
    internet = ipaddress.ip_address("203.0.113.9").packed
    assert network.gateway_for(internet) == identity(2).address, "the preferred one (metric 0)"
    assert network.source_owner(internet) == identity(2).address
    network.use_gateway(4, third.address)
    assert network.gateway_for(internet) == third.address
    assert network.source_owner(internet) == third.address, "the other may no longer send"
    assert network.source_owner(ipaddress.ip_address("10.1.0.77").packed) is None
    network.use_gateway(4, identity(9).address)  # not one of its gateways: ignored
    assert network.gateway_for(internet) == third.address


def test_the_gateway_in_use_survives_a_rebuilt_table_while_it_is_still_a_gateway():
    """Which gateway a default goes through has one home (the registry's, shared with each
    table built for the network): a new config keeps it, unless it is no longer a gateway."""
    routes = [Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address(f"10.1.0.{n}"), n)
              for n in (2, 3)]  # fmt: skip
    members = tuple(Member(identity(n).public(), (ipaddress.ip_interface(f"10.1.0.{n}/24"),), ())
                    for n in (1, 2, 3))  # fmt: skip
    config = NetworkConfig(NETWORK_ID, "lab", members, routes=tuple(routes))
    internet = ipaddress.ip_address("203.0.113.9").packed
    in_use: dict[int, str] = {}
    PrefixTable(config, identity(1).address, in_use).use_gateway(4, identity(3).address)
    rebuilt = PrefixTable(config, identity(1).address, in_use)
    assert rebuilt.gateway_for(internet) == identity(3).address
    fewer = NetworkConfig(NETWORK_ID, "lab", members, routes=(routes[0],))
    assert PrefixTable(fewer, identity(1).address, in_use).gateway_for(internet) == \
        identity(2).address, "a gateway no longer in the config is not used"
    assert in_use == {4: identity(2).address}


def test_a_peer_that_lost_our_session_is_reached_again_with_a_new_handshake():
    """b comes back without its sessions and without a reason to call a (a itself is not in
    b's networks: the surviving twin of two controllers, or a restarted root): a's session
    reaches nobody, its paths fall silent, and a new handshake finds b within seconds
    instead of when the session expires (180 s)."""
    sim = two_nodes()
    a = sim.nodes["a"]
    packet = ipv4_packet("10.1.0.1", "10.1.0.2")
    for _ in range(10):
        a.send_packet(NETWORK_ID, packet, sim.now)
        sim.run(0.1)
    del sim.nodes["b"]
    reborn = sim.add_node("b", 2)  # same identity, no sessions, no networks
    sim.sockets = {k: v for k, v in sim.sockets.items() if k[0] != "b"}
    sim.endpoints = {k: v for k, v in sim.endpoints.items() if v[0] != "b"}
    sim.add_socket("b", 1, ("192.0.2.2", 9993))
    for _ in range(50):  # 5 s
        a.send_packet(NETWORK_ID, packet, sim.now)
        sim.run(0.1)
    assert reborn.peers.get(identity(1).address) is not None, "a reached the new b"
    assert reborn.peers[identity(1).address].current is not None
    assert a.peers[identity(2).address].preferred is not None


def _network_with_absent_members(count: int) -> NetworkConfig:
    """a and b, and ``count`` members that never answer, each with an endpoint to try."""
    absent = [Member(Identity(f"aa{n:08x}", n.to_bytes(2, "big") + b"\x09" * 30,
                              n.to_bytes(2, "big") + b"\x09" * 30),  # never checked here
                     (ipaddress.ip_interface(f"10.1.{1 + n // 250}.{1 + n % 250}/16"),),
                     ((f"203.0.113.{n % 250}", 9993 + n // 250),))
              for n in range(count)]  # fmt: skip
    return NetworkConfig(NETWORK_ID, "test", (
        Member(identity(1).public(), (ipaddress.ip_interface("10.1.0.1/16"),), ()),
        Member(identity(2).public(), (ipaddress.ip_interface("10.1.0.2/16"),),
               (("192.0.2.2", 9993),)),
        *absent,
    ))  # fmt: skip


def _initiations_to_absent_members(sim) -> int:
    return sum(1 for name, destination, data in sim.wire_log
               if name == "a" and data[0] == wire.TYPE_HANDSHAKE_INIT
               and destination[0].startswith("203.0.113."))  # fmt: skip


def test_in_a_big_network_members_are_reached_on_demand_not_all_at_once():
    """Beyond EAGER_NETWORK_MEMBERS, a member reaches another when traffic goes to it (or it
    routes for the network), not every member at once, retried every second: with 10,000
    members that was 10,000 initiations a second, through the root for the members without
    an endpoint, starving the member's event loop and loading the root."""
    for count, eager in ((10, True), (EAGER_NETWORK_MEMBERS + 10, False)):
        sim = Sim()
        a, b = sim.add_node("a", 1), sim.add_node("b", 2)
        sim.add_socket("a", 1, ("198.51.100.1", 9993))
        sim.add_socket("b", 1, ("192.0.2.2", 9993))
        network = _network_with_absent_members(count)
        a.set_networks([network], sim.now)
        b.set_networks([network], sim.now)
        sim.run(5)
        tried = _initiations_to_absent_members(sim)
        if eager:  # a small network: everyone is reached at once, and tried again
            assert tried >= 2 * count
            continue
        assert tried == 0, "nobody is tried without a reason"
        assert a.peers[identity(2).address].current is None
        sim.wire_log.clear()
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
        sim.run(0.1)
        assert [p for _, p, _ in sim.delivered["b"]] == [ipv4_packet("10.1.0.1", "10.1.0.2")]
        # One absent member sent to: tried while the traffic waits, then given up on (its
        # queue dropped, counted), not tried every second for ever.
        a.send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.1.1"), sim.now)
        sim.run(60)
        tried = _initiations_to_absent_members(sim)
        sim.run(60)
        assert 1 <= tried == _initiations_to_absent_members(sim)


def test_whoami_is_answered_to_members_only_with_where_we_were_seen():
    """A leak test asks its gateway where it sees us and where our traffic leaves: a member of
    a shared network is told; a stranger that has a session (it knew our identity) is not."""
    sim = two_nodes()
    a, b = sim.nodes["a"], sim.nodes["b"]
    b.set_own_addresses(["192.0.2.2"], sim.now)
    stranger = sim.add_node("c", 3)
    sim.add_socket("c", 1, ("198.51.100.3", 9993))
    stranger.set_networks([NetworkConfig("8056c2e21c000002", "theirs", (
        Member(identity(3).public(), (ipaddress.ip_interface("10.2.0.3/24"),), ()),
        Member(identity(2).public(), (ipaddress.ip_interface("10.2.0.2/24"),),
               (("192.0.2.2", 9993),)),
    ))], sim.now)  # fmt: skip
    sim.run(0.5)
    assert stranger.peers[identity(2).address].current is not None, "a session with b"
    for asker, query_id in ((a, 1), (stranger, 2)):
        assert asker.ask_address(identity(2).address, query_id, sim.now)
    sim.run(0.2)
    answers = {core: [e.message for e in _drain(core) if isinstance(e.message, AddressAnswer)]
               for core in (a, stranger)}  # fmt: skip
    assert answers[a] == [AddressAnswer(1, "198.51.100.1/9993", ("192.0.2.2",), False)]
    assert answers[stranger] == []
    assert b.packet_drops["address_query_refused"] == 1
    # An exit node says whether it forwards for the asker: for a network they share only.
    for exit_networks, query_id, forwards in ((["8056c2e21c000002"], 3, False),
                                              (list(b.networks), 4, True)):  # fmt: skip
        b.set_exit_networks(exit_networks)
        assert a.ask_address(identity(2).address, query_id, sim.now)
        sim.run(0.2)
        [answer] = [e.message for e in _drain(a) if isinstance(e.message, AddressAnswer)]
        assert (answer.query_id, answer.forwards) == (query_id, forwards)


def _drain(core) -> list:
    events = []
    while (event := core.next_event()) is not None:
        if hasattr(event, "message"):
            events.append(event)
    return events
