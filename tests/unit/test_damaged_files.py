"""Damaged files of the home (issue 13, item 6): every file and every kind of damage.

A bad node-wide file stops the start with exit 2 and a one-line error naming it; a bad
per-network file takes down that network only (its status says why) while the node goes on.
No file is ever modified, replaced or left with a `*.tmp` beside it.

Service.start and Service.stop are replaced by tripwires here: these tests never touch the
kernel, and a damaged file that slipped through would fail the test instead of starting a node.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from pathlib import Path

import pytest

from oneservice import service as service_module
from oneservice.__main__ import main
from oneservice.api import Routes
from oneservice.authtoken import load_or_create_token
from oneservice.controller.store import SQLiteStore
from oneservice.httpserver import HttpError, Request, parse_head
from oneservice.identity import Identity, load_or_create_identity
from oneservice.network.signed import sign_config
from oneservice.settings import Settings
from tests.integration.nodes import member, write_home

GOOD_ID = "8056c2e21c000001"
INVALID_UTF8 = b'{"settings": "\xff\xfe"}'
DEEP = b"[" * 100_000 + b"]" * 100_000

# Damage that applies to any JSON file.
JSON_DAMAGE = {
    "garbage": b"this is not json {{",
    "truncated": b'{"settings": {"relay": tr',
    "empty": b"",
    "a list": b"[]",
    "a string": b'"x"',
    "a number": b"5",
    "null": b"null",
    "invalid UTF-8": INVALID_UTF8,
    "deep nesting": DEEP,
}


def _valid_db(path: Path) -> bytes:
    store = SQLiteStore(path)
    store.put_network(GOOD_ID, {"id": GOOD_ID}, 1)
    store.close()
    data = path.read_bytes()
    path.unlink()
    return data


def node_wide_cases(tmp_path: Path) -> list[tuple[str, str, bytes]]:
    identity_text = Identity.generate().secret_text()
    database = _valid_db(tmp_path / "scratch.db")
    cases = [("local.conf", name, data) for name, data in JSON_DAMAGE.items()]
    cases += [("identity.secret", name, data) for name, data in {
        "garbage": b"not an identity", "truncated": identity_text[:40].encode(), "empty": b"",
        "a list": b"[]", "invalid UTF-8": b"\xff" * 40, "public only": identity_text.rsplit(
            ":", 2)[0].encode(),
    }.items()]  # fmt: skip
    for token_file in ("authtoken.secret", "metricstoken.secret"):
        cases += [(token_file, name, data) for name, data in {
            "garbage": b"two words\x00", "empty": b"", "blank": b"  \n",
            "invalid UTF-8": b"\xff\xfe",
        }.items()]  # fmt: skip
    cases += [("controller.db", name, data) for name, data in {
        "garbage": bytes(range(256)) * 20, "truncated": database[: len(database) // 2],
        "empty": b"", "one byte": b"x", "header only": database[:100],
    }.items()]  # fmt: skip
    for state in ("rp-filter.state", "exit-node.state"):
        cases += [(state, name, data) for name, data in JSON_DAMAGE.items()]
        cases.append((state, "foreign sysctl", b'{"/proc/sys/kernel/panic": "0"}'))
    return cases


def snapshot(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}


def test_every_damaged_node_wide_file_stops_the_start_with_exit_2(tmp_path, tripwires, capsys):
    failures = []
    for n, (name, damage, data) in enumerate(node_wide_cases(tmp_path)):
        home = tmp_path / f"home{n}"
        write_home(home, Identity.generate(), [])
        load_or_create_identity(home)  # identity.public, which is written from the secret
        (home / name).write_bytes(data)
        before = snapshot(home)
        try:
            code = main(["--home", str(home), "--port", "0"])
        except Exception as exc:
            failures.append(f"{name} ({damage}): {type(exc).__name__}: {exc}")
            capsys.readouterr()
            continue
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        after = snapshot(home)
        after.pop("oneservice.lock", None)  # the instance lock, made before anything is read
        problem = None
        if code != 2:
            problem = f"exit {code}"
        elif len(lines) != 1 or not lines[0].startswith("oneservice: error: ") or name not in err:
            problem = f"not one line naming the file: {err!r}"
        elif "Traceback" in err:
            problem = "traceback"
        elif after != before:
            problem = f"the home changed: {sorted(set(after) ^ set(before)) or 'content'}"
        if problem:
            failures.append(f"{name} ({damage}): {problem}")
    assert not failures, "\n".join(failures)


def _static_network(identity: Identity, network_id: str) -> dict:
    return {"id": network_id, "name": "lab", "members": [
        member(identity, ["10.147.17.1/24"], []),
    ]}  # fmt: skip


def per_network_cases(identity: Identity) -> list[tuple[str, str, bytes]]:
    bad_id = "8056c2e21c000002"
    controller = Identity.generate()
    signed = sign_config(controller, {"id": bad_id, "name": "x", "members": []})

    without_controller = json.dumps({
        "id": bad_id, "config": base64.b64encode(signed.config).decode(),
        "signature": base64.b64encode(signed.signature).decode(),
    }).encode()  # fmt: skip
    cases = []
    for suffix in (".json", ".conf", ".local.conf"):
        cases += [(f"{bad_id}{suffix}", damage, data) for damage, data in JSON_DAMAGE.items()]
        cases.append((f"{bad_id}{suffix}", '{"controller": 5}', b'{"controller": 5}'))
    cases.append((f"{bad_id}.conf", "saved config without controller", without_controller))
    for damage, text in (("a saved config not in base64", "not base64!"),
                         ("a saved config not in ASCII", "\u00e9t\u00e9")):  # fmt: skip
        cases.append((f"{bad_id}.conf", damage, json.dumps({
            "id": bad_id, "controller": controller.public_text(), "config": text,
            "signature": base64.b64encode(signed.signature).decode(),
        }).encode()))  # fmt: skip
    cases.append((f"{bad_id}.conf", "another network's file", b'{"id": "8056c2e21c000003"}'))
    cases.append((f"{bad_id}.local.conf", "a flag of the wrong type", b'{"allowDefault": "x"}'))
    cases.append((f"{bad_id}.json", "file named for another id",
                  json.dumps(_static_network(identity, GOOD_ID)).encode()))  # fmt: skip
    return cases


def test_a_damaged_per_network_file_takes_down_that_network_only(tmp_path):
    identity = Identity.generate()
    failures = []

    async def load(home: Path):
        service = service_module.Service(home, Settings())
        return service, Routes(service)

    for n, (name, damage, data) in enumerate(per_network_cases(identity)):
        home = tmp_path / f"home{n}"
        write_home(home, identity, [_static_network(identity, GOOD_ID)])
        bad_id = name.split(".", 1)[0]
        if name.endswith(".local.conf"):  # flags of a network this node is in
            (home / "networks.d" / f"{bad_id}.conf").write_text(json.dumps({"id": bad_id}))
        load_or_create_identity(home)
        load_or_create_token(home)
        load_or_create_token(home, "metricstoken.secret")
        (home / "networks.d" / name).write_bytes(data)
        before = snapshot(home)
        try:
            service, routes = asyncio.run(load(home))
        except Exception as exc:
            failures.append(f"{name} ({damage}): {type(exc).__name__}: {exc}")
            continue
        reason = service.networks.down_reason(bad_id)
        shown = routes._network_json(bad_id)
        problem = None
        if [c.id for c in service.networks.active()] != [GOOD_ID]:
            problem = f"active networks {[c.id for c in service.networks.active()]}"
        elif name not in reason or "\n" in reason:
            problem = f"reason does not name the file in one line: {reason!r}"
        elif shown["status"] != "FILE_ERROR" or shown["statusDetail"] != reason:
            problem = f"status {shown['status']!r}, detail {shown['statusDetail']!r}"
        elif name.endswith(f"{bad_id}.conf") and bad_id in [
            j.id for j in service.networks.memberships.requests_due(1e9)
        ]:  # its saved config would be written over
            problem = "the controller is asked for the network anyway"
        elif snapshot(home) != before:
            problem = "the home changed"
        service.controller.close()
        if problem:
            failures.append(f"{name} ({damage}): {problem}")
    assert not failures, "\n".join(failures)


def test_flags_of_a_network_with_a_damaged_flags_file_cannot_be_written_over(tmp_path):
    identity = Identity.generate()
    home = write_home(tmp_path / "home", identity, [_static_network(identity, GOOD_ID)])
    flags = home / "networks.d" / f"{GOOD_ID}.local.conf"
    flags.write_bytes(b"{broken")

    async def run():
        service = service_module.Service(home, Settings())
        routes = Routes(service)
        request = Request(parse_head(f"POST /network/{GOOD_ID} HTTP/1.1\r\n\r\n".encode()),
                          b'{"allowDefault": true}', "127.0.0.1")  # fmt: skip
        request.params = {"nwid": GOOD_ID}
        with pytest.raises(HttpError, match="fix or remove that file first") as refused:
            await routes.join(request)
        assert refused.value.status == 409

    asyncio.run(run())
    assert flags.read_bytes() == b"{broken"


def test_a_controller_database_that_is_fine_still_opens(tmp_path):
    data = _valid_db(tmp_path / "scratch.db")
    (tmp_path / "controller.db").write_bytes(data)
    store = SQLiteStore(tmp_path / "controller.db")
    assert store.network_ids() == [GOOD_ID]
    store.close()
    assert sqlite3.connect(tmp_path / "controller.db").execute("PRAGMA quick_check").fetchone()
