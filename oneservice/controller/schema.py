"""The controller database's schema, described once: every store renders it in its own SQL,
and migrates forward through the same versions (a store never runs DDL of its own)."""

from __future__ import annotations

from ..records import record


@record
class Column:
    name: str
    kind: str  # "text", "integer" or "real"
    nullable: bool = False


@record
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]


@record
class Index:
    name: str
    table: str
    columns: tuple[str, ...]


@record
class AddColumn:
    """A column added to an existing table, ``default`` in the rows it had."""

    table: str
    column: Column
    default: str  # an SQL literal


@record
class Derive:
    """Columns whose values the store derives from each row's document (SqlStore's
    ``derived_member_columns``, the one function that does, at every write): filled in the
    rows a database had before they existed."""

    table: str


# What records the schema version: made before anything else, in every version.
META = Table("meta", (Column("key", "text"), Column("value", "text", nullable=True)), ("key",))

MIGRATIONS: dict[int, tuple[Table | Index | AddColumn | Derive, ...]] = {
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
    # A controller re-reads only the member rows that changed since it last read them, with
    # the addresses taken in a column of their own (not only inside each document).
    # ``changes`` counts a network's member writes; each row records the count of its last
    # write (``changed``).
    2: (
        AddColumn("networks", Column("changes", "integer"), "0"),
        AddColumn("members", Column("changed", "integer"), "0"),
        AddColumn("members", Column("addresses", "text"), "''"),
        Derive("members"),
        Index("members_changed", "members", ("network_id", "changed")),
        Index("members_seen", "members", ("network_id", "last_seen")),  # who is online
    ),
}  # fmt: skip
SCHEMA_VERSION = max(MIGRATIONS)

TYPES = {
    "sqlite": {"text": "TEXT", "integer": "INTEGER", "real": "REAL"},
    "postgresql": {"text": "TEXT", "integer": "BIGINT", "real": "DOUBLE PRECISION"},
}


def render(item: Table | Index | AddColumn, dialect: str, if_not_exists: bool = False) -> str:
    """One CREATE or ALTER statement in ``dialect`` ("sqlite" or "postgresql")."""
    guard = " IF NOT EXISTS" if if_not_exists else ""
    if isinstance(item, AddColumn):
        column = item.column
        null = "" if column.nullable else " NOT NULL"
        return (f"ALTER TABLE {item.table} ADD COLUMN {column.name}"
                f" {TYPES[dialect][column.kind]}{null} DEFAULT {item.default}")  # fmt: skip
    if isinstance(item, Index):
        return f"CREATE INDEX{guard} {item.name} ON {item.table} ({', '.join(item.columns)})"
    types = TYPES[dialect]
    columns = [f"{c.name} {types[c.kind]}{'' if c.nullable else ' NOT NULL'}"
               for c in item.columns]  # fmt: skip
    columns.append(f"PRIMARY KEY ({', '.join(item.primary_key)})")
    return f"CREATE TABLE{guard} {item.name} ({', '.join(columns)})"


def migration(version: int, dialect: str) -> list[str | Derive]:
    """What takes a database from ``version - 1`` to ``version``: statements, and the derived
    columns the store then fills."""
    return [item if isinstance(item, Derive) else render(item, dialect)
            for item in MIGRATIONS[version]]  # fmt: skip
