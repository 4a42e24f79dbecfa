"""The change monitor's common part: bursts delivered once to every subscriber, and a poll."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable

from .changes import Change, Poll, Unknown, worth_telling

log = logging.getLogger(__name__)

# Events come in bursts (a link, its addresses and routes): they are told together, this long
# after the first. 20 ms keeps the reaction well inside the 100 ms goal.
DEBOUNCE_S = 0.02
# Catches anything the event source missed; events do the real work.
POLL_INTERVAL_WITH_EVENTS_S = 30.0
# Without an event source, polling is all there is.
POLL_INTERVAL_WITHOUT_EVENTS_S = 5.0
MAX_READS_PER_WAKEUP = 256

Subscriber = Callable[[tuple[Change, ...]], None]


class ChangeMonitor:
    """Tells every subscriber each burst of changes once (our own writes left out), and a
    Poll every ``poll_interval``. A subscriber that raises does not stop the others."""

    def __init__(self, poll_interval: float = POLL_INTERVAL_WITHOUT_EVENTS_S) -> None:
        self._loop = asyncio.get_running_loop()
        self._subscribers: list[Subscriber] = []
        self._pending: list[Change] = []
        self._delivery: asyncio.TimerHandle | None = None
        self._poll_interval = poll_interval
        self._poll = self._loop.call_later(poll_interval, self._on_poll)
        self.bursts = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def note(self, changes: Iterable[Change]) -> None:
        """Changes just read from the OS: told with the rest of their burst."""
        told = [c for c in changes if worth_telling(c)]
        if not told:
            return
        self._pending.extend(told)
        if self._delivery is None:
            self._delivery = self._loop.call_later(DEBOUNCE_S, self._deliver)

    def close(self) -> None:
        self._poll.cancel()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None

    def _deliver(self) -> None:
        self._delivery = None
        changes, self._pending = tuple(dict.fromkeys(self._pending)), []
        self.bursts += 1
        for subscriber in self._subscribers:
            try:
                subscriber(changes)
            except Exception:
                log.exception("a change subscriber failed; the others still hear of it")

    def _on_poll(self) -> None:
        self._poll = self._loop.call_later(self._poll_interval, self._on_poll)
        self.note([Poll()])


class PollMonitor(ChangeMonitor):
    """Where the OS gives no change events (Windows, for now, or when opening them failed)."""


class DrainMonitor(ChangeMonitor):
    """Any message on an OS notification socket means "something changed, look": drained and
    told as Unknown. For sources whose messages need no parsing (the macOS routing socket)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(POLL_INTERVAL_WITH_EVENTS_S)
        self._sock = sock
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                self._sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                continue
        self.note([Unknown()])

    def close(self) -> None:
        super().close()
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
