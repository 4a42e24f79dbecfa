"""Per-packet costs of the data path, in-process: no sockets, no TUN, one core.

Two NodeCores with a session between them; TCP super-packets of 64 KiB (as a TUN with
offloads hands them out) go through what the service does with them:

  send     read_frame + NodeCore.send_super_packet + gso_batches, per segment
  receive  NodeCore.receive_coalesced per GRO read (a GSO batch joined) + packets_for_tap
  merge    offload.merge of what arrived, per packet
  seal     Session.seal alone, per 1420-byte packet (the cipher and the header)
  open     Session.decrypt alone, per datagram

    python3 scripts/bench/packet_costs.py [--frames 200] [--rounds 5] [--json]

Each figure is the best of the rounds, in microseconds of process CPU per packet. Run it on
an otherwise idle machine; compare figures from one run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import time

from oneservice.binder.gso import gso_batches
from oneservice.identity import Identity, derive_address
from oneservice.network.config import Member, NetworkConfig
from oneservice.node import wire
from oneservice.node.core import NodeCore
from oneservice.offload import GSO_TCPV4, NEEDS_CSUM, VNET_HDR, SuperPacket, merge, read_frame

NETWORK_ID = "8056c2e21c000001"
A, B = ("10.147.0.1", 9993), ("10.147.0.2", 9993)
SEGMENT = 1380  # TCP payload of a 1420-byte packet (the default MTU)


def connected_pair() -> tuple[NodeCore, NodeCore, float]:
    a_id, b_id = Identity.generate(), Identity.generate()
    now = 1000.0
    a = NodeCore(a_id, now=now, wall_time=1.7e9)
    b = NodeCore(b_id, now=now, wall_time=1.7e9)
    network = NetworkConfig(NETWORK_ID, "bench", (
        Member(a_id.public(), (ipaddress.ip_interface("10.1.0.1/24"),), (A,)),
        Member(b_id.public(), (ipaddress.ip_interface("10.1.0.2/24"),), (B,)),
    ))  # fmt: skip
    for core in (a, b):
        core.uplinks.opened(1, socket.AF_INET)
        core.socket_up(1, now)
        core.set_networks([network], now)
    cores = {A: a, B: b}
    for _ in range(50):
        moved = False
        for here, core in ((A, a), (B, b)):
            core.process_handshakes(now)
            for key in core.identity_requests():
                core.identity_derived(key, derive_address(key[:32], key[32:]), now)
            core.process_handshakes(now)
            for _, destination, run, _ in core.datagrams_to_send():
                cores[destination].receive_datagrams(run, 1, here, now)
                moved = True
            core.packets_for_tap()
        now += 0.01
        for core in (a, b):
            if core.next_timer() <= now:
                core.handle_timer(now)
        if not moved and a.peers[b_id.address].current and b.peers[a_id.address].current:
            break
    if not (a.peers[b_id.address].current and b.peers[a_id.address].current):
        raise SystemExit("no session between the two cores")
    return a, b, now


def super_packet(seq: int) -> bytes:
    """A TUN frame: a 64 KiB IPv4 TCP super-packet whose checksum is partial."""
    payload = os.urandom(SEGMENT * 47)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 77, 5 << 4, 0x10, 500, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6,
                     0, bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2]))  # fmt: skip
    return VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, 40, SEGMENT, 20, 16) + ip + tcp + payload


def best(rounds: int, run, prepare=lambda: None) -> float:
    """Best µs per packet of ``run(prepare())`` (``prepare`` untimed); run returns how many
    packets it handled."""
    figures = []
    for _ in range(rounds):
        prepared = prepare()
        started = time.process_time()
        count = run(prepared)
        figures.append((time.process_time() - started) / count * 1e6)
    return min(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="super-packets per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args()

    a, b, now = connected_pair()
    frames = [super_packet(n * SEGMENT * 47) for n in range(args.frames)]
    sent: list[list[tuple[int, tuple, list]]] = []

    def send(_) -> int:
        count = 0
        batches = []
        for frame in frames:
            read = read_frame(frame)  # as the service does with a read (service._on_tap_packets)
            if isinstance(read, SuperPacket):
                a.send_super_packet(NETWORK_ID, read, now)
                count += read.count
            else:
                a.send_packets(NETWORK_ID, read, now)
                count += len(read)
            batches.extend(gso_batches(a.datagrams_to_send()))
        sent.append(batches)
        return count

    arrived: list[list[tuple[bytes, int]]] = []

    def as_gro_reads() -> list[tuple[bytes, int]]:
        """What the receiver's socket reads: each GSO send joined again by UDP GRO."""
        return [(b"".join(datagrams), len(datagrams[0])) for _, _, datagrams in sent.pop(0)]

    def receive(reads: list[tuple[bytes, int]]) -> int:
        packets: list[tuple[bytes, int]] = []
        for data, size in reads:
            b.receive_coalesced(data, size, 1, A, now)
            for batch in b.packets_for_tap().values():
                packets.extend(batch)
        if len(packets) != len(frames) * 47:
            raise SystemExit(f"{len(frames) * 47 - len(packets)} packets not delivered: "
                             f"{dict(b.drops)} {dict(b.packet_drops)}")
        arrived.append(packets)
        return len(packets)

    def merge_all(_) -> int:
        packets = arrived.pop(0)
        merge(packets)
        return len(packets)

    results = {"send": best(args.rounds, send),
               "receive": best(args.rounds, receive, as_gro_reads),
               "merge": best(args.rounds, merge_all)}  # fmt: skip
    session = a.peers[b.identity.address].current
    payload = os.urandom(1420)
    datagrams: list[bytes] = []

    def seal(_) -> int:
        datagrams[:] = [session.seal(wire.TYPE_DATA, payload) for _ in range(20000)]
        return len(datagrams)

    results["seal"] = best(args.rounds, seal)
    receiving = b.parts.machine.sessions[session.remote_index]  # the session a's datagrams name

    def open_(_) -> int:
        for datagram in datagrams:
            if receiving.decrypt(datagram) is None:
                raise SystemExit("a datagram did not open")
        return len(datagrams)

    results["open"] = best(args.rounds, open_)
    if args.json:
        print(json.dumps({name: round(value, 2) for name, value in results.items()}))
        return
    for name, value in results.items():
        print(f"{name:8} {value:6.2f} µs per packet")


if __name__ == "__main__":
    main()
