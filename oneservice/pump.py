"""Moves bytes and time between the event loop and the node core, as aioquic's asyncio
adapter does for its connection: datagrams from the binder and packets from the taps go in;
datagrams to the binder, packets to the taps and the core's events come out, once per loop
iteration (a flush); one timer is armed at the earliest deadline. Identity checks the core
asks for (scrypt, ~40 ms each) run in one worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .binder.binder import LocalSocket
from .binder.gso import gso_batches
from .guard import Failures, guarded
from .identity import derive_address
from .node.core import NodeCore
from .node.events import NodeEvent
from .offload import SuperPacket

log = logging.getLogger("oneservice")


class CorePump:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        core: NodeCore,
        failures: Failures,
        *,
        send_many: Callable[[int, list[bytes], tuple], None],
        tap_of: Callable[[str], Any],
        on_event: Callable[[NodeEvent], None],
        after_flush: Callable[[], None],
        deadline: Callable[[], float],
        on_round: Callable[[float], None],
    ) -> None:
        """``tap_of``: a network's tap (or None); ``on_event``: each event of the core;
        ``after_flush``: the service's own work at the end of a flush (the control plane's
        messages); ``deadline``: the other components' earliest deadline; ``on_round``: the
        service's own work in a timer round (routing, the control plane), after the core's."""
        self.loop = loop
        self.core = core
        self.failures = failures
        self._send_many = send_many
        self._tap_of = tap_of
        self._on_event = on_event
        self._after_flush = after_flush
        self._deadline = deadline
        self._on_round = on_round
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = float("inf")
        # Address checks (scrypt, ~40 ms and 16 MiB each) of unknown initiators
        # (node/admission.py) and of members whose identity is in dispute
        # (node/vouching.py), and configs' signature checks: one thread, started at the first,
        # never on the event loop.
        self._worker: ThreadPoolExecutor | None = None

    # --- inputs ------------------------------------------------------------------------------

    @guarded
    def on_datagrams(self, data: bytes, size: int, local: LocalSocket, address: tuple) -> None:
        self.core.receive_coalesced(data, size, local.id, address, self.loop.time())
        self.schedule_flush()

    @guarded
    def on_tap_packets(self, network_id: str,
                       packets: list[tuple[bytes, int]] | SuperPacket) -> None:  # fmt: skip
        if isinstance(packets, SuperPacket):
            self.core.send_super_packet(network_id, packets, self.loop.time())
        else:
            self.core.send_packets(network_id, packets, self.loop.time())
        self.schedule_flush()

    def in_worker(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run blocking work (a check of an identity or a config's signature) off the loop."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="identity-check")
        return self.loop.run_in_executor(self._worker, function, *args)

    # --- outputs -----------------------------------------------------------------------------

    def schedule_flush(self) -> None:
        # One flush per loop iteration, after every reader that woke has been served.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    @guarded
    def flush(self) -> None:
        self._flush_scheduled = False
        core = self.core
        # Initiations after the transport datagrams every reader of this round delivered.
        core.process_handshakes(self.loop.time())
        for key in core.identity_requests():
            future = self.in_worker(derive_address, key[:32], key[32:])
            future.add_done_callback(functools.partial(self._identity_checked, key))
        send_many = self._send_many
        for socket_id, endpoint, batch in gso_batches(core.datagrams_to_send()):
            send_many(socket_id, batch, endpoint)
        for network_id, packets in core.packets_for_tap().items():
            tap = self._tap_of(network_id)
            if tap is not None:
                tap.write_many(packets)
        while (event := core.next_event()) is not None:
            self._on_event(event)
        self._after_flush()
        if core.datagrams_pending():
            self.schedule_flush()  # what handled the events above queued more
        self.rearm()

    @guarded
    def _identity_checked(self, key: bytes, future: Future) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("identity check failed: %s", error)
        self.core.identity_derived(key, None if error else future.result(), self.loop.time())
        self.schedule_flush()

    # --- the one timer -----------------------------------------------------------------------

    def start(self) -> None:
        self._on_timer()

    def stop(self) -> None:
        """No more rounds; the worker ends (checks still running are abandoned)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def rearm(self) -> None:
        """An input gave the core (or a join) an earlier deadline than the timer's."""
        timer = self._timer
        if timer is None or timer.cancelled():
            return  # not started, or stopping
        when = self._next_deadline()
        if when < self._timer_when:
            timer.cancel()
            self._arm(when)

    def _on_timer(self) -> None:
        """One timer round; whatever goes wrong in it is logged and counted, and the timer is
        armed again anyway: without it there would be no probes, rekeys or retries."""
        try:
            now = self.loop.time()
            self.core.handle_timer(now)
            self._on_round(now)
            self.flush()
        except Exception:
            self.failures.record("timer round failed (the timer goes on)")
        finally:
            try:
                when = self._next_deadline()
            except Exception:
                self.failures.record("timer deadline failed (the timer goes on)")
                when = self.loop.time() + 1.0
            self._arm(when)

    def _next_deadline(self) -> float:
        return min(self.core.next_timer(), self._deadline())

    def _arm(self, when: float) -> None:
        # The time is kept here: not every loop's timer handles say when they fire.
        self._timer_when = when
        self._timer = self.loop.call_at(when, self._on_timer)
