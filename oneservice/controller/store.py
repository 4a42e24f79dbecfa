"""Where a controller keeps networks and members. SQLite by default (`controller.db` in the
home), behind the small ControllerStore interface so a server database can back large
deployments later. Networks and members are stored as JSON documents with a few indexed
columns; the schema is versioned and migrated forward on open."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Protocol

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


class StoreError(Exception):
    """The controller's database cannot be used; the message says which file and why."""


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
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{path} is not a usable controller database ({exc}); it was left untouched. "
                "Restore it from a backup, or move it away to start with no networks."
            ) from exc

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
