"""Captive portals: when the full tunnel's gateway cannot be reached from a network that has
just come up, is a hotel's or a train's login page in the way?

Only with `settings.captivePortalUrl`: an http:// URL whose host is an address (the node
resolves no names), which answers 204 No Content when the way to the internet is free (as
Android's generate_204 does). None is built in; without one nothing is probed. The probe goes
through a socket pinned to the physical interface (SO_BINDTODEVICE), so neither the tunnel's
routes nor its kill switch stand in its way (the kill switch lets exactly this address and
port through). Any other answer (a redirect, a login page) is a portal; no answer says
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable

from ..records import record
from ..settings import ProbeUrl

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
# A login window (`oneservice-cli portal open`) lasts this long unless asked otherwise.
DEFAULT_OPEN_S = 300
MAX_OPEN_S = 1800


@record
class ProbeResult:
    status: int | None  # None: no answer
    location: str = ""


def probe(url: ProbeUrl, device: str) -> ProbeResult:
    """Blocking: one HTTP GET through ``device`` only."""
    family = socket.AF_INET6 if url.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(PROBE_TIMEOUT_S)
            connection.connect((url.host, url.port))
            host = f"[{url.host}]" if url.version == 6 else url.host
            connection.sendall(f"GET {url.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                               "\r\nUser-Agent: oneservice captive portal probe\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return ProbeResult(None)
    return read_head(head)


def read_head(head: bytes) -> ProbeResult:
    """The status and Location of an HTTP response head (None: not one)."""
    lines = head.split(b"\r\n")
    fields = lines[0].split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        return ProbeResult(None)
    location = ""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"location":
            location = value.strip().decode("latin-1")[:200]
    return ProbeResult(int(fields[1]), location)


def portal_detail(result: ProbeResult) -> str | None:
    """What the answer says of a portal (None: no portal seen, or no answer)."""
    if result.status is None or result.status == 204:
        return None
    where = f" to {result.location}" if result.location else ""
    return f"the probe got HTTP {result.status}{where} instead of 204"


def loop_time() -> float:
    """The event loop's clock (monotonic), also when asked from outside the loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


class PortalWatch:
    """What captive portals were seen on which uplink, and the login window: while it is open
    no full tunnel (nor kill switch) is planned, so the user can log in directly."""

    def __init__(self, probe_url: Callable[[], ProbeUrl | None]) -> None:
        self._probe_url = probe_url  # settings.captivePortalUrl, as the settings are now
        self.portals: dict[str, str] = {}  # uplink -> what its probe saw
        # What each uplink was probed at (the machine's addresses then: a new network probes
        # again), and the probes under way.
        self._probed: dict[str, frozenset] = {}
        self._probing: asyncio.Task | None = None
        self.open_until = -math.inf  # the end of a login window, loop time

    def open(self, seconds: float) -> None:
        """A login window of ``seconds`` from now; 0 closes it."""
        self.open_until = loop_time() + seconds if seconds > 0 else -math.inf
        log.warning("captive portal: %s", f"direct traffic allowed for {seconds:.0f} s, then "
                    "the full tunnel comes back" if seconds > 0 else "login window closed")

    def is_open(self) -> bool:
        return loop_time() < self.open_until

    def window_over(self) -> bool:
        """Whether a login window ended since the last plan (then the tunnel comes back)."""
        if self.is_open() or self.open_until == -math.inf:
            return False
        self.open_until = -math.inf
        log.warning("captive portal: login window over, the full tunnel is back")
        return True

    def document(self) -> dict:
        left = max(0.0, self.open_until - loop_time())
        url = self._probe_url()
        return {"probeUrl": url.text if url else "", "detected": dict(self.portals),
                "loginWindowSecondsLeft": round(left)}  # fmt: skip

    def status(self, full_tunnel_wanted: bool) -> str:
        """What a network's status says of captive portals ("" if nothing)."""
        left = self.document()["loginWindowSecondsLeft"]
        if left:
            return (f"login window open: direct traffic allowed for {left} s more, then the "
                    "full tunnel comes back")  # fmt: skip
        if not full_tunnel_wanted or not self.portals:
            return ""
        return "; ".join(f"captive portal on {uplink}: {detail}"
                         for uplink, detail in sorted(self.portals.items()))  # fmt: skip

    def check(self, stranded: bool, uplinks: Iterable[str], addresses: frozenset) -> None:
        """When a full tunnel is wanted and its gateway cannot be reached (``stranded``):
        each uplink is probed once per network it is on (a change of addresses probes again)."""
        url = self._probe_url()
        if not stranded:
            self.portals.clear()
            self._probed.clear()
            return
        if url is None or (self._probing is not None and not self._probing.done()):
            return
        due = [u for u in uplinks if self._probed.get(u) != addresses]
        if not due:
            return
        for uplink in due:
            self._probed[uplink] = addresses
        self._probing = asyncio.get_running_loop().create_task(self._probe(url, due))

    async def _probe(self, url: ProbeUrl, uplinks: list[str]) -> None:
        loop = asyncio.get_running_loop()
        for uplink in uplinks:
            result = await loop.run_in_executor(None, probe, url, uplink)
            detail = portal_detail(result)
            if detail is None:
                self.portals.pop(uplink, None)
                continue
            if self.portals.get(uplink) != detail:
                log.warning("captive portal on %s: %s; `oneservice-cli portal open` lets "
                            "direct traffic through to log in", uplink, detail)  # fmt: skip
            self.portals[uplink] = detail
