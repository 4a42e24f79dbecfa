"""A real PostgreSQL server for the tests, started here and stopped afterwards: Debian's
postgresql binaries (initdb, pg_ctl) in a temporary directory, reached only through a Unix
socket in that directory (no TCP port at all), trust authentication for its own user.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user that
Debian's package creates. The server is ours: we stop it with pg_ctl and remove its
directory, also when a test fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def find_binaries() -> Path | None:
    """The directory with initdb and pg_ctl (the newest installed version), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        binaries = find_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self._bin = binaries
        self.directory = Path(tempfile.mkdtemp(prefix="oneservice-pg-"))
        self.data = self.directory / "data"
        self._user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self._databases = 0
        self._started = False
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self._user,
                      "--no-sync", "-E", "UTF8")  # fmt: skip
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-l",
                      str(self.directory / "server.log"), "-o",
                      f"-c listen_addresses='' -c unix_socket_directories='{self.directory}'"
                      " -c fsync=off -c max_connections=50", "start")  # fmt: skip
            self._started = True
        except Exception:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                cwd=self.directory)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.directory} dbname={dbname} user={self._user}"

    def new_database(self) -> str:
        """A fresh, empty database; its connection string."""
        import psycopg

        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.conninfo(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.conninfo(name)

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", "fast", "stop")
            self._started = False
        shutil.rmtree(self.directory, ignore_errors=True)
