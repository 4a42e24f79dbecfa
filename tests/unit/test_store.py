"""The controller stores: one schema description, migrated on open in both; what PostgreSQL
adds for several controllers (atomic revisions, change notifications); and errors that name
the server but never its password."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from oneservice.controller import schema
from oneservice.controller.postgres import PostgresStore, shown
from oneservice.controller.store import MemberChanges, SQLiteStore, StoreError

NWID = "8056c2e21c000001"


def open_store(kind: str, tmp_path, request):
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "controller.db")
    return PostgresStore(request.getfixturevalue("postgres"))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_both_stores_are_made_from_the_one_schema_and_keep_what_they_are_given(kind, tmp_path,
                                                                               request):
    store = open_store(kind, tmp_path, request)
    try:
        assert store._query("SELECT value FROM meta WHERE key='schema_version'") == [
            (str(schema.SCHEMA_VERSION),)]  # fmt: skip
        store.put_network(NWID, {"name": "lab"}, 1)
        store.put_network(NWID, {"name": "lab2"}, 2)
        assert store.get_network(NWID) == ({"name": "lab2"}, 2)
        assert store.bump_revision(NWID) == 3 and store.bump_revision("nope000000000000") is None
        store.put_member(NWID, "0123456789", "id", {"authorized": False}, 10.0)
        store.put_member(NWID, "0123456789", "id", {"authorized": True}, None)
        assert store.get_member(NWID, "0123456789") == ("id", {"authorized": True}, 10.0)
        assert store.count_unauthorized(NWID) == 0
        assert store.members(NWID) == [("0123456789", "id", {"authorized": True}, 10.0)]
        store.delete_network(NWID)
        assert store.network_ids() == [] and store.members(NWID) == []
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_from_a_newer_oneservice_is_refused_untouched(kind, tmp_path, request):
    store = open_store(kind, tmp_path, request)
    store._query("UPDATE meta SET value='99' WHERE key='schema_version'")
    store.close()
    if kind == "sqlite":
        with pytest.raises(StoreError, match="schema version 99, newer than this oneservice"):
            SQLiteStore(tmp_path / "controller.db")
    else:
        with pytest.raises(StoreError, match="schema version 99, newer than this oneservice"):
            PostgresStore(store._conninfo)


def test_the_sqlite_schema_is_the_one_it_always_was(tmp_path):
    """Databases made before the schema was described once open as they are."""
    old = sqlite3.connect(tmp_path / "controller.db")
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE networks (id TEXT PRIMARY KEY, document TEXT NOT NULL,"
        " revision INTEGER NOT NULL);"
        "CREATE TABLE members (network_id TEXT NOT NULL, address TEXT NOT NULL,"
        " identity TEXT NOT NULL, document TEXT NOT NULL, authorized INTEGER NOT NULL,"
        " last_seen REAL, PRIMARY KEY (network_id, address));"
        f"INSERT INTO networks VALUES ('{NWID}', '{{\"name\": \"old\"}}', 4);"
        f"INSERT INTO members VALUES ('{NWID}', '0123456789', 'id1',"
        ' \'{"authorized": true, "ipAssignments": ["10.0.0.7", "fd00::7"]}\', 1, 5.0);'
    )
    old.close()
    store = SQLiteStore(tmp_path / "controller.db")
    assert store.get_network(NWID) == ({"name": "old"}, 4)
    # Version 2's columns are derived for the rows it had: the addresses taken, and every row
    # read at a controller's first build.
    changes = store.member_changes(NWID, -1)
    assert changes.total == 1
    assert [(r.address, r.addresses) for r in changes.rows] == [("0123456789",
                                                                 "10.0.0.7 fd00::7")]
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_controller_reads_only_the_member_rows_written_since_it_last_looked(kind, tmp_path,
                                                                             request):
    store = open_store(kind, tmp_path, request)
    try:
        store.put_network(NWID, {"name": "lab"}, 1)
        store.put_member(NWID, "0123456789", "id1", {"authorized": True}, 1.0)
        store.put_member(NWID, "1123456789", "id2", {"authorized": False}, 1.0)
        store.put_member(NWID, "2123456789", "", {"authorized": True}, None)  # never asked
        first = store.member_changes(NWID, -1)
        assert (first.total, first.written, len(first.rows)) == (3, 3, 3)
        seen = max(r.changed for r in first.rows)
        assert store.member_changes(NWID, seen).rows == ()
        store.put_member(NWID, "1123456789", "id2", {"authorized": True,
                                                      "ipAssignments": ["10.0.0.2"]}, 2.0)
        later = store.member_changes(NWID, seen)
        assert [(r.address, r.authorized, r.addresses)
                                      for r in later.rows] == [("1123456789", True, "10.0.0.2")]
        # A deletion leaves no row to read: the counts say it.
        store.delete_member(NWID, "0123456789")
        assert store.member_changes(NWID, later.rows[0].changed) == MemberChanges(2, 4, ())
        assert store.member_changes("8056c2e21c999999", -1) == MemberChanges(0, -1, ())
    finally:
        store.close()


def test_two_controllers_on_one_database_hear_each_others_changes(postgres):
    first, second = PostgresStore(postgres), PostgresStore(postgres)
    heard: list[str] = []
    arrived = threading.Event()

    def on_change(network_id: str) -> None:
        heard.append(network_id)
        arrived.set()

    second.listen(on_change)
    try:
        second.put_network(NWID, {"name": "own change"}, 1)  # its own: not told to itself
        first.bump_revision(NWID)
        assert arrived.wait(5), "the change made through the first reached the second"
        assert heard == [NWID]
        # Revisions are bumped in the database, not read and written back: none is lost.
        for _ in range(10):
            first.bump_revision(NWID)
            second.bump_revision(NWID)
        assert first.get_network(NWID)[1] == 22
    finally:
        first.close()
        second.close()


def test_errors_name_the_server_but_never_its_password(postgres_server):
    conninfo = f"{postgres_server.conninfo('nosuchdatabase')} password=hunter2"
    with pytest.raises(StoreError) as raised:
        PostgresStore(conninfo)
    assert "hunter2" not in str(raised.value)
    assert "nosuchdatabase" in str(raised.value)
    assert "hunter2" not in shown("postgresql://admin:hunter2@db.example:5433/ctl")
    assert shown("postgresql://admin:hunter2@db.example:5433/ctl") == (
        "PostgreSQL (host db.example, port 5433, dbname ctl, user admin)")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_addresses_taken_and_the_members_online_come_from_the_database(kind, tmp_path,
                                                                          request):
    """Without unpacking every document here: each row's addresses are a column."""
    store = open_store(kind, tmp_path, request)
    try:
        store.put_network(NWID, {"name": "lab"}, 1)
        store.put_member(NWID, "0123456789", "id1", {"ipAssignments": ["10.0.0.1", "fd00::1"]},
                         100.0)  # fmt: skip
        store.put_member(NWID, "1123456789", "id2", {"ipAssignments": []}, 10.0)
        store.put_member(NWID, "2123456789", "", {}, 200.0)  # prepared, never joined
        assert {r.address: r.addresses for r in store.member_changes(NWID, -1).rows} == {
            "0123456789": "10.0.0.1 fd00::1", "1123456789": "", "2123456789": ""}
        assert store.seen_since(NWID, 50.0) == ["0123456789"]
    finally:
        store.close()


def test_without_psycopg_a_postgresql_controller_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "psycopg", None)  # as if not installed
    with pytest.raises(StoreError, match=r"needs psycopg, which is not installed: pip install"):
        PostgresStore("host=/run/postgresql dbname=oneservice password=hunter2")
