"""What a change monitor tells the binder: "something changed", with the few facts a re-read
of the interface list cannot recover."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeHint:
    # Interfaces the OS reported deleted: their sockets are replaced even if an interface with
    # the same index, name and address is already back by the time we look.
    deleted_indexes: frozenset[int] = frozenset()
    interfaces: bool = True  # links or addresses changed: re-read and reconcile
    routes: bool = False  # others' routing changed: paths may have to be re-probed
    # A route or rule of ours was deleted (by us or behind our back): routing puts back what
    # its plan still wants. Nothing else follows from it.
    ours_removed: bool = False


class ReadableMonitor:
    """Any message on an OS notification socket means "re-read": drain it and report once.
    Used where messages need no parsing (the macOS routing socket)."""

    MAX_READS_PER_WAKEUP = 256

    def __init__(self, sock: socket.socket, on_change: Callable[[ChangeHint], None]) -> None:
        self._sock = sock
        self._on_change = on_change
        sock.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(self.MAX_READS_PER_WAKEUP):
            try:
                self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                continue
        self._on_change(ChangeHint(interfaces=True, routes=True, ours_removed=True))

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
