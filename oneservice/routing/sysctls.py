"""Sysctls the node changes, each with its previous value saved first (Linux).

One state file per user of it in the home directory. A value is written to the file before
the sysctl is changed, so a crash right after can still be undone: a clean stop, and the next
start after a crash, put the saved values back. Blocking: run in an executor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from ..files import DamagedFile, WriteFailed, read_json_object, write_atomically


class SysctlError(Exception):
    """A sysctl could not be read, written or restored, or the state file is damaged."""


class StateFileDamaged(SysctlError, DamagedFile):
    """The state file cannot be used: at start this stops the node (nothing to restore from)."""


class SysctlJournal:
    def __init__(self, state_path: Path, allowed: Callable[[str], bool]) -> None:
        self.state_path = state_path
        self._allowed = allowed  # which /proc/sys paths this journal may hold

    def set(self, path: str, value: str) -> None:
        saved = self.saved()
        if path not in saved:
            saved[path] = read_sysctl(path)
            self._save(saved)
        write_sysctl(path, value)

    def restore(self, paths: Iterable[str] | None = None) -> list[str]:
        """Put saved values back (all, or only ``paths``); returns what was restored as
        "path = value" lines. SysctlError if one could not be."""
        saved = self.saved()
        chosen = dict(saved) if paths is None else {p: saved[p] for p in paths if p in saved}
        errors, restored = [], []
        for path, value in chosen.items():
            try:
                write_sysctl(path, value)
            except SysctlError as exc:
                errors.append(str(exc))
                continue
            restored.append(f"{path} = {value}")
            del saved[path]
        if chosen:
            self._store(saved)
        if errors:
            raise SysctlError("; ".join(errors))
        return restored

    def forget(self, paths: Iterable[str]) -> None:
        """Drop saved values without writing them (their sysctl is gone with its device)."""
        saved = self.saved()
        for path in paths:
            saved.pop(path, None)
        self._store(saved)

    def saved(self) -> dict[str, str]:
        """The saved values; StateFileDamaged (left as it is) if the file cannot be used."""
        advice = "; it holds the sysctl values to restore: fix or remove it"
        try:
            saved = read_json_object(self.state_path)
        except DamagedFile as exc:
            raise StateFileDamaged(f"{exc}{advice}") from None
        if saved is None:
            return {}
        if not all(
            isinstance(k, str) and self._allowed(k) and isinstance(v, str | int)
            for k, v in saved.items()
        ):
            raise StateFileDamaged(f"{self.state_path}: unexpected content{advice}")
        return {k: str(v) for k, v in saved.items()}

    def _store(self, saved: dict[str, str]) -> None:
        if saved:
            self._save(saved)
        else:
            self.state_path.unlink(missing_ok=True)

    def _save(self, saved: dict[str, str]) -> None:
        try:
            write_atomically(self.state_path, json.dumps(saved))
        except WriteFailed as exc:
            raise SysctlError(str(exc)) from None


def read_sysctl(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise SysctlError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except OSError as exc:
        raise SysctlError(f"cannot set {path} to {value}: {exc.strerror or exc}") from None
