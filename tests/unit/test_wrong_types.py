"""Every writable field of the controller's objects and of a network's flags, given every
wrong JSON type: a clear refusal (a 400 at the API), never another exception, and every
member's config still builds afterwards."""

from __future__ import annotations

import pytest

from oneservice.controller.controller import Controller, ControllerError
from oneservice.controller.store import SQLiteStore
from oneservice.routing.flags import FlagsError, NetworkFlags
from tests.unit.corenet import identity

CONTROLLER, MEMBER = identity(10), identity(11)
WRONG = [None, True, 0, -1, 2**70, 1.5, "", "x" * 300, "not-an-address", [], ["x"], [1], {},
         {"x": 1}, [{}], [None]]  # fmt: skip

NETWORK_FIELDS = {
    "name": "lab", "private": True, "mtu": 1400, "routes": [{"target": "10.147.17.0/24"}],
    "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
    "dns": {"domain": "lab.example", "servers": ["10.147.17.1"]},
    "v4AssignMode": {"zt": True}, "v6AssignMode": {"zt": True},
}  # fmt: skip
NESTED_NETWORK = [("dns", "servers"), ("dns", "domain"), ("v4AssignMode", "zt")]
MEMBER_FIELDS = {"authorized": True, "ipAssignments": ["10.147.17.30"], "name": "laptop",
                 "noAutoAssignIps": False}  # fmt: skip
FLAGS = ["allowManaged", "allowGlobal", "allowDefault", "allowDNS", "allowLanAccess"]


@pytest.fixture
def controller(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    controller = Controller(CONTROLLER, store)
    yield controller
    store.close()


BOOLEANS = {"private", "authorized", "noAutoAssignIps", "zt"}
# Objects whose fields all have defaults, and lists that may be empty.
EMPTY_IS_FINE = {"dns", "v4AssignMode", "v6AssignMode", "routes", "ipAssignmentPools",
                 "ipAssignments", "servers"}  # fmt: skip


def fine_for(field: str, value) -> bool:
    """Values of the wrong list that are in fact right for the field."""
    if field in BOOLEANS:  # read as ZeroTier's controller reads them (lenient_bool)
        return isinstance(value, bool | int | float | str)
    if field in ("name", "domain"):
        return isinstance(value, str) and len(value) <= 128
    return field in EMPTY_IS_FINE and value in ([], {}) and type(value) is type(
        {"dns": {}, "v4AssignMode": {}, "v6AssignMode": {}}.get(field, [])
    )


def still_builds(controller, nwid: str) -> None:
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 1.0)
    controller.config_document(nwid)  # raises if any stored value would break a config


def refuses_every_wrong_type(controller, nwid: str, field: str, change) -> None:
    """``change(value)`` writes ``value`` to ``field``: every wrong one is a 400 with a reason,
    and what is stored still builds every member's config."""
    for value in WRONG:
        if fine_for(field, value):
            continue
        with pytest.raises(ControllerError) as refused:
            change(value)
        assert refused.value.status == 400 and str(refused.value)
    still_builds(controller, nwid)


@pytest.mark.parametrize("field", sorted(NETWORK_FIELDS))
def test_every_network_field_refuses_every_wrong_type(controller, field):
    nwid = controller.create_network(changes=NETWORK_FIELDS)["id"]
    refuses_every_wrong_type(controller, nwid, field,
                             lambda value: controller.update_network(nwid, {field: value}))


@pytest.mark.parametrize(("outer", "inner"), NESTED_NETWORK)
def test_nested_network_fields_refuse_every_wrong_type(controller, outer, inner):
    nwid = controller.create_network(changes=NETWORK_FIELDS)["id"]
    refuses_every_wrong_type(controller, nwid, inner, lambda value: controller.update_network(
        nwid, {outer: {**NETWORK_FIELDS[outer], inner: value}}))  # fmt: skip


@pytest.mark.parametrize("field", sorted(MEMBER_FIELDS))
def test_every_member_field_refuses_every_wrong_type(controller, field):
    nwid = controller.create_network(changes=NETWORK_FIELDS)["id"]
    refuses_every_wrong_type(controller, nwid, field, lambda value: controller.update_member(
        nwid, MEMBER.address, {field: value}))  # fmt: skip


@pytest.mark.parametrize("flag", FLAGS)
def test_every_flag_refuses_every_wrong_type(flag):
    for value in WRONG:
        if value in (True, 0) or (flag == "allowManaged" and value == []):
            continue  # booleans and 0/1 are what flags take (allowManaged also a CIDR list)
        with pytest.raises(FlagsError):
            NetworkFlags().changed({flag: value})
