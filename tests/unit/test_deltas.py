"""Config changes as deltas (issue 14, item 2): a member at revision r gets what changed since
r, signed as the whole new config; it rebuilds exactly the controller's document. A member
that only moved costs no new revision."""

from __future__ import annotations

import dataclasses
import random

import pytest

from oneservice.controller.controller import Controller
from oneservice.controller.store import SQLiteStore
from oneservice.messages import ConfigAnswer, ConfigDelta, encode
from oneservice.network.membership import STATUS_OK, Memberships
from oneservice.network.signed import apply_delta, canonical, delta_between
from tests.unit.corenet import identity

CONTROLLER = identity(10)
MEMBER = identity(11)


@pytest.fixture
def lab(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    controller = Controller(CONTROLLER, store)
    nwid = controller.create_network(changes={
        "name": "lab", "routes": [{"target": "10.147.0.0/16"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.1.1", "ipRangeEnd": "10.147.9.254"}],
    })["id"]  # fmt: skip
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    for n in range(20, 60):  # 40 others that joined once
        other = identity(n).public()
        controller.update_member(nwid, other.address, {"authorized": True})
        controller.handle_request(nwid, other, [f"192.0.2.{n}/9993"], 50.0)
    memberships = Memberships(tmp_path / "member")
    memberships.join(nwid)
    yield controller, nwid, memberships
    store.close()


def ask(controller: Controller, nwid: str, memberships: Memberships):
    joined = memberships.networks[nwid]
    have = joined.config.revision if joined.config else -1
    return controller.handle_request(nwid, MEMBER.public(), ["198.51.100.7/9993"], 100.0, have)


def test_a_change_arrives_as_a_small_delta_that_rebuilds_the_whole_signed_config(lab):
    controller, nwid, memberships = lab
    first = ask(controller, nwid, memberships)
    assert isinstance(first, ConfigAnswer), "the first join gets the whole config"
    assert memberships.on_config_message(first, CONTROLLER.public())
    controller.update_network(nwid, {"name": "renamed"})
    newcomer = identity(61).public()
    controller.update_member(nwid, newcomer.address, {"authorized": True})
    controller.handle_request(nwid, newcomer, [], 60.0)
    delta = ask(controller, nwid, memberships)
    assert isinstance(delta, ConfigDelta)
    whole = controller.config_message(nwid)
    print(f"delta {len(encode(delta))} bytes, whole config {len(encode(whole))} bytes")
    assert len(encode(delta)) * 10 < len(encode(whole))
    changed = memberships.on_config_message(delta, CONTROLLER.public())
    assert changed is not None and changed.config.name == "renamed"
    joined = memberships.networks[nwid]
    assert canonical(joined.document) == whole.config, "byte for byte the controller's"
    assert joined.config.member(newcomer.address) is not None
    assert joined.status == STATUS_OK and joined.rejected_configs == 0


def test_a_refresh_at_the_revision_held_costs_a_few_bytes_and_no_check(lab):
    controller, nwid, memberships = lab
    memberships.on_config_message(ask(controller, nwid, memberships), CONTROLLER.public())
    refresh = ask(controller, nwid, memberships)
    assert isinstance(refresh, ConfigDelta) and len(encode(refresh)) < 200
    assert not memberships.wants_checking(refresh, CONTROLLER.public())
    assert memberships.on_config_message(refresh, CONTROLLER.public()) is None


def test_a_tampered_or_misplaced_delta_changes_nothing(lab):
    controller, nwid, memberships = lab
    memberships.on_config_message(ask(controller, nwid, memberships), CONTROLLER.public())
    held = memberships.networks[nwid].config
    controller.update_network(nwid, {"name": "renamed"})
    delta = ask(controller, nwid, memberships)
    tampered = dataclasses.replace(delta, changes=delta.changes.replace(b"renamed", b"hijack!"))
    assert memberships.on_config_message(tampered, CONTROLLER.public()) is None
    assert memberships.networks[nwid].rejected_configs == 1
    # For another base (a push that crossed a change): not applied, asked for again at once.
    elsewhere = dataclasses.replace(delta, base=delta.base - 1)
    joined = memberships.networks[nwid]
    joined.last_request = 99.0
    assert memberships.on_config_message(elsewhere, CONTROLLER.public()) is None
    assert joined.config == held and joined.last_request == float("-inf")
    assert joined.rejected_configs == 1


def test_a_member_that_only_moved_costs_no_revision(lab):
    controller, nwid, _ = lab
    before = controller.revision(nwid)
    controller.handle_request(nwid, identity(20).public(), ["203.0.113.99/9993"], 70.0)
    assert controller.revision(nwid) == before
    assert controller.member(nwid, identity(20).address)["endpoints"] == ["203.0.113.99/9993"]


def test_deltas_rebuild_any_document_from_any_other():
    rng = random.Random(3)

    def document() -> dict:
        members = [{"identity": f"{n:010x}:1:aa:bb", "addresses": [f"10.0.0.{rng.randrange(9)}"]}
                   for n in sorted(rng.sample(range(30), rng.randrange(12)))]  # fmt: skip
        fields = {k: rng.randrange(3) for k in ("name", "mtu", "dns") if rng.random() < 0.7}
        return {"id": "8056c2e21c000001", "revision": rng.randrange(9), **fields,
                "members": members}  # fmt: skip

    for _ in range(500):
        old, new = document(), document()
        assert canonical(apply_delta(old, delta_between(old, new))) == canonical(new)


def test_a_push_after_a_change_is_a_delta_from_what_the_member_was_sent(lab):
    controller, nwid, memberships = lab
    memberships.on_config_message(ask(controller, nwid, memberships), CONTROLLER.public())
    controller.update_network(nwid, {"name": "pushed"})
    pushed = controller.message_for(nwid, MEMBER.address)
    assert isinstance(pushed, ConfigDelta)
    assert memberships.on_config_message(pushed, CONTROLLER.public()).config.name == "pushed"
