"""The spare sockets of the core's birthday attempts (node/birthday.py): opened on the binder
when the core asks, closed when it says it is done with them. None are opened while a kill
switch is up: it lets out UDP from the node's own port only (routing/killswitch.py), so the
attempt fails at once instead of sending what the kill switch drops."""

from __future__ import annotations

from collections.abc import Callable

from .binder.binder import Binder
from .node.core import NodeCore
from .node.events import SparesDone, SparesWanted


class SpareFeed:
    def __init__(self, binder: Binder, core: NodeCore, kill_switch_up: Callable[[], bool],
                 clock: Callable[[], float]) -> None:  # fmt: skip
        self._binder = binder
        self._core = core
        self._kill_switch_up = kill_switch_up
        self._clock = clock

    def handle(self, event: SparesWanted | SparesDone) -> None:
        if isinstance(event, SparesDone):
            self._binder.close_spares(event.socket_ids)
            return
        up = self._kill_switch_up()
        spares = [] if up else self._binder.open_spares(event.socket_id, event.count)
        self._core.spares_opened(event.attempt, spares, self._clock())
