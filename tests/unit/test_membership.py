"""Joined networks: only the controller's signed, newest config is taken, and it survives a
restart; everything else is counted and leaves the last good config in force."""

from __future__ import annotations

import dataclasses
import json

import pytest

from oneservice.controller.controller import Controller
from oneservice.controller.store import SQLiteStore
from oneservice.messages import ConfigAnswer
from oneservice.network.membership import (
    STATUS_FILE_ERROR,
    STATUS_OK,
    Memberships,
    checked_config,
)
from oneservice.network.signed import sign_config
from tests.unit.corenet import identity

CONTROLLER = identity(10)
MEMBER = identity(11)
STRANGER = identity(12)


@pytest.fixture
def setup(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    controller = Controller(CONTROLLER, store)
    nwid = controller.create_network(changes={
        "name": "lab",
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.20"}],
        "routes": [{"target": "10.147.17.0/24"}],
    })["id"]  # fmt: skip
    controller.update_member(nwid, MEMBER.address, {"authorized": True})
    memberships = Memberships(tmp_path / "member")
    memberships.join(nwid)
    yield controller, nwid, memberships
    store.close()


def config_message(controller: Controller, nwid: str) -> ConfigAnswer:
    return controller.handle_request(nwid, MEMBER.public(), [], 100.0)


def test_a_signed_config_is_taken_and_reloaded_after_a_restart(setup, tmp_path):
    controller, nwid, memberships = setup
    assert memberships.on_config_message(config_message(controller, nwid), CONTROLLER.public())
    assert memberships.networks[nwid].status == STATUS_OK
    again = Memberships(tmp_path / "member")
    assert again.load() == []
    assert again.networks[nwid].config == memberships.networks[nwid].config
    assert again.networks[nwid].status == STATUS_OK


def test_forged_configs_are_counted_and_change_nothing(setup):
    controller, nwid, memberships = setup
    good = config_message(controller, nwid)
    memberships.on_config_message(good, CONTROLLER.public())
    joined = memberships.networks[nwid]
    before = joined.config

    tampered = dataclasses.replace(good, config=good.config.replace(b"lab", b"bal"))
    assert memberships.on_config_message(tampered, CONTROLLER.public()) is None
    assert "signature does not verify" in joined.last_rejection
    # Signed by someone else, sent by someone else: both refused.
    forged = sign_config(STRANGER, json.loads(good.config))
    assert memberships.on_config_message(forged, CONTROLLER.public()) is None
    assert memberships.on_config_message(good, STRANGER.public()) is None
    assert "not the controller" in joined.last_rejection
    assert joined.rejected_configs == 3
    assert joined.config == before and joined.status == STATUS_OK


def test_a_stale_revision_is_refused(setup):
    controller, nwid, memberships = setup
    old = config_message(controller, nwid)
    controller.update_network(nwid, {"name": "lab renamed"})
    new = config_message(controller, nwid)
    assert memberships.on_config_message(new, CONTROLLER.public())
    assert memberships.on_config_message(old, CONTROLLER.public()) is None
    joined = memberships.networks[nwid]
    assert joined.config.name == "lab renamed"
    assert joined.rejected_configs == 1 and "stale revision" in joined.last_rejection


def test_access_denied_drops_the_saved_config(setup, tmp_path):
    controller, nwid, memberships = setup
    memberships.on_config_message(config_message(controller, nwid), CONTROLLER.public())
    controller.update_member(nwid, MEMBER.address, {"authorized": False})
    denied = config_message(controller, nwid)
    assert memberships.on_config_message(denied, CONTROLLER.public()) is not None
    assert memberships.networks[nwid].status == "ACCESS_DENIED"
    again = Memberships(tmp_path / "member")
    again.load()
    assert again.networks[nwid].config is None


def test_a_damaged_saved_config_takes_the_network_down_and_is_left_as_it_was(setup, tmp_path):
    controller, nwid, memberships = setup
    memberships.on_config_message(config_message(controller, nwid), CONTROLLER.public())
    path = tmp_path / "member" / "networks.d" / f"{nwid}.conf"
    saved = json.loads(path.read_text())
    saved["signature"] = saved["signature"][:-8] + "AAAAAAA="
    path.write_text(json.dumps(saved))
    again = Memberships(tmp_path / "member")
    [warning] = again.load()
    assert "saved config: config signature does not verify" in warning
    assert again.networks[nwid].status == STATUS_FILE_ERROR
    assert again.networks[nwid].file_error == warning
    assert again.requests_due(1e9) == [], "the controller is not asked: its answer would be saved"
    assert json.loads(path.read_text()) == saved, "the file is left as it was"


def test_a_configs_check_can_run_apart_and_its_verdict_is_applied_after(setup):
    """The service checks a config (an scrypt run per member new to it) on a worker thread,
    then applies the verdict on the event loop."""
    controller, nwid, memberships = setup
    message = config_message(controller, nwid)
    assert memberships.wants_checking(message, CONTROLLER.public())
    elsewhere = dataclasses.replace(message, network_id="8056c2e21c0000ff")
    assert not memberships.wants_checking(elsewhere, CONTROLLER.public())
    assert not memberships.wants_checking(message, STRANGER.public())
    assert memberships.on_config_message(message, CONTROLLER.public(), "checked: forged") is None
    assert memberships.networks[nwid].last_rejection == "checked: forged"
    verdict = checked_config(message, CONTROLLER.public(), nwid)
    assert memberships.on_config_message(message, CONTROLLER.public(), verdict).status == STATUS_OK
