"""Runs the real Binder inside a test namespace and talks JSON lines on stdin/stdout.

Requests: {"id": n, "cmd": "state"} and {"id": n, "cmd": "send", "socket": id, "host": h,
"port": p, "data": text}. Replies carry the same id. Unrequested lines report binder events
({"event": ...}) and received datagrams ({"datagram": text, "socket": id, "from": [h, p]}).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time

from oneservice.binder import platform_backend
from oneservice.binder.binder import (
    AddressChanged,
    Binder,
    InterfaceDown,
    InterfaceUp,
    LocalSocket,
)
from oneservice.binder.interfaces import BindPolicy
from oneservice.binder.sockets import BindError
from oneservice.monitor import open_change_monitor
from oneservice.node.wire import split_coalesced


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def describe(event) -> dict:
    if isinstance(event, InterfaceUp):
        return {"event": "up", "socket": event.socket.id, "interface": event.socket.interface}
    if isinstance(event, InterfaceDown):
        return {"event": "down", "socket": event.socket.id, "reason": event.reason}
    if isinstance(event, AddressChanged):
        return {"event": "address", "socket": event.socket.id, "new": list(event.new)}
    return {"event": repr(event)}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--blacklist", action="append", default=[])
    parser.add_argument("--allowlist", action="append", default=[])
    parser.add_argument("--virtual-subnet", action="append", default=[])
    args = parser.parse_args()

    def on_datagrams(read: bytes, size: int, local: LocalSocket, address: tuple) -> None:
        for data in split_coalesced(read, size):
            emit({"datagram": data.decode(errors="replace"), "socket": local.id,
                  "from": [address[0], address[1]]})  # fmt: skip

    binder = Binder(
        port=args.port,
        policy=BindPolicy.from_settings(
            extra_prefixes=args.blacklist,
            allowlist=args.allowlist,
            virtual_subnets=[ipaddress.ip_network(s) for s in args.virtual_subnet],
        ),
        backend=platform_backend(),
        on_datagram=on_datagrams,
    )
    # CLOCK_MONOTONIC is shared by all processes on the machine: benchmarks compare it with
    # the moment they made the change.
    binder.subscribe(lambda event: emit({**describe(event), "t": time.monotonic()}))
    monitor = open_change_monitor()
    monitor.subscribe(binder.on_changes)
    try:
        await binder.start()
    except BindError as exc:
        emit({"error": str(exc)})
        monitor.close()
        return 1
    emit({"ready": True})
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            request = json.loads(line)
            if request["cmd"] == "state":
                emit({"id": request["id"], "state": binder.state()})
            elif request["cmd"] == "send":
                sent = binder.send(
                    request["socket"], request["data"].encode(), (request["host"], request["port"])
                )
                emit({"id": request["id"], "sent": sent})
    finally:
        monitor.close()
        await binder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
