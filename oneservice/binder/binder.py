"""The binder: one UDP socket per physical interface and family, kept in step with the OS.

It re-reads the interface list whenever the OS reports a change (debounced) and on a slow
timer, lets the pure classifier and planner decide, and carries out the plan: open, close,
readdress. Each change is published as an event so the peer layer can act at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from ..monitor.changes import Change, deleted_links, interfaces_may_differ
from ..records import record
from ..uplinks import UplinkTable
from .gso import errno_name, gso_unsupported
from .interfaces import FAMILY_NAMES, BindPolicy, Interface, Verdict, classify_interfaces
from .plan import SocketKey, plan_sockets
from .sockets import BindError, PinFunction, SocketFactory, UdpOffloads, open_pinned_udp_socket

log = logging.getLogger(__name__)

# A socket that could not be opened is tried again this soon (each failure re-arms it), and
# at most this long apart while it keeps failing.
BIND_RETRY_S = 0.5
BIND_RETRY_MAX_S = 30.0
# Reads per wake-up per socket: enough to drain a burst, bounded so one busy socket cannot
# starve the rest of the loop.
MAX_READS_PER_WAKEUP = 64
MAX_DATAGRAM_BYTES = 65535
# An uplink without a default route (a LAN-only interface) is used when nothing better works.
NO_DEFAULT_ROUTE_RANK = 2**32


class Backend(Protocol):
    """What each per-OS module (linux.py, darwin.py, windows.py) provides."""

    REBIND_ON_ADDRESS_CHANGE: bool
    UDP_OFFLOADS: UdpOffloads  # the socket options and messages are the backend's
    def enumerate_interfaces(self) -> list[Interface]: ...
    def bind_host(self, family: int, address: str | None) -> str: ...

    pin_socket: PinFunction


@record
class LocalSocket:
    """A bound socket as the peer layer sees it. ``id`` is never reused, so a path on a socket
    that was replaced can never be confused with one on its successor."""

    id: int
    index: int
    interface: str
    family: int
    port: int


@record
class InterfaceUp:
    socket: LocalSocket
    addresses: tuple[str, ...]


@record
class InterfaceDown:
    socket: LocalSocket
    reason: str


@record
class AddressChanged:
    socket: LocalSocket
    old: tuple[str, ...]
    new: tuple[str, ...]


@record
class Reconciled:
    """A re-read of the interfaces is done, its socket events published. ``changed``: a
    socket came, went or was readdressed, or the uplinks differ from the last read
    (addresses, state, default-route metrics: which uplink to prefer may have changed)."""

    changed: bool


BinderEvent = InterfaceUp | InterfaceDown | AddressChanged | Reconciled
# Datagrams that arrived together from one address, in order (one GRO read, or one datagram).
# One read: its bytes, the size of each datagram in them (0: one datagram; with UDP GRO, all
# but a shorter last one: node/wire.split_coalesced), the socket, the sender.
DatagramHandler = Callable[[bytes, int, LocalSocket, tuple], None]


class _Bound:
    __slots__ = ("addresses", "bytes_received", "bytes_sent", "datagrams_received",
                 "datagrams_sent", "gro", "gso", "gso_off_reason", "gso_proven", "local",
                 "sock")  # fmt: skip

    def __init__(self, local: LocalSocket, sock: socket.socket, addresses: tuple[str, ...],
                 gso: bool) -> None:  # fmt: skip
        self.local = local
        self.sock = sock
        self.addresses = addresses
        self.gso = gso  # off for good only when the kernel or device cannot do it
        self.gso_off_reason = "" if gso else "not offered by this system"
        self.gso_proven = False  # a GSO send went through on this socket
        self.gro = False  # set once the socket accepted UDP GRO
        # What went through this uplink (GET /binder, GET /metrics).
        self.datagrams_sent = self.bytes_sent = 0
        self.datagrams_received = self.bytes_received = 0

    def as_dict(self) -> dict:
        """As GET /binder shows it."""
        local = self.local
        return {
            "id": local.id, "interface": local.interface, "index": local.index,
            "family": FAMILY_NAMES[local.family],
            "address": self.addresses[0] if self.addresses else None,
            "addresses": list(self.addresses), "port": local.port,
            "gso": self.gso, "gsoOffReason": self.gso_off_reason or None,
            "datagramsSent": self.datagrams_sent, "bytesSent": self.bytes_sent,
            "datagramsReceived": self.datagrams_received, "bytesReceived": self.bytes_received,
        }  # fmt: skip


def log_table(state: dict) -> None:
    """The port, the bound sockets and the skipped interfaces with why (Binder.state())."""
    log.info("UDP port %d", state["port"])
    for entry in state["bound"]:
        log.info(
            "  bound   %-15s index %-3d %s %s",
            entry["interface"], entry["index"], entry["family"], entry["address"],
        )  # fmt: skip
    for entry in state["skipped"]:
        family = f" {entry['family']}" if entry["family"] else ""
        log.info(
            "  skipped %-15s index %-3d%s: %s",
            entry["interface"], entry["index"], family, entry["reason"],
        )  # fmt: skip


class Binder:
    def __init__(
        self,
        *,
        port: int,
        policy: BindPolicy,
        backend: Backend,
        on_datagram: DatagramHandler,
        socket_factory: SocketFactory = socket.socket,
        table: UplinkTable | None = None,
        uplink_metrics: dict[str, int] | None = None,
    ) -> None:
        """``table``: where the peer layer reads our sockets and their ranks (we alone write
        it); ``uplink_metrics``: the user's metric per interface name (set_uplink_metrics)."""
        self.port = port
        self.table = UplinkTable() if table is None else table
        self._uplink_metrics = dict(uplink_metrics or {})
        self._policy = policy
        self._backend = backend
        self._on_datagram = on_datagram
        self._socket_factory = socket_factory
        self._bound: dict[SocketKey, _Bound] = {}
        self._by_id: dict[int, _Bound] = {}
        self._spares: dict[int, _Bound] = {}  # (open_spares)
        self._next_id = 1
        self._skipped: list[Verdict] = []
        # The physical interfaces in use, as last read (their subnets are the "LAN").
        self.uplinks: tuple[Interface, ...] = ()
        self._bind_failures: dict[SocketKey, str] = {}
        self._previous_failures: dict[SocketKey, str] = {}
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = BIND_RETRY_S
        self._subscribers: list[Callable[[BinderEvent], None]] = []
        self._deleted_indexes: set[int] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # The service prints the whole table once started; before that, per-socket logs
        # would only repeat it.
        self._change_log_level = logging.DEBUG
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="binder-enumerate"
        )
        self.counters = {
            "datagrams_received": 0,
            "datagrams_sent": 0,
            "receive_errors": 0,
            "send_errors": 0,
            "send_no_socket": 0,
            "gso_sends": 0,
            # GSO batches the kernel refused for themselves (e.g. EMSGSIZE: a segment over the
            # path's MTU), sent again one datagram per call; GSO stays on for the next batch.
            "gso_split": 0,
            "reconciles": 0,
            "spare_refused": 0,  # spare sockets the OS would not open (open_spares)
        }
        # Send errors by errno name: a degraded socket shows (GET /status counters).
        self.send_errors_by_errno: Counter[str] = Counter()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind what is there now. Raises BindError if the port is taken: that is a setup
        mistake the user must see at once, not a warning in a log. Changes after this come in
        through on_changes (subscribe it to the change monitor, oneservice/monitor/)."""
        try:
            await self._reconcile(fail_on_port_in_use=True)
        except BindError:
            self._release()
            raise
        self._change_log_level = logging.INFO
        self._tasks = [asyncio.create_task(self._reconcile_on_wake(), name="binder-reconcile")]

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._release()

    def _release(self) -> None:
        self.close_spares(list(self._spares))
        for key in list(self._bound):
            self._close(key, "stopping", publish=False)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- what the peer layer uses ------------------------------------------------------------

    def subscribe(self, callback: Callable[[BinderEvent], None]) -> None:
        self._subscribers.append(callback)

    def sockets(self) -> list[LocalSocket]:
        return [bound.local for bound in self._bound.values()]

    def send(self, socket_id: int, data: bytes, address: tuple) -> bool:
        """Send on one socket; False (and a counted error) if it is gone or the OS refuses."""
        bound = self._by_id.get(socket_id)
        if bound is None:
            self.counters["send_no_socket"] += 1
            return False
        try:
            bound.sock.sendto(data, address)
        except OSError as exc:
            self.counters["send_errors"] += 1
            self.send_errors_by_errno[errno_name(exc)] += 1
            return False
        self.counters["datagrams_sent"] += 1
        bound.datagrams_sent += 1
        bound.bytes_sent += len(data)
        return True

    def send_many(self, socket_id: int, datagrams: list[bytes], address: tuple) -> None:
        """Send a gso_batches() batch: one system call where the OS can split it."""
        bound = self._by_id.get(socket_id)
        if bound is None or len(datagrams) == 1 or not bound.gso:
            for datagram in datagrams:
                self.send(socket_id, datagram, address)
            return
        ancillary = self._backend.UDP_OFFLOADS.gso_ancillary(len(datagrams[0]))
        try:
            # One buffer per datagram: the kernel gathers them, no joined copy is made here.
            bound.sock.sendmsg(datagrams, ancillary, 0, address)
        except BlockingIOError as exc:
            self.counters["send_errors"] += len(datagrams)
            self.send_errors_by_errno[errno_name(exc)] += len(datagrams)
            return
        except OSError as exc:
            self.send_errors_by_errno[errno_name(exc)] += 1
            if gso_unsupported(exc, bound.gso_proven):
                bound.gso = False
                bound.gso_off_reason = f"{errno_name(exc)}: {exc.strerror or exc}"
                log.warning("socket %d (%s): no UDP GSO (%s); sending one datagram per call",
                            socket_id, bound.local.interface, bound.gso_off_reason)  # fmt: skip
            else:
                self.counters["gso_split"] += 1
            for datagram in datagrams:
                self.send(socket_id, datagram, address)
            return
        bound.gso_proven = True
        self.counters["datagrams_sent"] += len(datagrams)
        self.counters["gso_sends"] += 1
        bound.datagrams_sent += len(datagrams)
        bound.bytes_sent += sum(map(len, datagrams))

    def open_spares(self, socket_id: int, count: int) -> list[int]:
        """Up to ``count`` more sockets beside socket ``socket_id``, each on a port of its own,
        in no table: one peer's birthday attempt's (node/birthday.py). Fewer if refused."""
        uplink = self._by_id.get(socket_id)
        if uplink is None or socket_id in self._spares:
            return []
        local, opened = uplink.local, []
        host = self._backend.bind_host(local.family, (*uplink.addresses, None)[0])
        for _ in range(count):
            try:
                sock = open_pinned_udp_socket(
                    family=local.family, port=0, index=local.index, name=local.interface,
                    bind_host=host, pin=self._backend.pin_socket,
                    socket_factory=self._socket_factory,
                )  # fmt: skip
            except BindError:
                self.counters["spare_refused"] += 1  # (out of file descriptors, say)
                break
            spare = self._adopt(LocalSocket(self._next_id, local.index, local.interface,
                                            local.family, sock.getsockname()[1]),
                                sock, uplink.addresses)  # fmt: skip
            self._spares[spare.local.id] = spare
            opened.append(spare.local.id)
        return opened

    def close_spares(self, socket_ids: Iterable[int]) -> None:
        for socket_id in socket_ids:
            if (spare := self._spares.pop(socket_id, None)) is not None:
                del self._by_id[socket_id]
                asyncio.get_running_loop().remove_reader(spare.sock.fileno())
                spare.sock.close()

    def endpoints(self) -> list[str]:
        """Where each socket listens, "ip/port" (a controller tells members where it is)."""
        return [f"{b.addresses[0] if b.addresses else None}/{b.local.port}"
                for b in self._sorted()]  # fmt: skip

    def set_uplink_metrics(self, metrics: dict[str, int]) -> None:
        """The user's metric per interface name (settings.uplinkMetrics): the table's ranks
        follow at once (the caller tells the peer layer)."""
        self._uplink_metrics = dict(metrics)
        self._rank_all()

    def _rank(self, local: LocalSocket) -> int:
        """Lower carries the tunnel: the user's metric for the interface, else its default
        route's metric; an uplink without a default route comes last."""
        metric = self._uplink_metrics.get(local.interface)
        if metric is None:
            metric = next((u.default_metric for u in self.uplinks if u.index == local.index),
                          None)  # fmt: skip
        return NO_DEFAULT_ROUTE_RANK if metric is None else metric

    def _rank_all(self) -> None:
        for bound in self._bound.values():
            self.table.rank(bound.local.id, self._rank(bound.local))

    def _sorted(self) -> list[_Bound]:
        return sorted(self._bound.values(), key=lambda b: (b.local.index, b.local.family))

    def set_policy(self, policy: BindPolicy) -> None:
        """New taps or virtual subnets: re-classify at once."""
        self._policy = policy
        self._wake.set()

    def request_reconcile(self) -> None:
        self._wake.set()

    def state(self) -> dict:
        bound = [b.as_dict() for b in self._sorted()]
        skipped = [v.as_dict() for v in self._skipped] + [
            {"interface": key.name, "index": key.index, "family": FAMILY_NAMES[key.family],
             "reason": reason, "address": None} for key, reason in self._bind_failures.items()
        ]  # fmt: skip
        return {
            "port": self.port,
            "bound": bound,
            "spares": [{"id": i, "interface": b.local.interface} for i, b in self._spares.items()],
            "skipped": skipped,
            "counters": dict(self.counters),
            "sendErrors": dict(sorted(self.send_errors_by_errno.items())),
        }

    # --- keeping in step with the OS -----------------------------------------------------------

    def on_changes(self, changes: tuple[Change, ...]) -> bool:
        """A burst from the change monitor: re-read the interfaces if they may differ (True:
        a Reconciled event follows the re-read). Our own routing removed, or others' rules,
        leave the interfaces as they were."""
        if not interfaces_may_differ(changes):
            return False
        # Deleted links' sockets are replaced even if an interface with the same index, name
        # and address is already back by the time we look.
        self._deleted_indexes |= deleted_links(changes)
        self._wake.set()
        return True

    async def _reconcile_on_wake(self) -> None:
        while True:
            await self._wake.wait()
            # Events that arrive during the re-read set the flag again and cause another pass.
            self._wake.clear()
            try:
                await self._reconcile(fail_on_port_in_use=False)
            except Exception:
                log.exception("binder reconcile failed; retrying on the next change or poll")
                self._publish(Reconciled(changed=True))  # what it did is unknown

    def _retry_soon(self) -> None:
        """A socket could not be opened (out of file descriptors, say): try again shortly
        rather than at the next poll, tens of seconds away; less often while it keeps
        failing (another program may hold the port for good)."""
        if self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(self._retry_delay,
                                                                self._fire_retry)  # fmt: skip
            self._retry_delay = min(self._retry_delay * 2, BIND_RETRY_MAX_S)

    def _fire_retry(self) -> None:
        self._retry = None
        self._wake.set()

    async def _reconcile(self, fail_on_port_in_use: bool) -> None:
        deleted, self._deleted_indexes = self._deleted_indexes, set()
        loop = asyncio.get_running_loop()
        interfaces = await loop.run_in_executor(self._executor, self._backend.enumerate_interfaces)
        verdicts = classify_interfaces(interfaces, self._policy)
        usable = {v.index for v in verdicts if v.usable}
        before, self.uplinks = self.uplinks, tuple(i for i in interfaces if i.index in usable)
        self.counters["reconciles"] += 1
        self._skipped = [v for v in verdicts if not v.usable]
        plan = plan_sockets(
            {key: bound.addresses for key, bound in self._bound.items()},
            verdicts,
            deleted_indexes=deleted,
            rebind_on_address_change=self._backend.REBIND_ON_ADDRESS_CHANGE,
        )
        for key, reason in plan.close:
            self._close(key, reason)
        for verdict in plan.readdress:
            self._readdress(verdict)
        self._previous_failures, self._bind_failures = self._bind_failures, {}
        for verdict in plan.open:
            self._open(verdict, fail_on_port_in_use)
        if not self._bind_failures:
            self._retry_delay = BIND_RETRY_S
        self._rank_all()  # default routes may have changed
        if not fail_on_port_in_use:  # (at start the service reads the whole state instead)
            changed = bool(plan.close or plan.readdress or plan.open) or self.uplinks != before
            self._publish(Reconciled(changed))

    def _open(self, verdict: Verdict, fail_on_port_in_use: bool) -> None:
        assert verdict.family is not None
        key = SocketKey(verdict.index, verdict.name, verdict.family)
        try:
            sock = open_pinned_udp_socket(
                family=verdict.family,
                port=self.port,
                index=verdict.index,
                name=verdict.name,
                bind_host=self._backend.bind_host(verdict.family, verdict.address),
                pin=self._backend.pin_socket,
                socket_factory=self._socket_factory,
            )
        except BindError as exc:
            if exc.port_in_use and fail_on_port_in_use:
                raise
            if self._previous_failures.get(key) != str(exc):
                log.warning("%s", exc)  # once, not at every retry
            self._bind_failures[key] = str(exc)
            self._retry_soon()
            return
        if self.port == 0:
            # Port 0 picks a free port once; every later socket shares it.
            self.port = sock.getsockname()[1]
        local = LocalSocket(self._next_id, verdict.index, verdict.name, verdict.family, self.port)
        self._bound[key] = self._adopt(local, sock, verdict.addresses)
        self.table.opened(local.id, local.family, self._rank(local))
        log.log(
            self._change_log_level,
            "bound %s (index %d) %s %s port %d",
            verdict.name, verdict.index, FAMILY_NAMES[verdict.family], verdict.address, self.port,
        )  # fmt: skip
        self._publish(InterfaceUp(local, verdict.addresses))

    def _adopt(self, local: LocalSocket, sock: socket.socket,
               addresses: tuple[str, ...]) -> _Bound:  # fmt: skip
        """An opened socket, sent on by its id and read from now on."""
        self._next_id = local.id + 1
        offloads = self._backend.UDP_OFFLOADS
        bound = self._by_id[local.id] = _Bound(local, sock, addresses, offloads.available)
        if bound.gso:
            bound.gro = offloads.enable_gro(sock)  # else one datagram per read
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read, bound)
        return bound

    def _close(self, key: SocketKey, reason: str, publish: bool = True) -> None:
        bound = self._bound.pop(key)
        del self._by_id[bound.local.id]
        self.table.closed(bound.local.id)
        asyncio.get_running_loop().remove_reader(bound.sock.fileno())
        bound.sock.close()
        log.log(
            self._change_log_level,
            "closed %s (index %d) %s: %s",
            key.name, key.index, FAMILY_NAMES[key.family], reason,
        )  # fmt: skip
        if publish:
            self._publish(InterfaceDown(bound.local, reason))

    def _readdress(self, verdict: Verdict) -> None:
        assert verdict.family is not None
        bound = self._bound[SocketKey(verdict.index, verdict.name, verdict.family)]
        old, bound.addresses = bound.addresses, verdict.addresses
        log.info(
            "%s (index %d) %s addresses now %s",
            verdict.name, verdict.index, FAMILY_NAMES[verdict.family], ", ".join(verdict.addresses),
        )  # fmt: skip
        self._publish(AddressChanged(bound.local, old, verdict.addresses))

    def _publish(self, event: BinderEvent) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("binder event subscriber failed on %s", event)

    # --- the receive path (per datagram: no allocation beyond the datagram, no logging) ------

    def _read(self, bound: _Bound) -> None:
        """Up to MAX_READS_PER_WAKEUP reads; with UDP GRO a read may hold several datagrams
        of the size the kernel states."""
        sock, local, deliver, gro = bound.sock, bound.local, self._on_datagram, bound.gro
        offloads = self._backend.UDP_OFFLOADS
        ancillary_bytes, gro_size = offloads.gro_ancillary_bytes, offloads.gro_size
        received = received_bytes = 0
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                if gro:
                    data, ancillary, _, address = sock.recvmsg(MAX_DATAGRAM_BYTES, ancillary_bytes)
                else:
                    data, address = sock.recvfrom(MAX_DATAGRAM_BYTES)
                    ancillary = None
            except BlockingIOError:
                break
            except OSError:
                # An ICMP error queued on the socket (e.g. port unreachable) surfaces here.
                self.counters["receive_errors"] += 1
                continue
            size = gro_size(ancillary) if ancillary else 0
            received += -(-len(data) // size) if 0 < size < len(data) else 1
            received_bytes += len(data)
            deliver(data, size, local, address)
        self.counters["datagrams_received"] += received
        bound.datagrams_received += received
        bound.bytes_received += received_bytes
