"""The Binder's lifecycle and event handling against an in-memory OS (real loopback sockets)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneservice.binder import linux
from oneservice.binder.binder import (
    NO_DEFAULT_ROUTE_RANK,
    AddressChanged,
    Binder,
    InterfaceDown,
    InterfaceUp,
)
from oneservice.binder.interfaces import BindPolicy, Interface, InterfaceAddress
from oneservice.binder.sockets import BindError
from oneservice.monitor.changes import (
    AddressChange,
    LinkChange,
    RouteChange,
    RuleChange,
    Unknown,
    worth_telling,
)
from oneservice.monitor.linux import change_in
from oneservice.monitor.monitor import PollMonitor
from oneservice.node.wire import split_coalesced
from oneservice.rtnetlink import Message, decode, encode, route_body, rule_body


class FakeBackend:
    """Interfaces are what the test says; 192.0.2.N binds as 127.0.0.N so sockets are real."""

    REBIND_ON_ADDRESS_CHANGE = False
    # Real loopback sockets: the offloads are Linux's own.
    UDP_OFFLOADS = linux.UDP_OFFLOADS

    def __init__(self, interfaces: list[Interface]) -> None:
        self.interfaces = interfaces
        self.notify = None  # the binder's on_changes: what the change monitor would call
        self.pinned: list[tuple[int, int]] = []

    def enumerate_interfaces(self) -> list[Interface]:
        return list(self.interfaces)

    def bind_host(self, family: int, address: str | None) -> str:
        assert address is not None
        return "127.0.0." + address.rsplit(".", 1)[1]

    def pin_socket(self, sock, family, index, name) -> None:
        self.pinned.append((index, family))


def nic(index: int, name: str, last_octet: int, **kw) -> Interface:
    address = InterfaceAddress(socket.AF_INET, f"192.0.2.{last_octet}", 24)
    return Interface(index=index, name=name, addresses=(address,), **kw)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RefusingSocket(socket.socket):
    """A real socket whose GSO sends fail with the errnos the test queues (0: goes through)."""

    refusals: ClassVar[list[int]] = []

    def sendmsg(self, *args):
        code = RefusingSocket.refusals.pop(0) if RefusingSocket.refusals else 0
        if code:
            raise OSError(code, os.strerror(code))
        return super().sendmsg(*args)


class Harness:
    def __init__(self, backend: FakeBackend, port: int = 0,
                 socket_factory=socket.socket) -> None:  # fmt: skip
        self.backend = backend
        self.events: list = []
        self.datagrams: list = []
        self.binder = Binder(
            port=port, policy=BindPolicy(), backend=backend,
            on_datagram=lambda read, size, local, addr: self.datagrams.extend(
                (data, local) for data in split_coalesced(read, size)
            ),
            socket_factory=socket_factory,
        )  # fmt: skip
        self.binder.subscribe(self.events.append)
        backend.notify = self.binder.on_changes

    async def until(self, condition, timeout: float = 2.0):
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.005)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_binds_usable_interfaces_on_one_port_and_reports_skips():
    async def scenario():
        backend = FakeBackend([nic(2, "eth0", 2), nic(3, "eth1", 3, up=False),
                               nic(4, "tun0", 4, kind="tun")])  # fmt: skip
        h = Harness(backend, port=free_port())
        await h.binder.start()
        state = h.binder.state()
        assert [(b["interface"], b["address"]) for b in state["bound"]] == [("eth0", "192.0.2.2")]
        assert {(s["interface"], s["reason"]) for s in state["skipped"]} == {
            ("eth1", "administratively down"), ("tun0", "virtual link kind 'tun'"),
        }  # fmt: skip
        assert backend.pinned == [(2, socket.AF_INET)]
        assert isinstance(h.events[0], InterfaceUp)
        await h.binder.stop()
        assert h.binder.sockets() == []

    run(scenario())


def test_port_zero_picks_one_port_for_all_sockets():
    async def scenario():
        h = Harness(FakeBackend([nic(2, "eth0", 2), nic(3, "eth1", 3)]), port=0)
        await h.binder.start()
        ports = {s.port for s in h.binder.sockets()}
        assert len(ports) == 1 and ports != {0} and h.binder.port in ports
        await h.binder.stop()

    run(scenario())


def test_change_hints_drive_open_close_and_readdress():
    async def scenario():
        backend = FakeBackend([nic(2, "eth0", 2)])
        h = Harness(backend, port=free_port())
        await h.binder.start()
        eth0 = h.binder.sockets()[0]

        backend.interfaces.append(nic(5, "wlan0", 5))
        backend.notify((LinkChange(0),))
        await h.until(lambda: len(h.binder.sockets()) == 2)

        backend.interfaces[0] = nic(2, "eth0", 9)
        backend.notify((LinkChange(0),))
        await h.until(lambda: any(isinstance(e, AddressChanged) for e in h.events))
        assert h.binder.sockets()[0] == eth0  # same socket, new address

        backend.interfaces.pop(1)
        backend.notify((LinkChange(0),))
        await h.until(lambda: len(h.binder.sockets()) == 1)
        down = [e for e in h.events if isinstance(e, InterfaceDown)]
        assert [(d.socket.interface, d.reason) for d in down] == [("wlan0", "interface gone")]
        await h.binder.stop()

    run(scenario())


def test_deleted_then_recreated_interface_gets_a_new_socket_id():
    async def scenario():
        backend = FakeBackend([nic(2, "eth0", 2)])
        h = Harness(backend, port=free_port())
        await h.binder.start()
        [before] = h.binder.sockets()
        backend.notify((LinkChange(2, deleted=True),))  # gone and back, same index
        await h.until(lambda: h.binder.sockets() and h.binder.sockets()[0].id != before.id)
        assert [type(e).__name__ for e in h.events] == [
            "InterfaceUp",
            "InterfaceDown",
            "InterfaceUp",
            "Reconciled",  # the re-read done: the service reacts to the whole burst once
        ]
        await h.binder.stop()

    run(scenario())


def test_without_an_event_source_polling_catches_changes():
    async def scenario():
        backend = FakeBackend([])
        h = Harness(backend, port=free_port())
        poll = PollMonitor(poll_interval=0.05)  # the monitor where the OS has no events
        poll.subscribe(h.binder.on_changes)
        await h.binder.start()
        backend.interfaces.append(nic(2, "eth0", 2))
        await h.until(lambda: h.binder.sockets())
        poll.close()
        await h.binder.stop()

    run(scenario())


def test_datagrams_are_delivered_with_their_socket_and_sends_never_raise():
    async def scenario():
        port = free_port()
        h = Harness(FakeBackend([nic(2, "eth0", 2), nic(3, "eth1", 3)]), port=port)
        await h.binder.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.sendto(b"hello-eth1", ("127.0.0.3", port))
            await h.until(lambda: h.datagrams)
            data, local = h.datagrams[0]
            assert (data, local.interface) == (b"hello-eth1", "eth1")
            assert h.binder.send(local.id, b"reply", peer.getsockname())
            assert peer.recvfrom(100)[0] == b"reply"
        assert h.binder.send(12345, b"x", ("127.0.0.1", 9)) is False
        assert h.binder.send(local.id, b"x", ("not an address", 9)) is False
        assert h.binder.counters["send_no_socket"] == 1
        assert h.binder.counters["send_errors"] == 1
        await h.binder.stop()

    run(scenario())


def gso_scenario(refusals: list[int], batches: int) -> tuple[Binder, dict, list[bytes]]:
    """Batches of three datagrams sent with GSO while the socket refuses as queued: the
    binder, its socket's state, and what arrived at a real peer."""

    async def scenario():
        RefusingSocket.refusals = list(refusals)
        h = Harness(FakeBackend([nic(2, "eth0", 2)]), port=free_port(),
                    socket_factory=RefusingSocket)  # fmt: skip
        await h.binder.start()
        local = h.binder.sockets()[0]
        arrived: list[bytes] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.2", 0))
            peer.settimeout(2)
            for batch in range(batches):
                datagrams = [bytes([batch, i]) * 600 for i in range(3)]
                h.binder.send_many(local.id, datagrams, peer.getsockname())
                arrived += [peer.recvfrom(2000)[0] for _ in datagrams]
        (bound,) = h.binder.state()["bound"]
        await h.binder.stop()
        return h.binder, bound, arrived

    return run(scenario())


def sent(batches: int) -> list[bytes]:
    return [bytes([b, i]) * 600 for b in range(batches) for i in range(3)]


def test_a_gso_batch_the_kernel_refuses_is_split_and_gso_stays_on():
    # EMSGSIZE (a relayed batch over the uplink's MTU) whenever it comes, and EINVAL once GSO
    # has worked on the socket: the batch's fault, not the socket's.
    for refusals in ([errno.EMSGSIZE], [0, errno.EMSGSIZE, errno.EMSGSIZE], [0, errno.EINVAL]):
        binder, bound, arrived = gso_scenario(refusals, batches=4)
        failed = sum(1 for code in refusals if code)
        assert arrived == sent(4), refusals
        assert bound["gso"] is True and bound["gsoOffReason"] is None, refusals
        assert binder.counters["gso_split"] == failed, refusals
        assert binder.counters["gso_sends"] == 4 - failed, "the batches after use GSO again"
        name = errno.errorcode[next(code for code in refusals if code)]
        assert binder.send_errors_by_errno == {name: failed}


def test_gso_is_turned_off_only_when_the_socket_cannot_do_it():
    # EIO: the device cannot checksum for GSO; EINVAL, ENOPROTOOPT at the first use: an old
    # kernel. Off for good, the reason said, nothing lost.
    for code in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
        binder, bound, arrived = gso_scenario([code], batches=2)
        assert (bound["gso"], binder.counters["gso_split"], arrived) == (False, 0, sent(2))
        assert bound["gsoOffReason"].startswith(errno.errorcode[code] + ": ")
        assert binder.counters["gso_sends"] == 0
    # EIO after GSO worked (the route moved to a device without checksumming): off too.
    binder, bound, _ = gso_scenario([0, errno.EIO], batches=3)
    assert (bound["gso"], binder.counters["gso_sends"]) == (False, 1)


def test_uplinks_are_ranked_by_the_users_metric_then_their_default_routes():
    async def scenario():
        h = Harness(FakeBackend([nic(2, "eth0", 2, default_metric=600),
                                 nic(3, "wlan0", 3, default_metric=100),
                                 nic(4, "lan0", 4)]), port=free_port())  # fmt: skip
        await h.binder.start()
        ids = {s.interface: s.id for s in h.binder.sockets()}
        before = dict(h.binder.table.ranks)
        h.binder.set_uplink_metrics({"eth0": 5})
        ranks, families = dict(h.binder.table.ranks), dict(h.binder.table.families)
        await h.binder.stop()
        return ids, before, ranks, families, h.binder.table

    ids, before, ranks, families, table = run(scenario())
    assert before == {ids["eth0"]: 600, ids["wlan0"]: 100, ids["lan0"]: NO_DEFAULT_ROUTE_RANK}
    assert ranks == {ids["eth0"]: 5, ids["wlan0"]: 100, ids["lan0"]: NO_DEFAULT_ROUTE_RANK}
    assert set(families) == set(ids.values())
    assert (table.families, table.ranks) == ({}, {}), "the closed sockets leave the table"


def test_port_in_use_at_start_is_an_error_and_leaves_nothing_open():
    async def scenario():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.3", 0))
            port = holder.getsockname()[1]
            h = Harness(FakeBackend([nic(2, "eth0", 2), nic(3, "eth1", 3)]), port=port)
            with pytest.raises(BindError, match=f"UDP port {port} is already in use on eth1"):
                await h.binder.start()
            assert h.binder.sockets() == []

    run(scenario())


def test_port_taken_later_is_reported_in_state_not_raised():
    async def scenario():
        port = free_port()
        backend = FakeBackend([nic(2, "eth0", 2)])
        h = Harness(backend, port=port)
        await h.binder.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.3", port))
            backend.interfaces.append(nic(3, "eth1", 3))
            backend.notify((LinkChange(0),))
            await h.until(lambda: any("already in use" in s["reason"]
                                      for s in h.binder.state()["skipped"]))  # fmt: skip
        assert [s.interface for s in h.binder.sockets()] == ["eth0"]
        await h.binder.stop()

    run(scenario())


def test_a_failing_subscriber_does_not_stop_the_others():
    async def scenario():
        h = Harness(FakeBackend([nic(2, "eth0", 2)]), port=free_port())

        def broken(event):
            raise RuntimeError("subscriber bug")

        h.binder._subscribers.insert(0, broken)
        await h.binder.start()
        assert isinstance(h.events[0], InterfaceUp)
        await h.binder.stop()

    run(scenario())


def test_gso_batches_group_what_one_send_can_carry():
    from oneservice.binder.gso import MAX_GSO_SEGMENTS, gso_batches

    to_b, to_c = ("192.0.2.2", 9993), ("192.0.2.3", 9993)
    full, short = b"x" * 1452, b"y" * 100
    batches = gso_batches([
        (1, to_b, [full, full], 0), (1, to_b, [short], 0),  # runs join; a shorter one closes
        (1, to_b, [full], 0),  # so this starts the next
        (2, to_b, [full], 0),  # another socket
        (2, to_c, [full], 0), (2, to_c, [full, full + b"z"], 0),  # a longer one cannot join
    ])  # fmt: skip
    assert [(s, a, [len(d) for d in items]) for s, a, items in batches] == [
        (1, to_b, [1452, 1452, 100]),
        (1, to_b, [1452]),
        (2, to_b, [1452]),
        (2, to_c, [1452, 1452]),
        (2, to_c, [1453]),
    ]
    many = gso_batches([(1, to_b, [full] * 60, 1452), (1, to_b, [full] * 40, 0)])
    assert [len(items) for _, _, items in many] == [44, 44, 12]  # 64 KB per send at most
    assert all(len(items) <= MAX_GSO_SEGMENTS for _, _, items in many)


def test_a_coalesced_read_splits_into_the_datagrams_the_kernel_merged():
    assert split_coalesced(b"a" * 10 + b"b" * 10 + b"c" * 4, 10) == [b"a" * 10, b"b" * 10, b"c" * 4]
    assert split_coalesced(b"one datagram", 0) == [b"one datagram"]  # no GRO size given
    assert split_coalesced(b"short", 10) == [b"short"]


def test_netlink_messages_are_read_by_type_number():
    assert change_in(Message(16, {"index": 4})) == LinkChange(4)
    assert change_in(Message(24, {"proto": 4})) == RouteChange(False, False)
    assert change_in(Message(25)) == RouteChange(ours=False, removed=True)
    assert change_in(Message(17, {"index": 7})) == LinkChange(7, deleted=True)
    assert change_in(Message(17)) == Unknown(), "which link? re-read all"
    assert change_in(Message(20, {"index": 3})) == AddressChange(3)
    assert change_in(Message(0)) == LinkChange(0)


def test_our_own_routes_and_rules_are_known_by_their_marks():
    """Our own writes cause nothing; one of ours removed is said so; others' routes and rules
    are re-read (they may move the underlay)."""

    def rule(kind: int, priority: int) -> Message:
        # As the kernel sends it: bytes, decoded.
        [message] = decode(encode(kind, 0, 0, rule_body(socket.AF_INET, 52, priority)))
        return message

    def route(kind: int, proto: int) -> Message:
        [message] = decode(encode(kind, 0, 0, route_body(socket.AF_INET, "10.0.0.0", 8, 254,
                                                         proto, oif=3)))  # fmt: skip
        return message

    assert change_in(route(24, 165)) == RouteChange(ours=True, removed=False)
    assert change_in(route(25, 165)) == RouteChange(True, removed=True)
    assert change_in(route(25, 4)) == RouteChange(False, removed=True)
    assert change_in(rule(32, 5210)) == RuleChange(ours=True, removed=False)
    assert change_in(rule(33, 5219)) == RuleChange(ours=True, removed=True)
    assert change_in(rule(33, 5220)) == RuleChange(False, True), "not ours: 5210-5219 only"
    assert change_in(rule(32, 100)) == RuleChange(ours=False, removed=False)
    # Our own writes appearing are told to nobody; one of ours removed is.
    assert not worth_telling(change_in(route(24, 165)))
    assert not worth_telling(change_in(rule(32, 5210)))
    assert worth_telling(change_in(rule(33, 5219)))


def test_a_socket_that_could_not_be_opened_is_retried_within_a_second():
    """Out of file descriptors when an uplink appears: bound as soon as one is free again,
    not at the next poll (30 s), with no further netlink event needed."""

    class ExhaustedOnce(FakeBackend):
        failures = 1

        def pin_socket(self, sock, family, index, name) -> None:
            if index == 3 and ExhaustedOnce.failures:
                ExhaustedOnce.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            super().pin_socket(sock, family, index, name)

    async def scenario():
        backend = ExhaustedOnce([nic(2, "eth0", 2)])
        h = Harness(backend, port=free_port())
        await h.binder.start()
        backend.interfaces.append(nic(3, "wlan0", 3))
        backend.notify((LinkChange(0),))  # the one event: wlan0 appeared
        await h.until(lambda: any(s["interface"] == "wlan0" and "Too many open files" in
                                  s["reason"] for s in h.binder.state()["skipped"]))  # fmt: skip
        started = asyncio.get_running_loop().time()
        await h.until(lambda: "wlan0" in [b["interface"] for b in h.binder.state()["bound"]],
                      timeout=1.0)  # fmt: skip
        assert asyncio.get_running_loop().time() - started < 1.0
        await h.binder.stop()

    run(scenario())


def reference_gso_batches(runs):
    """gso_batches as first written: one datagram at a time (the rule, without shortcuts)."""
    from oneservice.binder.gso import MAX_GSO_BYTES, MAX_GSO_SEGMENTS

    batches, open_batch = [], False
    for socket_id, address, datagrams, _ in runs:
        for datagram in datagrams:
            if open_batch:
                last_id, last_address, items = batches[-1]
                size = len(items[0])
                if (last_id == socket_id and last_address == address and len(datagram) <= size
                        and len(items) < MAX_GSO_SEGMENTS
                        and size * (len(items) + 1) <= MAX_GSO_BYTES):  # fmt: skip
                    items.append(datagram)
                    open_batch = len(datagram) == size
                    continue
            batches.append((socket_id, address, [datagram]))
            open_batch = True
    return batches


@st.composite
def runs_to_send(draw):
    """Runs as NodeCore makes them: any sizes (uniform size 0), or a super-packet's segments:
    all of one size but a shorter last one, and said so."""
    sizes = [1452, 1000, 100, 1453, 32000]
    runs = []
    for _ in range(draw(st.integers(0, 6))):
        socket_id = draw(st.sampled_from([1, 2]))
        address = draw(st.sampled_from([("192.0.2.2", 9993), ("192.0.2.3", 9993)]))
        if draw(st.booleans()):
            count = draw(st.integers(1, 80))
            datagrams = [b"x" * draw(st.sampled_from(sizes)) for _ in range(count)]
            runs.append((socket_id, address, datagrams, 0))
        else:
            size = draw(st.sampled_from(sizes))
            datagrams = [b"u" * size] * draw(st.integers(0, 80))
            datagrams.append(b"s" * draw(st.integers(1, size)))
            runs.append((socket_id, address, datagrams, size))
    return runs


@settings(max_examples=300, deadline=None)
@given(runs=runs_to_send())
def test_gso_batches_follow_the_rule_however_runs_come(runs):
    from oneservice.binder.gso import gso_batches

    assert gso_batches(runs) == reference_gso_batches(runs)


def test_a_runs_uniform_size_is_found_when_only_the_last_is_shorter():
    from oneservice.binder.gso import uniform_size

    assert uniform_size([b"x" * 9, b"x" * 9, b"x" * 9]) == 9
    assert uniform_size([b"x" * 9, b"x" * 9, b"x" * 4]) == 9
    assert uniform_size([b"x" * 9, b"x" * 4, b"x" * 9]) == 0, "a shorter one inside"
    assert uniform_size([b"x" * 9, b"x" * 9, b"x" * 12]) == 0, "a longer last one"
    assert uniform_size([b"x" * 4, b"x" * 9]) == 0
    assert uniform_size([b"x" * 9, b"x" * 4]) == 9
