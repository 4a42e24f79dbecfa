"""One node per home directory and per network namespace, decided before anything is touched.

A second node would fight the first: at start it removes "leftovers" that are the first
node's live routes, and on an exit node it deletes the nft table and restores the sysctls
under a running gateway. So two locks are taken, before anything touches the kernel or the
home's state, and held for the life of the process (the kernel drops both when it ends, even
on SIGKILL, so a crash never leaves a stale lock):

- the home: ``flock`` on ``<home>/oneservice.lock``, which holds the owner's PID;
- the kernel marks of this network namespace (marks.py: route protocol 165, rules 5210-5219,
  table 52100, the nft tables ``inet oneservice``, ``inet oneservice-dns`` and
  ``inet oneservice-killswitch``): a listening Unix socket with an abstract name. Abstract
  names live per network namespace,
  exactly the scope of those marks, and the kernel tells a newcomer the owner's PID
  (``SO_PEERCRED``). Linux only; elsewhere the home lock alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import sys
from pathlib import Path

from .marks import FULL_TUNNEL_TABLE, ROUTE_PROTOCOL, RULE_PRIORITIES

LOCK_FILE = "oneservice.lock"
NAMESPACE_LOCK_NAME = b"\0oneservice: kernel marks of this network namespace"


class AlreadyRunning(Exception):
    """Another node holds the home or this namespace; the message names its PID."""


class InstanceLock:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._file: int | None = None
        self._socket: socket.socket | None = None

    def acquire(self) -> None:
        """AlreadyRunning if another node holds either lock; nothing is changed then."""
        self._lock_home()
        try:
            self._lock_namespace()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._file is not None:
            os.close(self._file)  # closing drops the flock
            self._file = None

    def _lock_home(self) -> None:
        path = self.home / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another oneservice (PID {holder}) is running with home {self.home}: stop it "
                "first (nothing was changed)"
            ) from None
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # a full disk: the lock holds, only the PID is unsaid
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._file = fd

    def _lock_namespace(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lock.bind(NAMESPACE_LOCK_NAME)
        except OSError:
            lock.close()
            holder = _listener_pid(NAMESPACE_LOCK_NAME)
            raise AlreadyRunning(
                f"another oneservice (PID {holder}) already manages this network namespace's "
                f"routes, rules and firewall tables (route protocol {ROUTE_PROTOCOL}, rules "
                f"{RULE_PRIORITIES[0]}-{RULE_PRIORITIES[-1]}, table {FULL_TUNNEL_TABLE}, nft "
                "tables inet oneservice*): one node per host; stop it first (nothing was "
                "changed)"
            ) from None
        lock.listen(1)
        self._socket = lock


def _listener_pid(name: bytes) -> str:
    """The PID of the process listening on an abstract Unix socket, as the kernel says."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        probe.connect(name)
        credentials = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                       struct.calcsize("3i"))  # fmt: skip
        pid, _, _ = struct.unpack("3i", credentials)
        return str(pid)
    return "unknown"
