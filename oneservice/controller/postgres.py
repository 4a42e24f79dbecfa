"""The controller store on PostgreSQL (psycopg 3): one database that several controller
processes share, sharing one controller identity (docs/CONTROLLER.md says how to set up the
second). Every write says so on a NOTIFY channel; each controller listens, so a change made
through one is pushed to members by all of them.

The connection string comes from local.conf (`settings.controllerDatabase`); its password is
never logged or shown: errors name the server by host, port, database and user only.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator

from .store import SqlStore, StoreError

log = logging.getLogger("oneservice")

CHANNEL = "oneservice_controller"
# A query that takes longer than this fails (the event loop must not hang on a stuck server).
STATEMENT_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5
# The listener's wait between looks at whether it should stop.
LISTEN_POLL_S = 0.5


def shown(conninfo: str) -> str:
    """The server a connection string names, without its password (or anything else)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:
        return "the PostgreSQL server in settings.controllerDatabase (the string does not parse)"
    where = ", ".join(f"{key} {parts[key]}" for key in ("host", "port", "dbname", "user")
                      if parts.get(key))  # fmt: skip
    return f"PostgreSQL ({where or 'defaults'})"


class PostgresStore(SqlStore):
    dialect = "postgresql"

    def __init__(self, conninfo: str) -> None:
        try:
            import psycopg  # only controllers on PostgreSQL load it
        except ImportError:
            raise StoreError("settings.controllerDatabase needs psycopg, which is not installed:"
                             " pip install -e '.[postgresql]' in the checkout (scripts/run-"
                             "service's venv: .venv/bin/pip)") from None
        self._psycopg = psycopg
        self._conninfo = conninfo
        self.where = shown(conninfo)
        # Who wrote: a process hears its own NOTIFYs too, and skips them.
        self._token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self._db = self._connect()
        self._migrate()

    def _connect(self):
        try:
            return self._psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )  # fmt: skip
        except self._psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot connect: {_first_line(exc)}") from None

    def _query(self, statement: str, parameters: tuple = ()) -> list[tuple]:
        statement = statement.replace("?", "%s")
        for attempt in (1, 2):
            try:
                cursor = self._db.execute(statement, parameters)
                return cursor.fetchall() if cursor.description else []
            except self._psycopg.OperationalError as exc:
                # The server restarted or the connection broke: one new connection, one
                # retry; then the error is the caller's.
                if attempt == 2 or not self._db.closed:
                    raise StoreError(f"{self.where}: {_first_line(exc)}") from None
                self._db = self._connect()
            except self._psycopg.Error as exc:
                raise StoreError(f"{self.where}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._db.transaction():
                yield
        except self._psycopg.Error as exc:
            raise StoreError(f"{self.where}: {_first_line(exc)}") from None

    def _changed(self, network_id: str) -> None:
        self._query("SELECT pg_notify(?, ?)", (CHANNEL, f"{network_id} {self._token}"))

    def listen(self, on_change: Callable[[str], None]) -> None:
        """``on_change(network id)`` for every change another process makes, called from a
        thread of ours (the caller hands it to its event loop)."""
        connection = self._connect()
        connection.execute(f"LISTEN {CHANNEL}")

        def run() -> None:
            with connection:
                while not self._stop.is_set():
                    try:
                        for notice in connection.notifies(timeout=LISTEN_POLL_S):
                            network_id, _, token = notice.payload.partition(" ")
                            if token != self._token:
                                on_change(network_id)
                    except self._psycopg.Error as exc:
                        log.warning("%s: change notifications lost (%s); members still get "
                                    "changes at their next refresh", self.where,
                                    _first_line(exc))  # fmt: skip
                        return

        self._listener = threading.Thread(target=run, name="controller-listen", daemon=True)
        self._listener.start()

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=2 * LISTEN_POLL_S)
        self._db.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
