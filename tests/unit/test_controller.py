from __future__ import annotations

import pytest

from oneservice.controller import controller as controller_module
from oneservice.controller.controller import Controller, ControllerError
from oneservice.controller.store import SQLiteStore, StoreError
from oneservice.identity import Identity
from oneservice.network.config import NetworkConfigError
from oneservice.network.signed import verify_config
from tests.unit.corenet import identity

CONTROLLER = identity(10)
MEMBER = identity(11)


@pytest.fixture
def controller(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    yield Controller(CONTROLLER, store)
    store.close()


def lab(controller) -> str:
    network = controller.create_network(changes={
        "name": "lab", "routes": [{"target": "10.147.17.0/24"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
    })  # fmt: skip
    return network["id"]


def test_private_network_denies_until_authorized_then_signs_a_config(controller):
    nwid = lab(controller)
    assert nwid.startswith(CONTROLLER.address)
    denied = controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 100.0)
    assert denied == {"t": "nc", "n": nwid, "err": "ACCESS_DENIED"}
    seen = controller.member(nwid, MEMBER.address)  # visible to the admin, with its last visit
    assert seen["authorized"] is False and seen["lastSeen"] == 100_000
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    message = controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 101.0)
    config = verify_config(message, CONTROLLER.public(), nwid)
    [member] = config.members
    assert member.address == MEMBER.address
    assert [str(a) for a in member.addresses] == ["10.147.17.10/24"]
    assert member.endpoints == (("192.0.2.2", 9993),)
    assert config.revision >= 2


def test_configs_must_be_signed_by_this_networks_controller(controller):
    nwid = lab(controller)
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    message = controller.handle_request(nwid, MEMBER.public(), [], 100.0)
    impostor = Identity.generate()
    with pytest.raises(NetworkConfigError, match="is not the controller"):
        verify_config(message, impostor.public(), nwid)
    tampered = {**message, "c": message["c"].replace(b"lab", b"bal")}
    with pytest.raises(NetworkConfigError, match="signature does not verify"):
        verify_config(tampered, CONTROLLER.public(), nwid)


def test_unknown_network_and_foreign_network(controller):
    assert controller.handle_request(CONTROLLER.address + "abcdef", MEMBER.public(), [], 1.0)[
        "err"] == "NOT_FOUND"  # fmt: skip
    with pytest.raises(ControllerError, match="belongs to controller"):
        controller.create_network("0123456789abcdef")


def test_unknown_joiners_cannot_grow_the_database_without_bound(controller, monkeypatch):
    monkeypatch.setattr(controller_module, "MAX_UNAUTHORIZED_MEMBERS", 3)
    nwid = lab(controller)
    for n in range(6):
        controller.handle_request(nwid, identity(20 + n).public(), [], 1.0)
    assert len(controller.members(nwid)) == 3
    assert controller.refused_joiners == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mtu": 10}, "mtu must be"),
        ({"routes": [{"target": "nonsense"}]}, "is not a network"),
        ({"routes": [{"target": "0.0.0.0/0", "via": "::1"}]}, "differ in family"),
        ({"colour": 1}, "unknown network field"),
        ({"ipAssignmentPools": [{"ipRangeStart": "10.0.0.9", "ipRangeEnd": "10.0.0.1"}]},
         "is not a range"),
    ],
)  # fmt: skip
def test_bad_network_settings_are_refused(controller, changes, message):
    nwid = lab(controller)
    with pytest.raises(ControllerError, match=message):
        controller.update_network(nwid, changes)


def test_networks_survive_a_restart(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    nwid = lab(Controller(CONTROLLER, store))
    store.close()
    reopened = Controller(CONTROLLER, SQLiteStore(tmp_path / "controller.db"))
    assert reopened.network(nwid)["name"] == "lab"


def test_corrupt_database_is_an_error_and_left_untouched(tmp_path):
    path = tmp_path / "controller.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="left untouched"):
        SQLiteStore(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


@pytest.mark.parametrize("routes, reason", [
    ([{"target": "127.0.0.0/8"}], "inside 127.0.0.0/8"),
    ([{"target": "10.147.17.0/24"}, {"target": "224.0.0.0/4", "via": "10.147.17.1"}],
     "inside 224.0.0.0/4"),
    ([{"target": "10.147.17.0/24"}, {"target": "0.0.0.0/0", "via": "172.16.0.1"}],
     "outside the network's subnets"),
])  # fmt: skip
def test_routes_no_member_would_take_are_refused_at_the_api(controller, routes, reason):
    nwid = lab(controller)
    with pytest.raises(ControllerError, match=reason):
        controller.update_network(nwid, {"routes": routes})
    assert controller.network(nwid)["routes"] == [{"target": "10.147.17.0/24"}], "unchanged"
