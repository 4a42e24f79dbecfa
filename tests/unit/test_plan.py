from __future__ import annotations

import socket

from oneservice.binder.interfaces import Verdict
from oneservice.binder.plan import SocketKey, plan_sockets

V4 = socket.AF_INET


def usable(index: int, name: str, *addresses: str) -> Verdict:
    return Verdict(index, name, V4, True, "physical", addresses[0], addresses)


def test_opens_new_and_closes_gone_with_reason():
    held = {SocketKey(2, "eth0", V4): ("192.0.2.2",), SocketKey(3, "wlan0", V4): ("192.0.2.3",)}
    plan = plan_sockets(
        held,
        [usable(2, "eth0", "192.0.2.2"), Verdict(3, "wlan0", None, False, "administratively down"),
         usable(4, "eth1", "203.0.113.2")],
    )  # fmt: skip
    assert [v.name for v in plan.open] == ["eth1"]
    assert plan.close == ((SocketKey(3, "wlan0", V4), "administratively down"),)
    assert plan.readdress == ()


def test_vanished_interface_and_vanished_family_have_distinct_reasons():
    held = {SocketKey(2, "eth0", V4): ("192.0.2.2",), SocketKey(3, "eth1", V4): ("192.0.2.3",)}
    v6_only = Verdict(3, "eth1", socket.AF_INET6, True, "physical", "2001:db8::1", ("2001:db8::1",))
    plan = plan_sockets(held, [v6_only])
    assert dict(plan.close) == {
        SocketKey(2, "eth0", V4): "interface gone",
        SocketKey(3, "eth1", V4): "no usable address of this family left",
    }


def test_readdress_keeps_the_socket_unless_the_os_binds_addresses():
    held = {SocketKey(2, "eth0", V4): ("192.0.2.2",)}
    verdicts = [usable(2, "eth0", "192.0.2.7")]
    plan = plan_sockets(held, verdicts)
    assert (plan.open, plan.close, [v.address for v in plan.readdress]) == ((), (), ["192.0.2.7"])
    plan = plan_sockets(held, verdicts, rebind_on_address_change=True)
    assert plan.close == ((SocketKey(2, "eth0", V4), "address changed"),)
    assert [v.address for v in plan.open] == ["192.0.2.7"]


def test_deleted_interface_is_replaced_even_if_it_looks_unchanged():
    held = {SocketKey(2, "eth0", V4): ("192.0.2.2",)}
    plan = plan_sockets(held, [usable(2, "eth0", "192.0.2.2")], deleted_indexes={2})
    assert plan.close == ((SocketKey(2, "eth0", V4), "interface deleted"),)
    assert [v.name for v in plan.open] == ["eth0"]


def test_nothing_to_do_when_in_step():
    held = {SocketKey(2, "eth0", V4): ("192.0.2.2",)}
    plan = plan_sockets(held, [usable(2, "eth0", "192.0.2.2")])
    assert (plan.open, plan.close, plan.readdress) == ((), (), ())
