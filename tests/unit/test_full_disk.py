"""A full disk (issue 13, item 6): writes fail with a clear error, no partial or temporary file
remains, and what runs is unchanged. The disk is a real one: a small tmpfs, filled up."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path

import pytest

from oneservice.__main__ import main
from oneservice.api import _errors_answered
from oneservice.controller.store import SQLiteStore
from oneservice.files import WriteFailed, write_atomically
from oneservice.httpserver import HttpError
from oneservice.network.membership import Memberships
from oneservice.network.signed import sign_config
from oneservice.routing.flags import load_flags
from oneservice.routing.manager import RoutingManager
from oneservice.settings import Settings
from tests.unit.corenet import identity


@pytest.fixture
def disk(tmp_path):
    """A 1 MiB tmpfs mounted for this test only; ``fill()`` leaves no byte free."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> None:
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


CONTROLLER = identity(10)


def config_message(nwid: str, revision: int, name: str = "lab") -> dict:
    return sign_config(CONTROLLER, {"id": nwid, "name": name, "revision": revision,
                                    "members": []})  # fmt: skip


def stray(mount: Path) -> list[str]:
    return sorted(str(p.relative_to(mount)) for p in mount.rglob("*") if ".tmp" in p.name)


def test_a_write_on_a_full_disk_fails_clearly_and_leaves_the_old_file(disk):
    path = disk / "state.json"
    write_atomically(path, '{"old": 1}')
    fill(disk)
    with pytest.raises(WriteFailed, match=r"cannot write .*state.json: .*\(the disk is full\)"):
        write_atomically(path, '{"new": 1}' + " " * 100_000)
    assert path.read_text() == '{"old": 1}' and stray(disk) == []


def test_joining_on_a_full_disk_joins_nothing(disk):
    memberships = Memberships(disk)
    fill(disk)
    with pytest.raises(WriteFailed):
        memberships.join("8056c2e21c000001")
    assert memberships.networks == {} and stray(disk) == []


def test_a_config_that_cannot_be_saved_is_not_applied(disk):
    nwid = CONTROLLER.address + "000001"
    memberships = Memberships(disk)
    memberships.join(nwid)
    first = config_message(nwid, revision=1)
    memberships.on_config_message(first, CONTROLLER.public())
    saved = (disk / "networks.d" / f"{nwid}.conf").read_bytes()
    fill(disk)
    second = config_message(nwid, revision=2, name="x" * 200_000)
    assert memberships.on_config_message(second, CONTROLLER.public()) is None
    joined = memberships.networks[nwid]
    assert joined.config.revision == 1, "the running config is the one on disk"
    assert joined.rejected_configs == 1 and "disk is full" in joined.last_rejection
    assert (disk / "networks.d" / f"{nwid}.conf").read_bytes() == saved and stray(disk) == []


def test_flags_that_cannot_be_saved_are_not_applied(disk):
    routing = RoutingManager(disk, Settings, identity(1).address)
    fill(disk)
    with pytest.raises(WriteFailed):
        routing.flags.set("8056c2e21c000001", {"allowDefault": True})
    assert routing.flags.of("8056c2e21c000001").allow_default is False
    assert load_flags(disk, "8056c2e21c000001").allow_default is False and stray(disk) == []


def test_the_first_start_on_a_full_disk_says_so_and_leaves_no_part(disk, tripwires, capsys):
    home = disk / "home"
    home.mkdir()
    (home / "oneservice.lock").touch()
    fill(disk)
    assert main(["--home", str(home), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("oneservice: error: cannot write ") and "disk is full" in err, err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in home.iterdir()) == ["oneservice.lock"]


def test_a_controller_change_on_a_full_disk_is_answered_507(disk):
    store = SQLiteStore(disk / "controller.db")
    store.put_network("8056c2e21c000001", {"id": "8056c2e21c000001"}, 1)
    fill(disk)

    async def handler(request):
        store.put_network("8056c2e21c000001", {"id": "8056c2e21c000001", "x": "y" * 500_000}, 2)

    with pytest.raises(HttpError) as raised:
        asyncio.run(_errors_answered(handler)(None))
    assert raised.value.status == 507 and "nothing was changed" in str(raised.value)
    store.close()
    assert SQLiteStore(disk / "controller.db").get_network("8056c2e21c000001")[1] == 1
