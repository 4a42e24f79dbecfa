#!/usr/bin/env python3
"""Many peers in one process, for the memory benchmark: one NodeCore and one UDP socket per
peer, all on one address. Reads a JSON file {"address": ip, "base_port": n, "secrets": [...],
"network": {...}}; runs until killed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from oneservice.identity import Identity
from oneservice.network.config import parse_network
from oneservice.node.core import NodeCore


class Peer(asyncio.DatagramProtocol):
    def __init__(self, core: NodeCore, loop: asyncio.AbstractEventLoop) -> None:
        self.core, self.loop = core, loop
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, address) -> None:
        self.core.receive_datagram(data, 1, address, self.loop.time())
        self.flush()

    def flush(self) -> None:
        # As the service does: handshakes after transport (the farm's peers are all members,
        # so no identity check is ever asked for).
        self.core.process_handshakes(self.loop.time())
        for _, endpoint, run, _ in self.core.datagrams_to_send():
            assert self.transport is not None
            for datagram in run:
                self.transport.sendto(datagram, endpoint)
        self.core.packets_for_tap()
        while self.core.next_event() is not None:
            pass


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    network = parse_network(spec["network"], "farm network")
    # The node under test is the first member. Each peer of the farm sees the network as that
    # node and itself: the peers are the node's, not each other's (a full mesh of 100 would
    # keep the farm itself busy with 10,000 handshakes a second until it settles).
    node, *farm_members = network.members
    loop = asyncio.get_running_loop()
    peers = []
    for n, secret in enumerate(spec["secrets"]):
        core = NodeCore(Identity.parse(secret), now=loop.time(), wall_time=time.time())
        core.uplinks.opened(1, socket.AF_INET)
        core.socket_up(1, loop.time())
        own = next(m for m in farm_members if m.address == core.identity.address)
        core.set_networks([dataclasses.replace(network, members=(node, own))], loop.time())
        _, peer = await loop.create_datagram_endpoint(
            lambda core=core: Peer(core, loop), local_addr=(spec["address"], spec["base_port"] + n)
        )
        peers.append(peer)
    print("farm ready", flush=True)
    while True:
        await asyncio.sleep(0.1)
        for peer in peers:
            peer.core.handle_timer(loop.time())
            peer.flush()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
