"""Strict reverse-path filtering and the full tunnel (Linux).

With the IPv4 halves in the routing table, the kernel's reverse-path check of a datagram that
arrives on an uplink looks its source up and finds the tunnel, not the uplink. Strict mode
(rp_filter=1, RHEL's default) then drops the tunnel's own UDP, every reply with it, and the
tunnel carries nothing. The kernel applies the larger of conf/all and conf/<device>, so while
the halves are installed (tunnel on, held, or the family blocked) the uplinks alone are set to
loose mode (2): a source must still be routable, only not through the arrival interface.
Previous values are saved first (sysctls.py) and restored when the halves go, at stop, and at
the next start after a crash. IPv6 has no such sysctl. Blocking: run in an executor.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .sysctls import SysctlJournal, read_sysctl

STATE_FILE = "rp-filter.state"
STRICT, LOOSE = 1, 2
_ALL = "/proc/sys/net/ipv4/conf/all/rp_filter"
_DEVICE_PATH = re.compile(r"^/proc/sys/net/ipv4/conf/[^/]{1,15}/rp_filter$")


def device_path(device: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{device}/rp_filter"


class ReversePathFilter:
    def __init__(self, home: Path) -> None:
        self.journal = SysctlJournal(home / STATE_FILE, lambda p: bool(_DEVICE_PATH.match(p)))

    def apply(self, uplinks: Iterable[str]) -> list[str]:
        """Loose mode on these uplinks where strict mode is in force; the others get their
        saved values back (an empty list restores all). Returns what changed, for the log;
        SysctlError says what failed."""
        wanted = {device_path(name): name for name in uplinks}
        saved = self.journal.saved()
        gone = [p for p in saved if not os.path.exists(p)]  # the device and its setting
        if gone:
            self.journal.forget(gone)
        unwanted = [p for p in saved if p not in wanted and p not in gone]
        changes = [f"restored {line}" for line in self.journal.restore(unwanted)]
        if not wanted:
            return changes
        everywhere = int(read_sysctl(_ALL))
        for path, name in wanted.items():
            if path in saved or not os.path.exists(path):
                continue
            if max(everywhere, int(read_sysctl(path))) == STRICT:
                self.journal.set(path, str(LOOSE))
                changes.append(f"{name}: strict reverse-path filtering loosened (rp_filter "
                               f"{LOOSE}) while the full tunnel's routes are in place")
        return changes
