"""Port mapping (issue 27, item 5): the wire formats of PCP and NAT-PMP, the SSDP answer a
router gives, the order of protocols against a fake router, and the mapper's keeping of one
mapping per uplink (renewed, given up, deleted). A real router (miniupnpd) is in
tests/integration/test_portmap_netns.py."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import threading

import pytest

from oneservice.portmap import mapper as mapper_module
from oneservice.portmap import protocols, ssdp
from oneservice.portmap.mapper import PortMapper, Uplink, map_port
from oneservice.portmap.protocols import Mapped, PortMapError

NONCE = bytes(range(12))


def pcp_answer(nonce: bytes = NONCE, result: int = 0, port: int = 9993, external: int = 41000,
               address: str = "192.0.3.10", lifetime: int = 3600) -> bytes:  # fmt: skip
    header = struct.pack("!BBxBII12x", 2, 0x81, result, lifetime, 77)
    mapped = ipaddress.IPv6Address(f"::ffff:{address}").packed
    return header + struct.pack("!12sB3xHH16s", nonce, 17, port, external, mapped)


def test_a_pcp_map_request_says_who_asks_for_which_port_and_its_answer_is_checked():
    request = protocols.pcp_map_request("10.0.2.10", 9993, 7200, NONCE, 9993)
    assert len(request) == 60 and request[:2] == b"\x02\x01"
    assert request[8:24] == ipaddress.IPv6Address("::ffff:10.0.2.10").packed
    assert request[24:36] == NONCE and request[36] == 17
    assert struct.unpack_from("!HH", request, 40) == (9993, 9993)
    assert protocols.parse_pcp_map_response(pcp_answer(), NONCE, 9993) == Mapped(
        "192.0.3.10", 41000, 3600)
    with pytest.raises(PortMapError, match="another request"):
        protocols.parse_pcp_map_response(pcp_answer(nonce=b"x" * 12), NONCE, 9993)
    with pytest.raises(PortMapError, match="not authorized"):
        protocols.parse_pcp_map_response(pcp_answer(result=2), NONCE, 9993)
    with pytest.raises(PortMapError, match="not a MAP response"):
        protocols.parse_pcp_map_response(pcp_answer()[:59], NONCE, 9993)
    with pytest.raises(PortMapError, match="no IPv4"):
        protocols.parse_pcp_map_response(pcp_answer(address="0.0.0.0")[:44] + bytes(16),
                                         NONCE, 9993)  # fmt: skip
    with pytest.raises(ValueError):
        protocols.pcp_map_request("10.0.2.10", 9993, 7200, b"short")


def test_nat_pmp_answers_are_read_only_when_they_answer_what_was_asked():
    assert protocols.natpmp_map_request(9993, 7200, 9993) == struct.pack("!BBHHHI", 0, 1, 0,
                                                                         9993, 9993, 7200)
    address = struct.pack("!BBHI4s", 0, 128, 0, 5, bytes([192, 0, 3, 10]))
    assert protocols.parse_natpmp_address(address) == "192.0.3.10"
    mapped = struct.pack("!BBHIHHI", 0, 129, 0, 5, 9993, 41000, 3600)
    assert protocols.parse_natpmp_map(mapped, 9993) == (41000, 3600)
    with pytest.raises(PortMapError, match="another port"):
        protocols.parse_natpmp_map(mapped, 9994)
    with pytest.raises(PortMapError, match="network failure"):
        protocols.parse_natpmp_map(struct.pack("!BBHIHHI", 0, 129, 3, 5, 9993, 0, 0), 9993)
    with pytest.raises(PortMapError, match="not the answer"):
        protocols.parse_natpmp_map(address + bytes(4), 9993)
    with pytest.raises(PortMapError, match="bytes"):
        protocols.parse_natpmp_address(b"\x00\x80")


def test_only_a_description_on_the_gateway_itself_is_followed():
    def answer(location: str) -> bytes:
        return f"HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: {location}\r\n\r\n".encode()

    gateway = "10.0.2.1"
    assert b"HOST: 10.0.2.1:1900" in ssdp.m_search(gateway)
    assert ssdp.description_url(answer("http://10.0.2.1:5000/rootDesc.xml"), gateway) == (
        "http://10.0.2.1:5000/rootDesc.xml")
    for elsewhere in ("http://10.0.2.7:5000/d.xml", "https://10.0.2.1:5000/d.xml",
                      "http://10.0.2.1/d.xml", "http://10.0.2.1:99999/d.xml", "file:///etc"):
        assert ssdp.description_url(answer(elsewhere), gateway) is None, elsewhere
    assert ssdp.description_url(b"NOTIFY * HTTP/1.1\r\n\r\n", gateway) is None
    assert ssdp.description_url(answer("http://10.0.2.1:5000/" + "a" * 3000), gateway) is None


def test_the_protocol_that_worked_is_asked_first_and_every_failure_is_named(monkeypatch):
    asked = []

    def refuse(name):
        def ask(uplink, port, nonce):
            asked.append(name)
            raise PortMapError(f"{name} says no")
        return ask

    def grant(uplink, port, nonce):
        asked.append("upnp")
        return Mapped("192.0.3.10", port, 3600)

    monkeypatch.setattr(mapper_module, "_MAP", {"pcp": refuse("pcp"), "nat-pmp":
                                                refuse("nat-pmp"), "upnp": grant})  # fmt: skip
    uplink = Uplink(1, "eth0", "10.0.2.10", "10.0.2.1")
    assert map_port(uplink, 9993, NONCE) == ("upnp", Mapped("192.0.3.10", 9993, 3600))
    assert asked == ["pcp", "nat-pmp", "upnp"]
    asked.clear()
    map_port(uplink, 9993, NONCE, first="upnp")
    assert asked == ["upnp"]
    monkeypatch.setitem(mapper_module._MAP, "upnp", refuse("upnp"))
    with pytest.raises(PortMapError, match="pcp: pcp says no; nat-pmp: nat-pmp says no; upnp"):
        map_port(uplink, 9993, NONCE)


@pytest.mark.skipif(os.geteuid() != 0, reason="pins a socket to lo (SO_BINDTODEVICE)")
def test_a_router_without_pcp_is_asked_by_nat_pmp():
    """A fake NAT-PMP-only router on loopback: PCP is answered "unsupported version" (as
    RFC 6887 has NAT-PMP routers do), NAT-PMP maps."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                data, source = server.recvfrom(1024)
            except TimeoutError:
                continue
            if data[0] == 2:
                server.sendto(struct.pack("!BBxBII12x", 0, 0x81, 1, 0, 0), source)
            elif data[:2] == b"\x00\x00":
                server.sendto(struct.pack("!BBHI4s", 0, 128, 0, 9, bytes([192, 0, 3, 10])),
                              source)  # fmt: skip
            elif data[:2] == b"\x00\x01":
                internal = struct.unpack_from("!H", data, 4)[0]
                server.sendto(struct.pack("!BBHIHHI", 0, 129, 0, 9, internal, 41000, 3600),
                              source)  # fmt: skip

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(protocols, "SERVER_PORT", port)
            uplink = Uplink(1, "lo", "127.0.0.1", "127.0.0.1")
            assert map_port(uplink, 9993, NONCE, first="pcp")[0] == "nat-pmp"
            assert map_port(uplink, 9993, NONCE)[1] == Mapped("192.0.3.10", 41000, 3600)
    finally:
        stop.set()
        thread.join()
        server.close()


class FakeRouter:
    def __init__(self) -> None:
        self.grant = True
        self.maps: list[tuple[int, str]] = []
        self.unmaps: list[int] = []

    def map_port(self, uplink, port, nonce, first=""):
        self.maps.append((uplink.socket_id, first))
        if not self.grant:
            raise PortMapError("pcp: network failure")
        return "pcp", Mapped("192.0.3.10", 40000 + uplink.socket_id, 600)

    def unmap_port(self, uplink, port, nonce, protocol, mapped):
        self.unmaps.append(uplink.socket_id)


def test_each_uplink_keeps_one_mapping_renewed_at_half_its_life_and_deleted_when_it_goes(
        monkeypatch):  # fmt: skip
    router = FakeRouter()
    monkeypatch.setattr(mapper_module, "map_port", router.map_port)
    monkeypatch.setattr(mapper_module, "unmap_port", router.unmap_port)
    told: list[tuple[int, str | None]] = []
    clock = [100.0]

    async def scenario():
        mapper = PortMapper(lambda: 9993, lambda s, e: told.append((s, e)), lambda: clock[0])
        wifi, cell = Uplink(1, "wifi", "10.0.1.10", "10.0.1.1"), Uplink(2, "cell",
                                                                          "10.0.2.10", "10.0.2.1")
        mapper.update([wifi, cell])
        await asyncio.sleep(0.05)
        assert sorted(told) == [(1, "192.0.3.10/40001"), (2, "192.0.3.10/40002")]
        assert mapper.deadline() == 100.0 + 300, "renewed at half its lifetime"
        assert [e["protocol"] for e in mapper.status()] == ["pcp", "pcp"]
        clock[0] = 400.0
        mapper.check(clock[0])
        await asyncio.sleep(0.05)
        assert len(told) == 2, "a renewal to the same port tells nobody"
        assert (1, "pcp") in router.maps, "renewed with the protocol that worked"
        router.grant = False
        clock[0] = 700.0
        mapper.check(clock[0])
        await asyncio.sleep(0.05)
        assert sorted(told[2:]) == [(1, None), (2, None)], "a failed renewal is withdrawn"
        assert mapper.deadline() == 700.0 + mapper_module.RETRY_S[0]
        assert mapper.status()[0]["error"] == "pcp: network failure"
        router.grant = True
        clock[0] = 800.0
        mapper.check(clock[0])
        await asyncio.sleep(0.05)
        mapper.update([wifi])  # the cellular uplink went away
        await asyncio.sleep(0.05)
        assert told[-1] == (2, None) and router.unmaps == [2]
        await mapper.stop()
        assert router.unmaps == [2, 1], "stopping deletes what is left"
        told.clear()
        mapper.set_enabled(False, [wifi, cell])
        await asyncio.sleep(0.05)
        assert told == [] and mapper.deadline() == float("inf"), "off: nothing is asked"

    asyncio.run(scenario())


def test_an_external_address_no_peer_could_send_to_is_no_mapping():
    answer = pcp_answer(address="127.0.0.1")
    with pytest.raises(PortMapError, match="external address"):
        protocols.parse_pcp_map_response(answer, NONCE, 9993)
    for bad in ([0, 0, 0, 0], [224, 0, 0, 1], [169, 254, 1, 1]):
        with pytest.raises(PortMapError, match="external address"):
            protocols.parse_natpmp_address(struct.pack("!BBHI4s", 0, 128, 0, 5, bytes(bad)))


def test_an_unexpected_error_in_an_exchange_is_a_failure_retried_later(monkeypatch):
    def broken(uplink, port, nonce, first=""):
        raise ValueError("a router's answer nobody foresaw")

    monkeypatch.setattr(mapper_module, "map_port", broken)
    clock = [100.0]

    async def scenario():
        mapper = PortMapper(lambda: 9993, lambda s, e: None, lambda: clock[0])
        mapper.update([Uplink(1, "wifi", "10.0.1.10", "10.0.1.1")])
        await asyncio.sleep(0.05)
        assert mapper.deadline() == 100.0 + mapper_module.RETRY_S[0]
        assert "nobody foresaw" in mapper.status()[0]["error"]

    asyncio.run(scenario())


def test_a_mapping_being_made_when_the_node_stops_is_deleted_not_left_on_the_router(
        monkeypatch):  # fmt: skip
    router = FakeRouter()
    slow = threading.Event()

    def slow_map(uplink, port, nonce, first=""):
        slow.wait(5)  # the router answers while the node is stopping
        return router.map_port(uplink, port, nonce, first)

    monkeypatch.setattr(mapper_module, "map_port", slow_map)
    monkeypatch.setattr(mapper_module, "unmap_port", router.unmap_port)

    async def scenario():
        mapper = PortMapper(lambda: 9993, lambda s, e: None, lambda: 100.0)
        mapper.update([Uplink(1, "wifi", "10.0.1.10", "10.0.1.1")])
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_later(0.2, slow.set)
        await mapper.stop()

    asyncio.run(scenario())
    assert router.maps == [(1, "")] and router.unmaps == [1]

