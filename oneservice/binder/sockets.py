"""Open one UDP socket pinned to one interface, with every option set in one place."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable
from typing import Protocol

from .interfaces import FAMILY_NAMES

# Large kernel buffers so a burst of tunnel traffic is not dropped while the loop is busy;
# the kernel caps them at net.core.{r,w}mem_max, which is fine (best effort).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class BindError(Exception):
    """A socket could not be opened; ``port_in_use`` marks the case the user must resolve."""

    def __init__(self, message: str, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


class PinFunction(Protocol):
    def __call__(self, sock: socket.socket, family: int, index: int, name: str) -> None: ...


SocketFactory = Callable[[int, int], socket.socket]


class UdpOffloads:
    """UDP segmentation (one send, several datagrams of one size) and receive offload (one
    read, several datagrams). This one has neither: one datagram per send and per read; a
    backend that has them (linux.py) says how."""

    available = False
    gro_ancillary_bytes = 0  # room for the control message that says a GRO read's size

    def enable_gro(self, sock: socket.socket) -> bool:
        return False

    def gso_ancillary(self, segment_size: int) -> list[tuple[int, int, bytes]]:
        raise NotImplementedError("no UDP segmentation offload on this system")

    def gro_size(self, ancillary: list) -> int:
        """The size of each datagram in a GRO read (0: not said, one datagram)."""
        return 0


NO_UDP_OFFLOADS = UdpOffloads()


def open_pinned_udp_socket(
    *,
    family: int,
    port: int,
    index: int,
    name: str,
    bind_host: str,
    pin: PinFunction,
    socket_factory: SocketFactory = socket.socket,
) -> socket.socket:
    """Create, pin and bind a non-blocking UDP socket; raise BindError saying what failed."""
    sock = socket_factory(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            # One socket per family: an IPv6 socket must not also take IPv4 traffic.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Pin before bind: on Linux two sockets on the same port only coexist when each is
        # bound to its own device at bind time.
        pin(sock, family, index, name)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        sock.setblocking(False)
        sock.bind((bind_host, port))
    except OSError as exc:
        sock.close()
        where = f"{name} (index {index}, {FAMILY_NAMES.get(family, family)})"
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                f"UDP port {port} is already in use on {where}: another oneservice or "
                "ZeroTier may be running; stop it or choose another port with --port or "
                "settings.primaryPort in local.conf",
                port_in_use=True,
            ) from exc
        raise BindError(f"cannot open UDP port {port} on {where}: {exc.strerror or exc}") from exc
    return sock
