"""Where a controller keeps networks and members. SQLite by default (`controller.db` in the
home), behind the small ControllerStore interface so a server database can back large
deployments later. Networks and members are stored as JSON documents with a few indexed
columns; the schema is versioned and migrated forward on open."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Protocol

from ..files import DamagedFile

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: [
        "CREATE TABLE networks (id TEXT PRIMARY KEY, document TEXT NOT NULL,"
        " revision INTEGER NOT NULL)",
        "CREATE TABLE members (network_id TEXT NOT NULL, address TEXT NOT NULL,"
        " identity TEXT NOT NULL, document TEXT NOT NULL, authorized INTEGER NOT NULL,"
        " last_seen REAL, PRIMARY KEY (network_id, address))",
        "CREATE INDEX members_pending ON members (network_id, authorized)",
    ],
}


class StoreError(DamagedFile):
    """The controller's database cannot be used; the message says which file and why."""


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


class ControllerStore(Protocol):
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
    ) -> None: ...
    def delete_member(self, network_id: str, address: str) -> None: ...
    def members(self, network_id: str) -> list[tuple[str, str, dict, float]]: ...
    def count_unauthorized(self, network_id: str) -> int: ...


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
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

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this oneservice "
                f"({SCHEMA_VERSION}): upgrade oneservice; the database was left untouched"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._db:
                self._db.execute("BEGIN")
                for statement in _MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target),)
                )

    def close(self) -> None:
        self._db.close()

    def network_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT id FROM networks ORDER BY id")]

    def get_network(self, network_id: str) -> tuple[dict, int] | None:
        row = self._db.execute(
            "SELECT document, revision FROM networks WHERE id=?", (network_id,)
        ).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def put_network(self, network_id: str, document: dict, revision: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO networks VALUES (?, ?, ?)",
            (network_id, json.dumps(document), revision),
        )

    def delete_network(self, network_id: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM members WHERE network_id=?", (network_id,))
            self._db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def get_member(self, network_id: str, address: str) -> tuple[str, dict, float] | None:
        """(identity text, document, last seen as epoch seconds or 0.0 for never)."""
        row = self._db.execute(
            "SELECT identity, document, last_seen FROM members WHERE network_id=? AND address=?",
            (network_id, address),
        ).fetchone()
        return (row[0], json.loads(row[1]), row[2] or 0.0) if row else None

    def put_member(
        self,
        network_id: str,
        address: str,
        identity: str,
        document: dict,
        last_seen: float | None,
    ) -> None:
        """Insert or update; ``last_seen`` None keeps what was recorded (admin changes)."""
        self._db.execute(
            "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (network_id, address) DO UPDATE SET identity=excluded.identity,"
            " document=excluded.document, authorized=excluded.authorized,"
            " last_seen=COALESCE(excluded.last_seen, members.last_seen)",
            (network_id, address, identity, json.dumps(document),
             int(bool(document.get("authorized"))), last_seen),
        )  # fmt: skip

    def delete_member(self, network_id: str, address: str) -> None:
        self._db.execute(
            "DELETE FROM members WHERE network_id=? AND address=?", (network_id, address)
        )

    def members(self, network_id: str) -> list[tuple[str, str, dict, float]]:
        return [
            (r[0], r[1], json.loads(r[2]), r[3] or 0.0)
            for r in self._db.execute(
                "SELECT address, identity, document, last_seen FROM members"
                " WHERE network_id=? ORDER BY address",
                (network_id,),
            )
        ]

    def count_unauthorized(self, network_id: str) -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM members WHERE network_id=? AND authorized=0", (network_id,)
        ).fetchone()[0]
