"""One change monitor for the node: what the OS says changed (links, addresses, routes,
rules), typed (changes.py), told to every subscriber: the binder, which re-reads the
interfaces, and the service, which has routing and the core react. Our own route and rule
writes are recognised by their marks (oneservice/marks.py) and cause nothing."""

from __future__ import annotations

import logging
import sys

from .monitor import ChangeMonitor, PollMonitor

log = logging.getLogger(__name__)


def open_change_monitor() -> ChangeMonitor:
    """The OS's event source (Linux netlink, the macOS routing socket), or polling where
    there is none or it cannot be opened. Needs the running event loop."""
    try:
        if sys.platform.startswith("linux"):
            from .linux import NetlinkMonitor

            return NetlinkMonitor()
        if sys.platform == "darwin":
            from .darwin import open_monitor

            return open_monitor()
    except OSError as exc:
        log.warning("no interface change events (%s); polling instead", exc)
    return PollMonitor()
