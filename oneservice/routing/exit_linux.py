"""Apply an exit-node plan on Linux: forwarding sysctls and one nftables table of ours (which
also keeps any node from forwarding between its networks).

Before the first sysctl is changed, its previous value is written to `exit-node.state` in the
home directory (sysctls.py); a clean stop, and the next start after a crash, put those values
back and delete the table. Blocking calls (nft runs as a subprocess): run in an executor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from .exit_node import TABLE_NAME, ExitPlan, counters_of, nft_delete, nft_ruleset
from .nft import NftError, list_table, run_nft
from .sysctls import SysctlError, SysctlJournal

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
        forwarding = set(FORWARDING_SYSCTLS.values())
        self.journal = SysctlJournal(home / STATE_FILE, forwarding.__contains__)
        self._applied: tuple | None = None
        self._has_table = False

    def apply(self, plan: ExitPlan, uplinks: Iterable[str]) -> None:
        """Serve ``plan`` (or stop serving when it is not active); ExitNodeError says what
        failed."""
        key = (plan.sources, plan.families, plan.devices, plan.exit_devices, plan.lan,
               tuple(sorted(set(uplinks))))  # fmt: skip
        if key == self._applied:
            return
        if not plan.needs_table:
            self.restore()
            self._applied = key
            return
        try:
            for family in sorted(plan.families):
                self.journal.set(FORWARDING_SYSCTLS[family], "1")
        except SysctlError as exc:
            raise ExitNodeError(str(exc)) from None
        _nft(nft_ruleset(plan, key[-1]))
        self._applied = key
        self._has_table = True

    def counters(self) -> dict[str, int]:
        """What the table refused to forward so far (zeros while there is none)."""
        if not self._has_table:
            return counters_of({})
        try:
            return counters_of(list_table("inet", TABLE_NAME))
        except NftError:
            return counters_of({})

    def restore(self) -> None:
        """Undo everything: the table goes, sysctls get their saved values back."""
        errors = []
        self._has_table = False
        try:
            _nft(nft_delete(), missing_ok=True)  # without nft there is no table of ours
        except ExitNodeError as exc:
            errors.append(str(exc))
        try:
            for line in self.journal.restore():
                log.info("restored %s", line)
        except SysctlError as exc:
            errors.append(str(exc))
        if errors:
            raise ExitNodeError("; ".join(errors))
        self._applied = None


def _nft(document: dict, missing_ok: bool = False) -> None:
    try:
        run_nft(document, missing_ok)
    except NftError as exc:
        raise ExitNodeError(str(exc)) from None
