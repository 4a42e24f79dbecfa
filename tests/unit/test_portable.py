from __future__ import annotations

import socket
import sys
from types import SimpleNamespace

import pytest

from oneservice.binder.portable import interfaces_from_adapters, read_interface_flags


def test_ifaddr_adapters_become_interfaces():
    adapters = [
        SimpleNamespace(name="en0", nice_name="Wi-Fi", index=4, ips=[
            SimpleNamespace(ip="192.0.2.2", network_prefix=24),
            SimpleNamespace(ip=("2001:db8::2", 0, 0), network_prefix=64),
        ]),
        SimpleNamespace(name="weird", nice_name="weird", index=None, ips=[]),
    ]  # fmt: skip
    [en0] = interfaces_from_adapters(
        adapters, read_flags=lambda name: (True, False, False), name_of=lambda a: a.nice_name
    )
    assert (en0.index, en0.name, en0.up, en0.running) == (4, "Wi-Fi", True, False)
    assert [(a.family, a.address, a.prefixlen) for a in en0.addresses] == [
        (socket.AF_INET, "192.0.2.2", 24),
        (socket.AF_INET6, "2001:db8::2", 64),
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses Linux's ioctl number")
def test_interface_flags_by_ioctl():
    linux_siocgifflags = 0x8913  # same struct ifreq layout as macOS for the name and flags
    up, _running, loopback = read_interface_flags("lo", linux_siocgifflags)
    assert loopback
    assert read_interface_flags("nosuchif0", linux_siocgifflags) == (False, False, False)
    assert isinstance(up, bool)
