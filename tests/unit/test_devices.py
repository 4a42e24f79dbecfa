"""The TUN lifecycle (tap/devices.py) with fake devices: made, rebuilt, closed, and a device
that cannot be made takes down its own network only."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from typing import ClassVar

from oneservice.network.config import Member, NetworkConfig
from oneservice.tap import TapError
from oneservice.tap import linux as tap_linux
from oneservice.tap.devices import Devices
from tests.unit.corenet import identity

OURS = identity(1)


class FakeTun:
    made: ClassVar[list[str]] = []
    refused: ClassVar[set[str]] = set()

    def __init__(self, name: str, offload: bool) -> None:
        if name in FakeTun.refused:
            raise TapError(f"cannot create {name}") from OSError(errno.EPERM, "no")
        self.name, self.offload, self.closed = name, offload, False
        FakeTun.made.append(name)

    def configure(self, mtu: int, addresses) -> None:
        self.mtu = mtu

    def start_reading(self, deliver) -> None:
        self.deliver = deliver

    def close(self) -> None:
        self.closed = True


def network(suffix: str, mtu: int = 1420) -> NetworkConfig:
    own = Member(OURS.public(), (ipaddress.ip_interface("10.1.0.1/24"),), ())
    return NetworkConfig(OURS.address + suffix, "n", (own,), mtu=mtu)


def test_devices_follow_the_networks_and_a_failing_one_stays_alone(monkeypatch):
    monkeypatch.setattr(tap_linux, "TunDevice", FakeTun)
    FakeTun.made, FakeTun.refused = [], {"onet" + (OURS.address + "000002")[-10:]}
    devices = Devices(OURS.address, lambda network_id, packets: None)
    one, two = network("000001"), network("000002")

    asyncio.run(devices.apply({one.id: one, two.id: two}, offload=True))
    assert set(devices.taps) == {one.id}
    assert devices.errors == {two.id: errno.EPERM}, "the other network alone is down"

    first = devices.taps[one.id]
    asyncio.run(devices.apply({one.id: network("000001", mtu=1280)}, offload=True))
    assert first.closed and devices.taps[one.id] is not first, "a new MTU rebuilds the device"
    assert devices.errors == {}, "a network that left has no error left"

    asyncio.run(devices.apply({}, offload=True))
    assert devices.taps == {}
