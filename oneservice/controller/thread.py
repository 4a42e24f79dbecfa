"""The controller and its database on a thread of their own.

Every query of the controller's store (SQLite or PostgreSQL) can block: a busy disk, a slow
server. None of them runs on the event loop, which carries the tunnel; they run here, one at a
time and in the order they were asked, on one thread: SQLite's connection is used only by the
thread that opened it, and the controller's caches need no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .controller import Controller

T = TypeVar("T")


class ControllerThread:
    def __init__(self, opener: Callable[[], Controller]) -> None:
        self._opener = opener
        self._executor: ThreadPoolExecutor | None = None
        self._controller: Controller | None = None
        # Where the store is ("sqlite:<path>", a server without its password): shown in
        # GET /status, readable from the loop without a query.
        self.where = ""

    @property
    def opened(self) -> bool:
        return self._controller is not None

    def open_now(self) -> None:
        """Open the store before the node runs (blocking: nothing else runs yet); a damaged
        store raises here, as any damaged node-wide file does."""
        self._thread().submit(self._open).result()

    async def call(self, function: Callable[..., T], *args: Any, create: bool = False) -> T:
        """``function(controller, *args)`` on the controller's thread. ``create``: open the
        store first if this node is not a controller yet; else it must be one."""
        return await asyncio.wrap_future(self.submit(function, *args, create=create))

    def submit(self, function: Callable[..., T], *args: Any, create: bool = False) -> Future[T]:
        """As call, for callers on the loop that cannot wait: a concurrent future."""
        def run() -> T:
            if create:
                self._open()
            if self._controller is None:
                raise RuntimeError("no controller is open")
            return function(self._controller, *args)

        return self._thread().submit(run)

    def close(self) -> None:
        """Wait for what was asked, then close the store (its connection on its thread)."""
        if self._executor is None:
            return
        if self._controller is not None:
            self._executor.submit(self._controller.store.close).result()
        self._executor.shutdown(wait=True)
        self._executor = None

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="controller")
        return self._executor

    def _open(self) -> None:
        if self._controller is None:
            self._controller = self._opener()
            self.where = self._controller.store.where
