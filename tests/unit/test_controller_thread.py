"""The controller's SQL runs on a thread of its own, never on the event loop (issue 26,
item 7): a slow database (a busy disk, a far PostgreSQL server) must not stall the tunnel."""

from __future__ import annotations

import asyncio
import time

from oneservice.api import Routes
from oneservice.controller.store import SQLiteStore
from oneservice.httpserver import Request, parse_head
from oneservice.identity import Identity
from oneservice.service import Service
from oneservice.settings import Settings
from tests.integration.nodes import write_home

SLOW_S = 0.5


def test_a_slow_controller_database_does_not_stall_the_event_loop(tmp_path, monkeypatch):
    identity = Identity.generate()
    home = write_home(tmp_path / "home", identity, [])
    real_put = SQLiteStore.put_network

    def slow_put(self, *args):
        time.sleep(SLOW_S)  # every write takes this long
        return real_put(self, *args)

    monkeypatch.setattr(SQLiteStore, "put_network", slow_put)
    new_id = identity.address + "______"

    async def run() -> tuple[dict, list[float]]:
        service = Service(home, Settings())
        routes = Routes(service)
        request = Request(parse_head(f"POST /controller/network/{new_id} HTTP/1.1\r\n\r\n"
                                     .encode()), b'{"name": "slow"}', "127.0.0.1")  # fmt: skip
        request.params = {"nwid": new_id}
        gaps: list[float] = []

        async def ticker() -> None:  # what the loop does for the tunnel meanwhile
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        try:
            created = await routes.controller_network_post(request)
        finally:
            ticking.cancel()
            service.controller.close()
        return created, gaps

    created, gaps = asyncio.run(run())
    assert created["name"] == "slow" and created["id"].startswith(identity.address)
    assert len(gaps) > 10, "the loop ran while the database wrote"
    assert max(gaps) < SLOW_S / 2, f"the loop stood still for {max(gaps):.2f} s"
