from __future__ import annotations

import json

import pytest

from oneservice.identity import Identity
from oneservice.network.config import NetworkConfigError, load_network_files, parse_network

A, B = Identity.generate(), Identity.generate()


def doc(**overrides) -> dict:
    base = {
        "id": "8056c2e21c000001",
        "name": "lab",
        "members": [
            {"identity": A.public_text(), "addresses": ["10.1.0.1/24"],
             "endpoints": ["192.0.2.2/9993"]},
            {"identity": B.public_text(), "addresses": ["10.1.0.2/24", "2001:db8:1::2/64"],
             "endpoints": ["2001:db8::2/9993"]},
        ],
    }  # fmt: skip
    base.update(overrides)
    return base


def test_valid_network():
    network = parse_network(doc(), "f")
    assert network.member(B.address).endpoints == (("2001:db8::2", 9993),)
    assert [str(s) for s in network.subnets()] == ["10.1.0.0/24", "2001:db8:1::/64"]
    assert network.mtu == 1420


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": "xyz"}, "id must be 16 lowercase hex digits"),
        ({"mtu": 100}, "mtu must be 1280-9000"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"members": {}}, "members must be a list"),
        ({"members": [{"identity": "nonsense"}]}, r"members\[0\]: identity:"),
        ({"members": [{"identity": A.public_text(), "addresses": ["10.1.0.1"]}]},
         "needs a prefix length"),
        ({"members": [{"identity": A.public_text(), "endpoints": ["192.0.2.2:9993"]}]},
         "endpoint must be"),
        ({"members": [{"identity": A.public_text(), "endpoints": ["192.0.2.2/0"]}]},
         "port must be 1-65535"),
        ({"members": [{"identity": A.public_text()}, {"identity": A.public_text()}]},
         "listed twice"),
        ({"members": [{"identity": A.public_text(), "addresses": ["10.1.0.1/24"]},
                      {"identity": B.public_text(), "addresses": ["10.1.0.1/24"]}]},
         "already assigned"),
    ],
)  # fmt: skip
def test_mistakes_are_named(overrides, message):
    with pytest.raises(NetworkConfigError, match=message):
        parse_network(doc(**overrides), "f")


def test_a_misnamed_or_broken_network_file_takes_down_that_network_only(tmp_path):
    directory = tmp_path / "networks.d"
    directory.mkdir()
    (directory / "wrong.json").write_text(json.dumps(doc()))
    (directory / "8056c2e21c000002.json").write_text("{broken")
    (directory / "8056c2e21c000001.json").write_text(json.dumps(doc()))
    networks, errors = load_network_files(tmp_path)
    assert [n.id for n in networks] == ["8056c2e21c000001"]
    assert "file name must be the network id" in errors["wrong"]
    assert "not valid JSON at line 1" in errors["8056c2e21c000002"]


def test_the_default_mtu_leaves_room_for_the_wires_overhead():
    from oneservice import mtu
    from oneservice.node import wire

    assert wire.DATA_OVERHEAD == mtu.TUNNEL_OVERHEAD
    assert mtu.DEFAULT_TUNNEL_MTU + wire.DATA_OVERHEAD + 40 + 8 == 1500
