"""The controller database's schema, described once: every store renders it in its own SQL,
and migrates forward through the same versions (a store never runs DDL of its own)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text", "integer" or "real"
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: tuple[str, ...]


# What records the schema version: made before anything else, in every version.
META = Table("meta", (Column("key", "text"), Column("value", "text", nullable=True)), ("key",))

MIGRATIONS: dict[int, tuple[Table | Index, ...]] = {
    1: (
        Table("networks", (Column("id", "text"), Column("document", "text"),
                           Column("revision", "integer")), ("id",)),
        Table("members", (Column("network_id", "text"), Column("address", "text"),
                          Column("identity", "text"), Column("document", "text"),
                          Column("authorized", "integer"),
                          Column("last_seen", "real", nullable=True)),
              ("network_id", "address")),
        Index("members_pending", "members", ("network_id", "authorized")),
    ),
}  # fmt: skip
SCHEMA_VERSION = max(MIGRATIONS)

TYPES = {
    "sqlite": {"text": "TEXT", "integer": "INTEGER", "real": "REAL"},
    "postgresql": {"text": "TEXT", "integer": "BIGINT", "real": "DOUBLE PRECISION"},
}


def render(item: Table | Index, dialect: str, if_not_exists: bool = False) -> str:
    """One CREATE statement in ``dialect`` ("sqlite" or "postgresql")."""
    guard = " IF NOT EXISTS" if if_not_exists else ""
    if isinstance(item, Index):
        return f"CREATE INDEX{guard} {item.name} ON {item.table} ({', '.join(item.columns)})"
    types = TYPES[dialect]
    columns = [f"{c.name} {types[c.kind]}{'' if c.nullable else ' NOT NULL'}"
               for c in item.columns]  # fmt: skip
    columns.append(f"PRIMARY KEY ({', '.join(item.primary_key)})")
    return f"CREATE TABLE{guard} {item.name} ({', '.join(columns)})"


def migration(version: int, dialect: str) -> list[str]:
    """The statements that take a database from ``version - 1`` to ``version``."""
    return [render(item, dialect) for item in MIGRATIONS[version]]
