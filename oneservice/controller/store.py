"""Where a controller keeps networks and members, behind the small ControllerStore interface:
SQLite by default (`controller.db` in the home), or PostgreSQL (controller/postgres.py), which
several controller processes can share. Networks and members are JSON documents with a few
indexed columns. The schema is described once (controller/schema.py) and migrated forward on
open; the queries are written once (SqlStore), for both."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from ..records import record
from . import schema
from .errors import StoreError

# Every SQLite database starts with a 100-byte header: a shorter file is not one (an empty
# file would silently become a new, empty database).
SQLITE_HEADER_LEN = 100
_ADVICE = ("; it was left untouched: restore it from a backup, or move it away to start with "
           "no networks")  # fmt: skip


def _check_readonly(path: Path) -> None:
    """Read every page of an existing database without writing to it: a garbage or truncated
    file is refused before anything could change it. Without a -wal file beside it the main
    file is the whole database, and it is read as immutable: even a read-only open of a WAL
    database would create -wal and -shm files. With one (a crash, or a full disk at the last
    close) the database is the two together, read as such."""
    wal = path.with_name(path.name + "-wal")
    options = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    db = sqlite3.connect(f"file:{path}?{options}", uri=True)
    try:
        result = db.execute("PRAGMA quick_check").fetchone()
    finally:
        db.close()
    if result is None or result[0] != "ok":
        raise sqlite3.DatabaseError(f"integrity check: {result[0] if result else 'no answer'}")


@record
class MemberRow:
    address: str
    identity: str  # "" for a member prepared by address that never asked
    document: str  # as stored: a controller tells an unchanged member at a glance
    authorized: bool
    changed: int  # the network's member-write count at this row's last write
    addresses: str  # the addresses assigned, separated by spaces


@record
class MemberChanges:
    """What a controller needs to bring what it last read up to date, read at one moment: the
    member rows written after a count; and the counts that say whether it then holds what the
    store does (a deletion leaves no row to read)."""

    total: int  # member rows
    written: int  # the network's member-write count (-1: no such network)
    rows: tuple[MemberRow, ...]


class ControllerStore(Protocol):
    where: str  # what errors and the API name it by: a file, or a server without password

    def network_ids(self) -> list[str]: ...
    def get_network(self, network_id: str) -> tuple[dict, int] | None: ...
    def put_network(self, network_id: str, document: dict, revision: int) -> None: ...
    def delete_network(self, network_id: str) -> None: ...
    def get_member(self, network_id: str, address: str) -> tuple[str, dict, float] | None: ...
    def put_member(
        self,
        network_id: str,
        address: str,
        identity: str,
        document: dict,
        last_seen: float | None,
        new_revision: bool = False,
    ) -> None: ...
    def delete_member(self, network_id: str, address: str) -> None: ...
    def members(self, network_id: str) -> list[tuple[str, str, dict, float]]: ...
    def count_unauthorized(self, network_id: str) -> int: ...
    def member_changes(self, network_id: str, since: int) -> MemberChanges: ...
    def seen_since(self, network_id: str, since: float) -> list[str]: ...
    def bump_revision(self, network_id: str) -> int | None: ...
    def listen(self, on_change: Callable[[str], None]) -> None: ...
    def close(self) -> None: ...


def derived_member_columns(document: dict) -> tuple[str]:
    """The columns of a member row that come from its document: its addresses (separated by
    spaces), so the addresses taken are read without unpacking every document."""
    assigned = document.get("ipAssignments", [])
    return (" ".join(a for a in assigned if isinstance(a, str)) if isinstance(assigned, list)
            else "",)  # fmt: skip


class SqlStore:
    """The queries, written once with ``?`` placeholders, over what a subclass provides:
    ``_query`` (statement, parameters -> rows), ``_transaction`` and ``_changed``."""

    dialect = ""
    where = ""  # what the errors name: the file, or the server (never its password)

    def _query(self, statement: str, parameters: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _changed(self, network_id: str) -> None:
        """A network or one of its members changed (other controllers may want to know)."""

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(network id)`` when another process changes a network. Nothing to
        hear where no other process can write (SQLite: one node owns its file)."""

    def _migrate(self) -> None:
        with self._transaction():
            self._query(schema.render(schema.META, self.dialect, if_not_exists=True))
        row = self._query("SELECT value FROM meta WHERE key='schema_version'")
        version = int(row[0][0]) if row else 0
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"{self.where} has schema version {version}, newer than this oneservice "
                f"({schema.SCHEMA_VERSION}): upgrade oneservice; the database was left untouched"
            )
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            with self._transaction():
                for step in schema.migration(target, self.dialect):
                    if isinstance(step, schema.Derive):
                        self._derive_member_columns()
                    else:
                        self._query(step)
                self._query("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key)"
                            " DO UPDATE SET value=excluded.value", (str(target),))  # fmt: skip

    def _derive_member_columns(self) -> None:
        for network_id, address, text in self._query(
                "SELECT network_id, address, document FROM members"):  # fmt: skip
            self._query("UPDATE members SET addresses=? WHERE network_id=? AND address=?",
                        (derived_member_columns(json.loads(text))[0], network_id, address))

    def network_ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT id FROM networks ORDER BY id")]

    def get_network(self, network_id: str) -> tuple[dict, int] | None:
        rows = self._query("SELECT document, revision FROM networks WHERE id=?", (network_id,))
        return (json.loads(rows[0][0]), rows[0][1]) if rows else None

    def put_network(self, network_id: str, document: dict, revision: int) -> None:
        self._query("INSERT INTO networks (id, document, revision) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET"
                    " document=excluded.document, revision=excluded.revision",
                    (network_id, json.dumps(document), revision))  # fmt: skip
        self._changed(network_id)

    def bump_revision(self, network_id: str) -> int | None:
        """One more revision, in one statement: two controllers bumping at once make two."""
        rows = self._query("UPDATE networks SET revision=revision+1 WHERE id=? RETURNING revision",
                           (network_id,))  # fmt: skip
        self._changed(network_id)
        return rows[0][0] if rows else None

    def delete_network(self, network_id: str) -> None:
        with self._transaction():
            self._query("DELETE FROM members WHERE network_id=?", (network_id,))
            self._query("DELETE FROM networks WHERE id=?", (network_id,))
        self._changed(network_id)

    def get_member(self, network_id: str, address: str) -> tuple[str, dict, float] | None:
        """(identity text, document, last seen as epoch seconds or 0.0 for never)."""
        rows = self._query("SELECT identity, document, last_seen FROM members"
                           " WHERE network_id=? AND address=?", (network_id, address))  # fmt: skip
        return (rows[0][0], json.loads(rows[0][1]), rows[0][2] or 0.0) if rows else None

    def put_member(
        self,
        network_id: str,
        address: str,
        identity: str,
        document: dict,
        last_seen: float | None,
        new_revision: bool = False,
    ) -> None:
        """Insert or update; ``last_seen`` None keeps what was recorded (admin changes). The
        network's write count goes up in the same transaction, which holds its row until the
        end: rows are committed in the order of their counts, so a controller that has read
        up to one count has seen every row before it. With ``new_revision`` the network's
        revision goes up in it too: no controller sees the member changed at the old one."""
        (addresses,) = derived_member_columns(document)
        with self._transaction():
            counted = self._query(
                "UPDATE networks SET changes=changes+1"
                f"{', revision=revision+1' if new_revision else ''} WHERE id=?"
                " RETURNING changes", (network_id,))  # fmt: skip
            self._query(
                "INSERT INTO members (network_id, address, identity, document, authorized,"
                " last_seen, changed, addresses) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (network_id, address) DO UPDATE SET identity=excluded.identity,"
                " document=excluded.document, authorized=excluded.authorized,"
                " last_seen=COALESCE(excluded.last_seen, members.last_seen),"
                " changed=excluded.changed, addresses=excluded.addresses",
                (network_id, address, identity, json.dumps(document),
                 int(bool(document.get("authorized"))), last_seen,
                 counted[0][0] if counted else 0, addresses),
            )  # fmt: skip
        if new_revision:
            self._changed(network_id)

    def delete_member(self, network_id: str, address: str) -> None:
        self._query("DELETE FROM members WHERE network_id=? AND address=?",
                    (network_id, address))  # fmt: skip
        self._changed(network_id)

    def members(self, network_id: str) -> list[tuple[str, str, dict, float]]:
        rows = self._query("SELECT address, identity, document, last_seen FROM members"
                           " WHERE network_id=? ORDER BY address", (network_id,))  # fmt: skip
        return [(r[0], r[1], json.loads(r[2]), r[3] or 0.0) for r in rows]

    def member_changes(self, network_id: str, since: int) -> MemberChanges:
        """The rows written after count ``since`` (-1: all), with the counts, in one statement
        (one snapshot of the database)."""
        rows = self._query(
            "SELECT n.total, n.written, m.address, m.identity, m.document, m.authorized,"
            " m.changed, m.addresses FROM (SELECT (SELECT COUNT(*) FROM members WHERE"
            " network_id=?) AS total, (SELECT changes FROM networks WHERE id=?) AS written)"
            " AS n LEFT JOIN members AS m ON m.network_id=? AND m.changed > ?",
            (network_id, network_id, network_id, since))  # fmt: skip
        total, written = rows[0][:2]
        return MemberChanges(total, -1 if written is None else written, tuple(
            MemberRow(r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows if r[2] is not None))

    def seen_since(self, network_id: str, since: float) -> list[str]:
        """The members (with an identity) that asked for the config at ``since`` or later."""
        return [r[0] for r in self._query(
            "SELECT address FROM members WHERE network_id=? AND identity != '' AND last_seen >= ?"
            " ORDER BY address", (network_id, since))]  # fmt: skip

    def count_unauthorized(self, network_id: str) -> int:
        return self._query("SELECT COUNT(*) FROM members WHERE network_id=? AND authorized=0",
                           (network_id,))[0][0]  # fmt: skip


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror or exc}{_ADVICE}") from None
        if size is not None and size < SQLITE_HEADER_LEN:
            raise StoreError(f"{path}: {size} bytes, too short to be a database{_ADVICE}")
        try:
            if size is not None:
                _check_readonly(path)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable controller database ({exc}){_ADVICE}") from None

    def _query(self, statement: str, parameters: tuple = ()) -> list[tuple]:
        return self._db.execute(statement, parameters).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._db:
            self._db.execute("BEGIN")
            yield

    def close(self) -> None:
        self._db.close()
