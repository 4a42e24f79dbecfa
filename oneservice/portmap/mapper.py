"""One port mapping per IPv4 uplink, asked of that uplink's default gateway and nothing else:
PCP first, then NAT-PMP, then UPnP IGD (the description found by asking the gateway itself,
then miniupnpc). A mapping is renewed at half its lifetime and deleted at stop; a gateway
that maps nothing is asked again later, less and less often. Each exchange runs in a worker
thread with short timeouts; the service's one timer says when the next one is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..randomness import random_sample
from ..records import record
from . import protocols, ssdp
from .protocols import Mapped, PortMapError

log = logging.getLogger("oneservice")

LIFETIME_S = 7200  # asked for; the router may grant less
RETRY_S = (30.0, 120.0, 600.0, 1800.0)  # after failures in a row, then the last again
RENEW_FRACTION = 0.5
ANSWER_TIMEOUTS_S = (0.25, 0.5)  # one request, then one resend (RFC 6886's first steps)
STOP_WAIT_S = 3.0  # a stop waits this long at most for exchanges in flight and deletions
UPNP_DESCRIPTION = "oneservice"
PCP, NATPMP, UPNP = "pcp", "nat-pmp", "upnp"


@record
class Uplink:
    """Where to ask: an uplink's socket, interface, IPv4 address and default gateway."""

    socket_id: int
    interface: str
    address: str
    gateway: str


@dataclass
class _State:
    uplink: Uplink
    mapping: Mapped | None = None
    protocol: str = ""
    nonce: bytes = b""  # PCP: the same for renewals and the delete
    due: float = 0.0  # the next attempt or renewal
    failures: int = 0
    error: str = ""
    busy: bool = False
    tried: list[str] = field(default_factory=list)


class PortMapper:
    def __init__(self, port: Callable[[], int], on_mapped: Callable[[int, str | None], None],
                 clock: Callable[[], float], enabled: bool = True) -> None:  # fmt: skip
        """``on_mapped(socket_id, "ip/port" or None)``: where peers can reach that socket
        from outside its NAT, or no longer."""
        self._port = port
        self._on_mapped = on_mapped
        self._clock = clock
        self.enabled = enabled
        self._states: dict[Uplink, _State] = {}
        self._tasks: set[asyncio.Task] = set()
        self.on_due: Callable[[], None] = lambda: None  # the service re-arms its timer

    def update(self, uplinks: list[Uplink]) -> None:
        """The uplinks now (each with an IPv4 default gateway): new ones are asked at once,
        gone ones lose their mapping."""
        wanted = set(uplinks) if self.enabled else set()
        for uplink in set(self._states) - wanted:
            state = self._states.pop(uplink)
            if state.mapping is not None:
                self._on_mapped(uplink.socket_id, None)
                self._spawn(self._delete(state))
        for uplink in wanted - set(self._states):
            self._states[uplink] = _State(uplink, nonce=os.urandom(protocols.PCP_NONCE_BYTES))
        self.check(self._clock())

    def set_enabled(self, enabled: bool, uplinks: list[Uplink]) -> None:
        self.enabled = enabled
        self.update(uplinks)

    def deadline(self) -> float:
        return min((s.due for s in self._states.values() if not s.busy), default=float("inf"))

    def check(self, now: float) -> None:
        for state in self._states.values():
            if not state.busy and state.due <= now:
                state.busy = True
                self._spawn(self._attempt(state))

    async def stop(self) -> None:
        """Delete every mapping, those an exchange in flight is making too (it runs on in its
        thread whatever we do: it is let finish, and its mapping deleted at once, as for a
        gone uplink). Bounded: a router that does not answer is not waited for."""
        deadline = time.monotonic() + STOP_WAIT_S
        states, self._states = list(self._states.values()), {}
        in_flight = list(self._tasks)
        if in_flight:
            await asyncio.wait(in_flight, timeout=STOP_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        deletes = [self._delete(s) for s in states if s.mapping is not None]
        if deletes:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*deletes, return_exceptions=True),
                                       max(0.1, deadline - time.monotonic()))  # fmt: skip

    def status(self) -> list[dict]:
        """GET /status: per uplink, which protocol mapped which port, or why none did."""
        now = self._clock()
        found = []
        for state in sorted(self._states.values(), key=lambda s: s.uplink.interface):
            entry = {"interface": state.uplink.interface, "gateway": state.uplink.gateway,
                     "internalPort": self._port()}  # fmt: skip
            if state.mapping is not None:
                entry.update(protocol=state.protocol,
                             external=f"{state.mapping.external_ip}/{state.mapping.external_port}",
                             renewIn=max(0, round(state.due - now)))  # fmt: skip
            else:
                entry.update(protocol=None, error=state.error or "asking",
                             retryIn=max(0, round(state.due - now)))  # fmt: skip
            found.append(entry)
        return found

    # --- the exchanges ---------------------------------------------------------------------

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, state: _State) -> None:
        port = self._port()
        try:
            protocol, mapped = await asyncio.to_thread(map_port, state.uplink, port,
                                                       state.nonce, state.protocol)  # fmt: skip
        except Exception as exc:  # (a router's answer or the OS: a failure to retry, never a crash)
            if self._states.get(state.uplink) is not state:
                return
            state.failures += 1
            state.error = str(exc)
            state.due = self._clock() + RETRY_S[min(state.failures, len(RETRY_S)) - 1]
            if state.mapping is not None:  # a renewal failed: peers must not keep it
                state.mapping = None
                self._on_mapped(state.uplink.socket_id, None)
            if state.failures == 1:
                log.info("port mapping on %s: none (%s)", state.uplink.interface, exc)
        else:
            if self._states.get(state.uplink) is not state:
                await asyncio.to_thread(unmap_port, state.uplink, port, state.nonce, protocol,
                                        mapped)  # fmt: skip
                return
            before = state.mapping
            changed = before is None or (before.external_ip, before.external_port) != (
                mapped.external_ip, mapped.external_port)
            state.mapping, state.protocol, state.failures, state.error = mapped, protocol, 0, ""
            state.due = self._clock() + max(30.0, mapped.lifetime * RENEW_FRACTION)
            if changed:
                external = f"{mapped.external_ip}/{mapped.external_port}"
                log.info("port mapping on %s: %s -> port %d (%s, %d s)",
                         state.uplink.interface, external, port, protocol, mapped.lifetime)
                self._on_mapped(state.uplink.socket_id, external)
        finally:
            state.busy = False
            self.on_due()

    async def _delete(self, state: _State) -> None:
        if state.mapping is not None:
            with contextlib.suppress(PortMapError, OSError):
                await asyncio.to_thread(unmap_port, state.uplink, self._port(), state.nonce,
                                        state.protocol, state.mapping)  # fmt: skip


# --- blocking, in a worker thread -------------------------------------------------------------


def map_port(uplink: Uplink, port: int, nonce: bytes, first: str = "") -> tuple[str, Mapped]:
    """(protocol, mapping) from the first protocol the gateway answers; PortMapError naming
    why each failed."""
    order = [PCP, NATPMP, UPNP]
    if first in order:
        order.remove(first)
        order.insert(0, first)
    errors = []
    for protocol in order:
        try:
            return protocol, _MAP[protocol](uplink, port, nonce)
        except (PortMapError, OSError) as exc:
            errors.append(f"{protocol}: {exc}")
    raise PortMapError("; ".join(errors))


def unmap_port(uplink: Uplink, port: int, nonce: bytes, protocol: str, mapped: Mapped) -> None:
    if protocol == PCP:
        _exchange(uplink, protocols.pcp_map_request(uplink.address, port, 0, nonce,
                                                    mapped.external_port),
                  protocols.SERVER_PORT, lambda data: None)  # fmt: skip
    elif protocol == NATPMP:
        _exchange(uplink, protocols.natpmp_map_request(port, 0), protocols.SERVER_PORT,
                  lambda data: None)  # fmt: skip
    elif protocol == UPNP:
        _upnp(uplink).deleteportmapping(mapped.external_port, "UDP")


def _pcp(uplink: Uplink, port: int, nonce: bytes) -> Mapped:
    request = protocols.pcp_map_request(uplink.address, port, LIFETIME_S, nonce, port)
    return _exchange(uplink, request, protocols.SERVER_PORT,
                     lambda data: protocols.parse_pcp_map_response(data, nonce, port))


def _natpmp(uplink: Uplink, port: int, nonce: bytes) -> Mapped:
    address = _exchange(uplink, protocols.natpmp_address_request(), protocols.SERVER_PORT,
                        protocols.parse_natpmp_address)  # fmt: skip
    external_port, lifetime = _exchange(
        uplink, protocols.natpmp_map_request(port, LIFETIME_S, port), protocols.SERVER_PORT,
        lambda data: protocols.parse_natpmp_map(data, port))
    return Mapped(address, external_port, lifetime)


def _upnp(uplink: Uplink):
    """miniupnpc, on the description the gateway itself names."""
    try:
        import miniupnpc
    except ImportError:
        raise PortMapError("miniupnpc is not installed") from None
    url = _exchange(uplink, ssdp.m_search(uplink.gateway), ssdp.SSDP_PORT,
                    lambda data: ssdp.description_url(data, uplink.gateway), wait_s=(1.0,))
    if url is None:
        raise PortMapError("no UPnP description on the gateway")
    client = miniupnpc.UPnP()
    try:
        client.selectigd(url)
    except Exception as exc:  # miniupnpc raises plain Exception with the library's message
        raise PortMapError(f"UPnP: {exc}") from None
    return client


def _upnp_map(uplink: Uplink, port: int, nonce: bytes) -> Mapped:
    client = _upnp(uplink)
    try:
        external_ip = protocols.checked_external(str(client.externalipaddress()))
        for external_port in (port, *random_sample(range(20000, 60000), 3)):
            if client.addportmapping(external_port, "UDP", uplink.address, port,
                                     UPNP_DESCRIPTION, "", LIFETIME_S):  # fmt: skip
                return Mapped(str(external_ip), external_port, LIFETIME_S)
    except Exception as exc:  # (as above)
        raise PortMapError(f"UPnP: {exc}") from None
    raise PortMapError("UPnP: every port asked for was refused")


_MAP = {PCP: _pcp, NATPMP: _natpmp, UPNP: _upnp_map}


def _exchange(uplink: Uplink, request: bytes, server_port: int, parse: Callable,
              wait_s: tuple[float, ...] = ANSWER_TIMEOUTS_S):  # fmt: skip
    """Send ``request`` to the gateway from our address on the uplink (pinned to its
    interface) and return ``parse`` of the first answer from the gateway's port that parses
    (PortMapError if none came)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if hasattr(socket, "SO_BINDTODEVICE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                            uplink.interface.encode())  # fmt: skip
        sock.bind((uplink.address, 0))
        error: Exception = PortMapError("no answer")
        for timeout in wait_s:
            sock.sendto(request, (uplink.gateway, server_port))
            until = time.monotonic() + timeout
            try:
                while (left := until - time.monotonic()) > 0:  # (others' datagrams: no reset)
                    sock.settimeout(left)
                    data, source = sock.recvfrom(4096)
                    if source != (uplink.gateway, server_port):
                        continue
                    try:
                        return parse(data)
                    except PortMapError as exc:
                        error = exc
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                raise PortMapError("refused (no server on the gateway)") from None
        raise error
