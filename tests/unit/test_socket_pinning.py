"""Per-OS pinning through a fake socket layer: the exact options, values, byte order, and
that the pin comes before bind (macOS and Windows cannot run here; Linux is also proven in
namespaces)."""

from __future__ import annotations

import errno
import socket
import struct
import sys

import pytest

from oneservice.binder import darwin, linux, windows
from oneservice.binder.sockets import BindError, open_pinned_udp_socket


class FakeSocket:
    def __init__(self, family: int, kind: int, fail_bind_errno: int | None = None) -> None:
        self.family, self.kind = family, kind
        self.calls: list[tuple] = []
        self.closed = False
        self._fail_bind_errno = fail_bind_errno

    def setsockopt(self, level, option, value):
        self.calls.append(("setsockopt", level, option, value))

    def setblocking(self, flag):
        self.calls.append(("setblocking", flag))

    def bind(self, address):
        if self._fail_bind_errno is not None:
            raise OSError(self._fail_bind_errno, "fake bind failure")
        self.calls.append(("bind", address))

    def close(self):
        self.closed = True


def open_with(module, family, index=7, name="en0", address=None, fail_bind_errno=None):
    made: list[FakeSocket] = []

    def factory(fam, kind):
        made.append(FakeSocket(fam, kind, fail_bind_errno))
        return made[-1]

    sock = open_pinned_udp_socket(
        family=family, port=9993, index=index, name=name,
        bind_host=module.bind_host(family, address), pin=module.pin_socket,
        socket_factory=factory,
    )  # fmt: skip
    return sock, made[0]


def pin_calls(fake: FakeSocket) -> list[tuple]:
    return [c for c in fake.calls if c[0] == "setsockopt" and c[1] != socket.SOL_SOCKET]


def test_darwin_ipv4_uses_ip_bound_if_in_host_order_before_bind():
    _, fake = open_with(darwin, socket.AF_INET, index=300)
    assert pin_calls(fake) == [
        ("setsockopt", socket.IPPROTO_IP, 25, (300).to_bytes(4, sys.byteorder))
    ]
    assert fake.calls[-1] == ("bind", ("0.0.0.0", 9993))


def test_darwin_ipv6_uses_ipv6_bound_if_and_v6only():
    _, fake = open_with(darwin, socket.AF_INET6, index=4)
    assert pin_calls(fake) == [
        ("setsockopt", socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1),
        ("setsockopt", socket.IPPROTO_IPV6, 125, (4).to_bytes(4, sys.byteorder)),
    ]
    assert fake.calls[-1] == ("bind", ("::", 9993))


def test_windows_ipv4_index_is_network_byte_order_and_binds_the_address():
    _, fake = open_with(windows, socket.AF_INET, index=300, address="192.0.2.2")
    assert pin_calls(fake) == [("setsockopt", 0, 31, struct.pack(">I", 300))]
    assert struct.pack(">I", 300) == b"\x00\x00\x01\x2c"
    assert fake.calls[-1] == ("bind", ("192.0.2.2", 9993))


def test_windows_ipv6_index_is_host_byte_order():
    _, fake = open_with(windows, socket.AF_INET6, index=300, address="2001:db8::2")
    assert pin_calls(fake)[-1] == ("setsockopt", 41, 31, (300).to_bytes(4, sys.byteorder))
    assert fake.calls[-1] == ("bind", ("2001:db8::2", 9993))


def test_windows_refuses_to_bind_without_an_address():
    with pytest.raises(ValueError):
        windows.bind_host(socket.AF_INET, None)


def test_linux_pins_by_index_before_bind():
    _, fake = open_with(linux, socket.AF_INET, index=5, name="wlan0")
    pins = [c for c in fake.calls if c[:3] == ("setsockopt", socket.SOL_SOCKET, 62)]
    assert pins == [("setsockopt", socket.SOL_SOCKET, 62, 5)]
    assert fake.calls.index(pins[0]) < fake.calls.index(("bind", ("0.0.0.0", 9993)))


def test_linux_falls_back_to_bindtodevice_by_name_on_old_kernels():
    class OldKernelSocket(FakeSocket):
        def setsockopt(self, level, option, value):
            if option == 62:
                raise OSError(errno.ENOPROTOOPT, "Protocol not available")
            super().setsockopt(level, option, value)

    fake = OldKernelSocket(socket.AF_INET, socket.SOCK_DGRAM)
    linux.pin_socket(fake, socket.AF_INET, 5, "wlan0")
    assert fake.calls == [("setsockopt", socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"wlan0\0")]


def test_port_in_use_names_the_port_and_closes_the_socket():
    with pytest.raises(BindError) as caught:
        open_with(linux, socket.AF_INET, fail_bind_errno=errno.EADDRINUSE)
    assert caught.value.port_in_use
    assert "UDP port 9993 is already in use on en0" in str(caught.value)


def test_other_bind_failures_say_what_failed():
    with pytest.raises(BindError) as caught:
        open_with(linux, socket.AF_INET, fail_bind_errno=errno.EADDRNOTAVAIL)
    assert not caught.value.port_in_use
    assert "cannot open UDP port 9993 on en0 (index 7, IPv4)" in str(caught.value)


def test_real_linux_socket_is_pinned_to_its_device():
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    sock = open_pinned_udp_socket(
        family=socket.AF_INET, port=0, index=socket.if_nametoindex("lo"), name="lo",
        bind_host="127.0.0.1", pin=linux.pin_socket,
    )  # fmt: skip
    try:
        device = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
        assert device.rstrip(b"\0") == b"lo"
    finally:
        sock.close()
