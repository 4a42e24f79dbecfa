from __future__ import annotations

import dataclasses
import json

import pytest

from oneservice.controller import controller as controller_module
from oneservice.controller.controller import Controller, ControllerError
from oneservice.controller.store import SQLiteStore, StoreError
from oneservice.identity import Identity
from oneservice.messages import ConfigAnswer
from oneservice.network.config import NetworkConfigError
from oneservice.network.signed import canonical, canonical_with_members, verify_config
from tests.unit.corenet import identity

CONTROLLER = identity(10)
MEMBER = identity(11)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """Every test of the controller runs on both stores: one contract."""
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "controller.db")
    else:
        from oneservice.controller.postgres import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres"))
    yield opened
    opened.close()


@pytest.fixture
def controller(store):
    return Controller(CONTROLLER, store)


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
    assert denied == ConfigAnswer(nwid, error="ACCESS_DENIED")
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
    tampered = dataclasses.replace(message, config=message.config.replace(b"lab", b"bal"))
    with pytest.raises(NetworkConfigError, match="signature does not verify"):
        verify_config(tampered, CONTROLLER.public(), nwid)


def test_unknown_network_and_foreign_network(controller):
    assert controller.handle_request(CONTROLLER.address + "abcdef", MEMBER.public(), [],
                                     1.0).error == "NOT_FOUND"  # fmt: skip
    with pytest.raises(ControllerError, match="belongs to controller"):
        controller.create_network("0123456789abcdef")


def test_unknown_joiners_cannot_grow_the_database_without_bound(controller, monkeypatch):
    monkeypatch.setattr(controller_module, "MAX_UNAUTHORIZED_MEMBERS", 3)
    nwid = lab(controller)
    for n in range(6):
        controller.handle_request(nwid, identity(20 + n).public(), [], 1.0)
    assert len(controller.member_revisions(nwid)) == 3
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
    subnet = {"target": "10.147.17.0/24", "via": None, "flags": 0, "metric": 0}
    assert controller.network(nwid)["routes"] == [subnet], "unchanged"


# --- ZeroTier's controller API shape -------------------------------------------------------------


def test_member_list_is_zerotiers_map_of_revisions(controller):
    nwid = lab(controller)
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    controller.handle_request(nwid, identity(12).public(), [], 1.0)  # asks, not authorized
    revisions = controller.member_revisions(nwid)
    assert set(revisions) == {MEMBER.address, identity(12).address}
    assert all(isinstance(r, int) for r in revisions.values())
    before = revisions[MEMBER.address]
    controller.update_member(nwid, MEMBER.address, {"name": "laptop"})
    assert controller.member_revisions(nwid)[MEMBER.address] == before + 1


def test_network_and_member_objects_carry_zerotiers_field_names(controller):
    nwid = lab(controller)
    network = controller.network(nwid)
    for field in ("id", "nwid", "objtype", "name", "creationTime", "private", "enableBroadcast",
                  "v4AssignMode", "v6AssignMode", "mtu", "multicastLimit", "revision", "routes",
                  "ipAssignmentPools", "rules", "capabilities", "tags", "dns"):  # fmt: skip
        assert field in network, field
    assert network["objtype"] == "network" and network["rules"] == [{"type": "ACTION_ACCEPT"}]
    assert network["routes"] == [{"target": "10.147.17.0/24", "via": None, "flags": 0, "metric": 0}]
    member = controller.update_member(nwid, MEMBER.address, {"authorized": True})
    for field in ("id", "address", "nwid", "objtype", "authorized", "activeBridge", "identity",
                  "ipAssignments", "revision", "noAutoAssignIps", "creationTime",
                  "lastAuthorizedTime", "vMajor", "capabilities", "tags", "name"):  # fmt: skip
        assert field in member, field
    assert member["objtype"] == "member" and member["lastAuthorizedTime"] > 0


def test_objects_posted_back_as_they_came_are_accepted(controller):
    """Controller UIs post an object back with its read-only fields; ZeroTier ignores them."""
    nwid = lab(controller)
    network = controller.network(nwid)
    again = controller.update_network(nwid, {**network, "name": "renamed"})
    assert again["name"] == "renamed" and again["revision"] == network["revision"] + 1
    member = controller.update_member(nwid, MEMBER.address, {"authorized": True})
    again = controller.update_member(nwid, MEMBER.address, {**member, "name": "laptop"})
    assert again["name"] == "laptop" and again["ipAssignments"] == member["ipAssignments"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"enableBroadcast": True}, "enableBroadcast=true is not supported"),
        ({"rules": [{"type": "ACTION_DROP"}]}, "rules="),
        ({"tags": [{"id": 1}]}, "tags="),
        ({"multicastLimit": "32"}, "multicastLimit must be a whole number"),
        ({"v6AssignMode": {"6plane": True}}, "6plane and rfc4193 are not supported"),
        ({"v4AssignMode": {"zt": [1]}}, "v4AssignMode.zt must be true or false"),
        ({"v4AssignMode": {"ipv4": True}}, "v4AssignMode must be an object of booleans"),
        ({"everything": 1}, 'unknown network field "everything"'),
    ],
)
def test_zerotier_fields_without_a_meaning_here_are_refused_not_ignored(
    controller, changes, message
):
    nwid = lab(controller)
    with pytest.raises(ControllerError, match=message):
        controller.update_network(nwid, changes)


def test_the_do_nothing_values_of_zerotier_fields_are_accepted(controller):
    nwid = lab(controller)
    network = controller.update_network(nwid, {
        "enableBroadcast": False, "multicastLimit": 32, "rules": [{"type": "ACTION_ACCEPT"}],
        "capabilities": [], "tags": [], "v6AssignMode": {"zt": False, "6plane": False},
    })  # fmt: skip
    assert network["v6AssignMode"] == {"zt": False, "6plane": False, "rfc4193": False}
    with pytest.raises(ControllerError, match="activeBridge=true is not supported"):
        controller.update_member(nwid, MEMBER.address, {"activeBridge": True})


def test_automatic_addresses_follow_v4_assign_mode_and_no_auto_assign_ips(controller):
    nwid = lab(controller)
    controller.update_network(nwid, {"v4AssignMode": {"zt": False}})
    member = controller.update_member(nwid, MEMBER.address, {"authorized": True})
    assert member["ipAssignments"] == []
    controller.update_network(nwid, {"v4AssignMode": {"zt": True}})
    other = identity(13).address
    member = controller.update_member(nwid, other, {"authorized": True, "noAutoAssignIps": True})
    assert member["ipAssignments"] == [] and member["noAutoAssignIps"] is True
    member = controller.update_member(nwid, identity(14).address, {"authorized": True})
    assert member["ipAssignments"] == ["10.147.17.10"]


def test_an_endpoint_hint_that_does_not_parse_is_dropped_not_stored(controller):
    """A relay path's "<root address>/0" once reached the controller: stored, it made every
    member's config fail to build."""
    nwid = lab(controller)
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    controller.update_member(nwid, identity(12).address, {"authorized": True})
    controller.handle_request(nwid, MEMBER.public(), ["3f00000001/0", "192.0.2.2/9993"], 1.0)
    assert controller.member(nwid, MEMBER.address)["endpoints"] == ["192.0.2.2/9993"]
    # One stored by an older version is left out of the configs, which still build.
    identity_text, document, seen = controller.store.get_member(nwid, MEMBER.address)
    document["endpoints"] = ["3f00000001/0"]
    controller.store.put_member(nwid, MEMBER.address, identity_text, document, seen)
    message = controller.handle_request(nwid, identity(12).public(), [], 2.0)
    config = verify_config(message, CONTROLLER.public(), nwid)
    assert all(m.endpoints == () for m in config.members if m.address == MEMBER.address)


def test_a_config_is_built_and_signed_once_per_revision(controller, monkeypatch):
    nwid = lab(controller)
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    other = identity(12)
    controller.update_member(nwid, other.address, {"authorized": True})
    controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 100.0)
    controller.handle_request(nwid, other.public(), ["192.0.2.3/9993"], 100.0)
    built = []
    original = controller_module.sign_config
    monkeypatch.setattr(controller_module, "sign_config",
                        lambda *a: built.append(1) or original(*a))  # fmt: skip
    first = controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 101.0)
    again = [controller.handle_request(nwid, who.public(), [hint], 102.0)
             for who, hint in ((MEMBER, "192.0.2.2/9993"), (other, "192.0.2.3/9993"))]
    assert built == [] and all(m is first for m in again), "built once, at the last change"
    controller.update_network(nwid, {"name": "renamed"})
    renamed = controller.handle_request(nwid, MEMBER.public(), ["192.0.2.2/9993"], 103.0)
    assert built == [1] and verify_config(renamed, CONTROLLER.public(), nwid).name == "renamed"


def test_a_build_reads_only_what_changed_and_equals_a_build_from_scratch(controller, store):
    """Each config is built from the member rows written since the last build; what another
    controller process sharing the store writes (here: another Controller on it) is seen, a
    deletion too, and the result is always what a controller starting afresh would build,
    signed over the canonical bytes of the document."""
    nwid = lab(controller)
    other = Controller(CONTROLLER, store)
    members = [identity(n) for n in range(20, 26)]
    for n, member in enumerate(members[:4]):
        other.update_member(nwid, member.address, {"authorized": True})
        other.handle_request(nwid, member.public(), [f"192.0.2.{n + 2}/9993"], 100.0)
    read: list[int] = []
    original = store.member_changes

    def counted(network_id, since):
        changes = original(network_id, since)
        read.append(len(changes.rows))
        return changes

    store.member_changes = counted

    def built_as_from_scratch() -> list[str]:
        message = controller.config_message(nwid)
        document = json.loads(message.config)
        assert message.config == canonical(document)
        assert document == Controller(CONTROLLER, store).config_document(nwid)
        verify_config(message, CONTROLLER.public(), nwid)
        return [m["identity"][:10] for m in document["members"]]

    assert built_as_from_scratch() == sorted(m.address for m in members[:4])
    assert read[0] == 4
    read.clear()
    other.handle_request(nwid, members[0].public(), ["192.0.2.99/9993"], 101.0)  # moved
    other.update_network(nwid, {"name": "renamed"})
    assert len(built_as_from_scratch()) == 4 and read[0] == 1, "one row read, not four"
    other.delete_member(nwid, members[1].address)
    assert members[1].address not in built_as_from_scratch()
    other.update_member(nwid, members[2].address, {"authorized": False})
    assert members[2].address not in built_as_from_scratch()
    # A deletion and a new member at once: the count is right, the set is not.
    other.delete_member(nwid, members[3].address)
    other.update_member(nwid, members[4].address, {"authorized": True})
    other.handle_request(nwid, members[4].public(), [], 102.0)
    assert built_as_from_scratch() == sorted([members[0].address, members[4].address])
    # Addresses come from the rows as read now, whoever wrote them: the lowest free one (a
    # deauthorized member keeps its own).
    held = {m.address: controller.member(nwid, m.address)["ipAssignments"]
            for m in (members[0], members[2], members[4])}  # fmt: skip
    assert sorted(held.values()) == [["10.147.17.10"], ["10.147.17.11"], ["10.147.17.12"]]
    controller.update_member(nwid, members[5].address, {"authorized": True})
    assert controller.member(nwid, members[5].address)["ipAssignments"] == ["10.147.17.13"]


def test_the_canonical_bytes_joined_from_members_are_the_documents_own():
    for document in ({"id": "x", "members": []}, {"dns": {"domain": "a", "servers": []},
                     "id": "x", "members": [{"identity": "b", "addresses": ["\0members\0"]}],
                     "name": "\0members\0", "mtu": 2800}):  # fmt: skip
        blobs = [canonical(m) for m in document["members"]]
        assert canonical_with_members(document, blobs) == canonical(document)


# What controller web UIs post (HTML form values), read as ZeroTier's controller reads them.
UI_BOOLEANS = [(True, True), (False, False), (1, True), (0, False), (2.5, True), (-1, False),
               ("true", True), ("True", True), ("1", True), ("t", True), ("false", False),
               ("0", False), ("", False), ("yes", False), ("no", False)]  # fmt: skip


@pytest.mark.parametrize(("posted", "meant"), UI_BOOLEANS)
def test_booleans_read_as_zerotiers_controller_reads_them_and_answered_as_booleans(
    controller, posted, meant
):
    nwid = lab(controller)
    network = controller.update_network(nwid, {
        "private": posted, "v4AssignMode": {"zt": posted},
        "v6AssignMode": {"zt": posted, "6plane": "false", "rfc4193": "false"},
    })  # fmt: skip
    assert network["private"] is meant
    assert network["v4AssignMode"] == {"zt": meant} and network["v6AssignMode"]["zt"] is meant
    member = controller.update_member(nwid, MEMBER.address, {
        "authorized": posted, "noAutoAssignIps": posted, "activeBridge": "false"})  # fmt: skip
    assert member["authorized"] is meant and member["noAutoAssignIps"] is meant
    assert controller.member(nwid, MEMBER.address)["authorized"] is meant  # stored so


@pytest.mark.parametrize("posted", [None, [], [True], {}, {"x": 1}])
def test_other_types_for_a_boolean_are_refused_naming_the_field(controller, posted):
    nwid = lab(controller)
    for field, change in (("private", {"private": posted}),
                          ("v4AssignMode.zt", {"v4AssignMode": {"zt": posted}})):  # fmt: skip
        with pytest.raises(ControllerError, match=field.replace(".", r"\.")) as refused:
            controller.update_network(nwid, change)
        assert refused.value.status == 400
    with pytest.raises(ControllerError, match="authorized"):
        controller.update_member(nwid, MEMBER.address, {"authorized": posted})


def test_a_delete_answers_the_deleted_object_as_zerotier_does(controller):
    nwid = lab(controller)
    member = controller.update_member(nwid, MEMBER.address, {"authorized": True,
                                                             "name": "laptop"})  # fmt: skip
    deleted = controller.delete_member(nwid, MEMBER.address)
    assert deleted == member and deleted["id"] == MEMBER.address and deleted["name"] == "laptop"
    network = controller.network(nwid)
    assert controller.delete_network(nwid) == network
    assert network["id"] == nwid and network["name"] == "lab"
