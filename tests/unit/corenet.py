"""An in-memory network for NodeCore tests: nodes with sockets at endpoints, a fake clock,
links that can fail or drop. No sockets, no sleeping."""

from __future__ import annotations

import functools
import ipaddress
import random
import socket
from collections import deque

from oneservice.identity import Identity, derive_address
from oneservice.network.config import Member, NetworkConfig
from oneservice.node import cookies, wire
from oneservice.node.core import NodeCore
from oneservice.node.noise import Initiator

NETWORK_ID = "8056c2e21c000001"


@functools.cache
def identity(n: int) -> Identity:
    return Identity.generate()


def ipv4_packet(source: str, destination: str, body: bytes = b"x" * 20) -> bytes:
    total = 20 + len(body)
    return (bytes([0x45, 0]) + total.to_bytes(2, "big") + bytes(8)
            + ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + body)  # fmt: skip


def initiation(
    initiator: Identity,
    responder_public: bytes,
    index: int = 1,
    wall_time: float = 1.7e9,
    cookie: bytes | None = None,
) -> bytes:
    """A valid handshake initiation on the wire, MACs included (a mac2 only with a cookie)."""
    noise = Initiator(initiator.x25519_private_key(), responder_public, wire.PROLOGUE)
    body = wire.handshake_init(
        index, noise.write_message_1(wire.encode_timestamp(wall_time) + initiator.ed25519_public)
    )
    return cookies.with_macs(body, cookies.mac(cookies.mac1_key(responder_public), body), cookie)


class Sim:
    def __init__(self, loss: float = 0.0, seed: int = 1) -> None:
        self.now = 1000.0
        self.nodes: dict[str, NodeCore] = {}
        self.endpoints: dict[tuple[str, int], tuple[str, int]] = {}  # endpoint -> (node, sid)
        self.sockets: dict[tuple[str, int], tuple[str, int]] = {}  # (node, sid) -> endpoint
        self.dead: set[tuple[str, int]] = set()  # endpoints that neither send nor receive
        self.blocked: set[frozenset] = set()  # endpoint pairs that cannot reach each other
        self.one_way: set[tuple] = set()  # (source, destination) endpoints: that way only lost
        self.loss = loss
        # Also lost: datagrams this says so of, called as drop(sender name, destination, data).
        self.drop = None
        self.random = random.Random(seed)
        self.in_flight: deque = deque()
        self.delivered: dict[str, list[tuple[str, bytes, int]]] = {}  # network, packet, hint
        self.wire_log: list[tuple[str, tuple, bytes]] = []

    def add_node(self, name: str, n: int, relay: bool = False) -> NodeCore:
        core = NodeCore(identity(n), now=self.now, wall_time=1.7e9 + self.now, relay=relay)
        self.nodes[name] = core
        self.delivered[name] = []
        return core

    def add_socket(self, name: str, socket_id: int, endpoint: tuple[str, int]) -> None:
        self.endpoints[endpoint] = (name, socket_id)
        self.sockets[(name, socket_id)] = endpoint
        family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        core = self.nodes[name]
        core.uplinks.opened(socket_id, family)  # as the binder does, then says so
        core.socket_up(socket_id, self.now)

    def rank_uplinks(self, name: str, ranks: dict[int, int]) -> None:
        """As the binder does when default routes or the user's metrics change."""
        core = self.nodes[name]
        for socket_id, rank in ranks.items():
            core.uplinks.rank(socket_id, rank)
        core.uplinks_ranked(self.now)

    def remove_socket(self, name: str, socket_id: int) -> None:
        endpoint = self.sockets.pop((name, socket_id))
        del self.endpoints[endpoint]
        core = self.nodes[name]
        core.uplinks.closed(socket_id)
        core.socket_down(socket_id, self.now)

    def collect(self) -> None:
        for name, core in self.nodes.items():
            # As the service does: initiations after transport, identity checks aside.
            core.process_handshakes(self.now)
            for key in core.identity_requests():
                core.identity_derived(key, derive_address(key[:32], key[32:]), self.now)
            core.process_handshakes(self.now)
            for socket_id, destination, data in (
                (socket_id, destination, data)
                for socket_id, destination, run, _ in core.datagrams_to_send() for data in run
            ):  # fmt: skip
                # A core hands out only numeric addresses: anything else would make the OS
                # resolve a name (a DNS query, blocking the event loop) on every send.
                ipaddress.ip_address(destination[0])
                source = self.sockets.get((name, socket_id))
                if source is None or source in self.dead or destination in self.dead:
                    continue
                if frozenset((source, destination)) in self.blocked:
                    continue
                if (source, destination) in self.one_way:
                    continue
                if self.loss and self.random.random() < self.loss:
                    continue
                if self.drop is not None and self.drop(name, destination, data):
                    continue
                self.wire_log.append((name, destination, data))
                self.in_flight.append((source, destination, data))
            for network_id, packets in core.packets_for_tap().items():
                self.delivered[name].extend((network_id, p, hint) for p, hint in packets)

    def step(self, seconds: float = 0.01) -> None:
        """Deliver everything in flight (with zero latency), then advance the clock."""
        for _ in range(100):
            self.collect()
            if not self.in_flight:
                break
            while self.in_flight:
                source, destination, data = self.in_flight.popleft()
                target = self.endpoints.get(destination)
                if target is None:
                    continue
                name, socket_id = target
                self.nodes[name].receive_datagram(data, socket_id, source, self.now)
        self.now += seconds
        for core in self.nodes.values():
            if core.next_timer() <= self.now:
                core.handle_timer(self.now)
        self.collect()

    def run(self, seconds: float, step: float = 0.01) -> None:
        end = self.now + seconds
        while self.now < end:
            self.step(step)


def two_nodes(loss: float = 0.0, b_endpoints=(("192.0.2.2", 9993),)) -> Sim:
    """a (one socket) and b (one socket per endpoint) in one network."""
    sim = Sim(loss=loss)
    a, b = sim.add_node("a", 1), sim.add_node("b", 2)
    network = NetworkConfig(NETWORK_ID, "test", (
        Member(identity(1).public(), (ipaddress.ip_interface("10.1.0.1/24"),), ()),
        Member(identity(2).public(), (ipaddress.ip_interface("10.1.0.2/24"),), tuple(b_endpoints)),
    ))  # fmt: skip
    sim.add_socket("a", 1, ("198.51.100.1", 9993))
    for index, endpoint in enumerate(b_endpoints, start=1):
        sim.add_socket("b", index, endpoint)
    a.set_networks([network], sim.now)
    b.set_networks([network], sim.now)
    return sim


def connected_after_one_packet() -> Sim:
    """a and b connected, and one data packet sent a -> b (its datagram is in wire_log)."""
    sim = two_nodes()
    sim.run(0.2)
    sim.nodes["a"].send_packet(NETWORK_ID, ipv4_packet("10.1.0.1", "10.1.0.2"), sim.now)
    sim.step()
    return sim
