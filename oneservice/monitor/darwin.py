"""macOS: every interface, address and route change is a message on the routing socket."""

from __future__ import annotations

import socket

from .monitor import DrainMonitor

AF_ROUTE = 17


def open_monitor() -> DrainMonitor:
    return DrainMonitor(socket.socket(AF_ROUTE, socket.SOCK_RAW, 0))
