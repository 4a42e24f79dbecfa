"""Where a peer sees us: the whoami exchange over its session (messages "whoami"/"whoamir",
docs/PROTOCOL.md), as the leak test asks its gateway. Each question waits at most
ANSWER_WAIT_S for its answer, which arrives as an event of the core."""

from __future__ import annotations

import asyncio

from .messages import AddressAnswer
from .node.core import ControlReceived, NodeCore
from .node.events import NodeEvent
from .pump import CorePump
from .randomness import random_u32
from .routing.leaktest import GatewayAnswer

ANSWER_WAIT_S = 3.0


class AddressQueries:
    def __init__(self, core: NodeCore, pump: CorePump) -> None:
        self._core = core
        self._pump = pump
        self._waiting: dict[int, asyncio.Future] = {}  # by query id

    async def ask(self, address: str) -> GatewayAnswer | None:
        """(Where the peer sees us, its uplink addresses, whether it forwards for us as exit
        node: None if it does not say), or None without an answer."""
        loop = self._pump.loop
        query_id = random_u32()
        answer = self._waiting[query_id] = loop.create_future()
        try:
            if not self._core.ask_address(address, query_id, loop.time()):
                return None
            self._pump.schedule_flush()
            return await asyncio.wait_for(answer, timeout=ANSWER_WAIT_S)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(query_id, None)

    def answered(self, event: NodeEvent) -> bool:
        """Whether the event is an answer (taken here, whether still awaited or not)."""
        if not isinstance(event, ControlReceived) or not isinstance(event.message, AddressAnswer):
            return False
        waiting = self._waiting.get(event.message.query_id)
        if waiting is not None and not waiting.done():
            message = event.message
            waiting.set_result((message.seen, message.exits, message.forwards))
        return True
