"""Apply an exit-node plan on Linux: forwarding sysctls and one nftables table of ours.

Before the first sysctl is changed, its previous value is written to `exit-node.state` in the
home directory; a clean stop, and the next start after a crash, put those values back and
delete the table. Blocking calls (nft runs as a subprocess): run in an executor.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .exit_node import ExitPlan, nft_delete, nft_ruleset

log = logging.getLogger(__name__)

STATE_FILE = "exit-node.state"
FORWARDING_SYSCTLS = {
    4: "/proc/sys/net/ipv4/ip_forward",
    6: "/proc/sys/net/ipv6/conf/all/forwarding",
}


class ExitNodeError(Exception):
    pass


class LinuxExitNode:
    def __init__(self, home: Path) -> None:
        self.state_path = home / STATE_FILE
        self._applied: tuple | None = None

    def apply(self, plan: ExitPlan, uplinks: Iterable[str]) -> None:
        """Serve ``plan`` (or stop serving when it is not active); ExitNodeError says what
        failed."""
        key = (plan.sources, plan.families, tuple(sorted(set(uplinks))))
        if key == self._applied:
            return
        if not plan.active:
            self.restore()
            self._applied = key
            return
        saved = self._saved()
        for family in sorted(plan.families):
            path = FORWARDING_SYSCTLS[family]
            if path not in saved:
                saved[path] = _read(path)
                self._save(saved)  # before the change: a crash right after can still undo it
            _write(path, "1")
        _nft(nft_ruleset(plan, key[2]))
        self._applied = key

    def restore(self) -> None:
        """Undo everything: the table goes, sysctls get their saved values back."""
        errors = []
        try:
            _nft(nft_delete(), missing_ok=True)  # without nft there is no table of ours
        except ExitNodeError as exc:
            errors.append(str(exc))
        for path, value in self._saved().items():
            try:
                _write(path, value)
                log.info("restored %s = %s", path, value)
            except OSError as exc:
                errors.append(f"cannot restore {path} to {value}: {exc.strerror or exc}")
        if errors:
            raise ExitNodeError("; ".join(errors))
        self.state_path.unlink(missing_ok=True)
        self._applied = None

    def _saved(self) -> dict[str, str]:
        try:
            saved = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ExitNodeError(
                f"{self.state_path} is unreadable ({exc}); it holds the sysctl values to "
                "restore: fix or remove it"
            ) from None
        if not isinstance(saved, dict) or not all(k in FORWARDING_SYSCTLS.values() for k in saved):
            raise ExitNodeError(f"{self.state_path}: unexpected content; fix or remove it")
        return {k: str(v) for k, v in saved.items()}

    def _save(self, saved: dict[str, str]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(saved), encoding="utf-8")
        os.replace(tmp, self.state_path)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _nft(document: dict, missing_ok: bool = False) -> None:
    try:
        result = subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps(document),
                                capture_output=True, text=True, timeout=10)  # fmt: skip
    except FileNotFoundError:
        if missing_ok:
            return
        raise ExitNodeError("nft not found: install the nftables package") from None
    except subprocess.TimeoutExpired:
        raise ExitNodeError("nft did not answer within 10 s") from None
    if result.returncode != 0:
        raise ExitNodeError(f"nft failed: {result.stderr.strip() or result.returncode}")
