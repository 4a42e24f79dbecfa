"""For what the event loop runs for us (readers, scheduled calls, done callbacks, timer rounds):
a failure is logged with its traceback and counted (``callbackFailures`` in GET /status), and
the node goes on, instead of vanishing into the loop's exception handler."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("oneservice")


class Failures:
    """One count of failed callbacks, shared by everything the loop runs for the service."""

    def __init__(self) -> None:
        self.count = 0

    def record(self, what: str, error: BaseException | None = None) -> None:
        """Logs ``error`` with its traceback (by default the one being handled: call from an
        ``except`` block) and counts it."""
        self.count += 1
        log.error("%s", what, exc_info=error or True)


def guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A method of an object with ``failures`` (a Failures) that never raises into the loop."""

    @functools.wraps(callback)
    def run(self: Any, *args: Any) -> None:
        try:
            callback(self, *args)
        except Exception:
            self.failures.record(f"{callback.__name__.strip('_')} failed (the node goes on)")

    return run
