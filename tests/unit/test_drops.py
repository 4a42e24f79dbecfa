"""One registry of drop reasons (oneservice/node/drops.py): every reason the code counts is in
it, under the right counter, and docs/PROTOCOL.md lists exactly its names."""

from __future__ import annotations

import re
from pathlib import Path

from oneservice.node.drops import DATAGRAM_DROPS, PACKET_DROPS
from tests.unit.corenet import two_nodes

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "oneservice" / "node"


def counted_in_code() -> dict[str, set[str]]:
    """Reason strings by the counter they go to, as the code of node/ writes them."""
    found: dict[str, set[str]] = {"datagram": set(), "packet": set()}
    for path in NODE.glob("*.py"):
        text = path.read_text()
        found["datagram"] |= set(re.findall(r'self(?:\.node)?\.drops\["([a-z_0-9]+)"\]', text))
        found["packet"] |= set(re.findall(r'packet_drops\["([a-z_0-9]+)"\]', text))
        # admission.py, handshakes.py and chunks.py count into the counter they were given
        given = set(re.findall(r'_drops\["([a-z_0-9]+)"\]', text))
        given |= set(re.findall(r'reason = "([a-z_0-9]+)"', text))
        if path.name in ("admission.py", "handshakes.py"):
            found["datagram"] |= given
        elif path.name == "chunks.py":
            found["packet"] |= given
    return found


def test_every_reason_counted_is_registered_under_its_counter():
    found = counted_in_code()
    assert found["datagram"] - set(DATAGRAM_DROPS) == set()
    assert found["packet"] - set(PACKET_DROPS) == set()
    assert set(DATAGRAM_DROPS) - found["datagram"] == set(), "registered, never counted"
    assert set(PACKET_DROPS) - found["packet"] == set(), "registered, never counted"
    assert not set(DATAGRAM_DROPS) & set(PACKET_DROPS)


def test_the_protocol_document_lists_exactly_the_registered_reasons():
    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    section = text.split("\n## Drops\n", 1)[1].split("\n## ", 1)[0]
    datagrams, packets = section.split("IP packets refused", 1)
    listed = re.compile(r"^\| `([a-z_0-9]+)` \|", re.M)
    assert listed.findall(datagrams) == list(DATAGRAM_DROPS)
    assert listed.findall(packets) == list(PACKET_DROPS)


def test_what_a_core_counts_at_run_time_is_registered():
    sim = two_nodes()
    a = sim.nodes["a"]
    sim.run(1)
    for garbage in (b"", b"\x01", b"\x09\x01\x00\x00", b"\x01\x63\x00\x00", bytes(200)):
        a.receive_datagram(garbage, 1, ("192.0.2.2", 9993), sim.now)
    a.send_packet("ffffffffffffffff", b"\x45" + bytes(19), sim.now)
    assert a.drops and a.packet_drops
    assert set(a.drops) <= set(DATAGRAM_DROPS)
    assert set(a.packet_drops) <= set(PACKET_DROPS)
