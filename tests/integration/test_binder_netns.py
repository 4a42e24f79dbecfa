"""The binder in real namespaces: what it binds, that pinned sockets bypass catch-all routes,
that it follows interface changes as events, and that it survives churn without leaking."""

from __future__ import annotations

import time

import pytest

from tests.integration.drivers import BinderDriver, UdpSink, send_udp
from tests.testbed import Host, Testbed, wait_until

pytestmark = pytest.mark.integration


def two_uplinks(bed: Testbed) -> tuple[Host, Host]:
    """node --wifi0/cell0-- router; both uplinks dual-stack."""
    node, router = bed.host("node"), bed.host("router", forwarding=True)
    bed.link(
        node,
        "wifi0",
        router,
        "r-wifi",
        ["192.0.2.2/24", "2001:db8:1::2/64"],
        ["192.0.2.1/24", "2001:db8:1::1/64"],
    )
    bed.link(
        node,
        "cell0",
        router,
        "r-cell",
        ["203.0.113.2/24", "2001:db8:2::2/64"],
        ["203.0.113.1/24", "2001:db8:2::1/64"],
    )
    return node, router


def add_tun(host: Host, name: str, cidr: str) -> None:
    host.ip("tuntap", "add", "dev", name, "mode", "tun")
    host.ip("addr", "add", cidr, "dev", name)
    host.ip("link", "set", name, "up")


def test_binds_each_physical_uplink_once_per_family_and_nothing_virtual(testbed):
    node, router = two_uplinks(testbed)
    add_tun(node, "tun0", "10.99.0.1/24")
    add_tun(node, "wg0", "10.98.0.1/24")  # a tunnel named like WireGuard
    testbed.link(node, "docker0", router, "r-dock", ["198.51.100.2/28"], ["198.51.100.1/28"])
    testbed.link(node, "vpnlink0", router, "r-vpn", ["198.51.100.18/28"], ["198.51.100.17/28"])
    testbed.link(node, "ethvirt", router, "r-virt", ["10.7.0.5/24"], ["10.7.0.1/24"])
    testbed.link(node, "tapok0", router, "r-tapok", ["198.51.100.34/28"], ["198.51.100.33/28"])

    driver = BinderDriver(
        node, "--port", "0", "--blacklist", "vpn", "--allowlist", "tapok0",
        "--virtual-subnet", "10.7.0.0/16",
    )  # fmt: skip
    bound = driver.bound()
    assert set(bound) == {
        ("wifi0", "IPv4"), ("wifi0", "IPv6"), ("cell0", "IPv4"), ("cell0", "IPv6"),
        ("tapok0", "IPv4"),
    }  # fmt: skip
    ports = {entry["port"] for entry in bound.values()}
    assert len(ports) == 1 and ports != {0}, f"all sockets share one real port, got {ports}"
    assert bound[("wifi0", "IPv4")]["address"] == "192.0.2.2"
    assert bound[("cell0", "IPv6")]["address"] == "2001:db8:2::2"

    skipped = driver.skipped()
    assert skipped["lo"] == ["loopback"]
    assert skipped["tun0"] == ["virtual link kind 'tun'"]
    assert skipped["wg0"] == ["virtual link kind 'tun'"]
    assert skipped["docker0"] == ["name matches blacklisted prefix 'docker'"]
    assert skipped["vpnlink0"] == ["name matches blacklisted prefix 'vpn'"]
    assert "address 10.7.0.5 is inside virtual network 10.7.0.0/16" in skipped["ethvirt"]
    # IPv4-only veths still carry an automatic fe80:: address, which is never bound.
    assert "only link-local addresses" in skipped["tapok0"]


@pytest.mark.parametrize(
    ("catch_all", "server_net", "server_addr", "router_addr", "node_addr", "gateway"),
    [
        (("0.0.0.0/1", "128.0.0.0/1"), "198.51.100.1/24", "198.51.100.10", "192.0.2.1",
         "192.0.2.2", "192.0.2.1"),
        (("::/1", "8000::/1"), "2001:db8:5::1/64", "2001:db8:5::10", "2001:db8:1::1",
         "2001:db8:1::2", "2001:db8:1::1"),
    ],
    ids=["ipv4", "ipv6"],
)  # fmt: skip
def test_pinned_socket_leaves_on_its_uplink_despite_catch_all_routes_into_a_tun(
    testbed, catch_all, server_net, server_addr, router_addr, node_addr, gateway
):
    node, router = two_uplinks(testbed)
    server = testbed.host("server")
    prefix = "/24" if "." in server_addr else "/64"
    testbed.link(router, "r-srv", server, "srv0", [server_net], [server_addr + prefix])
    server.ip("route", "add", "default", "via", server_net.split("/")[0])
    node.ip("route", "add", "default", "via", gateway, "dev", "wifi0")
    add_tun(node, "tun0", "10.99.0.1/24")
    node.ip("addr", "add", "fd99::1/64", "dev", "tun0") if ":" in server_addr else None
    for half in catch_all:
        node.ip("route", "add", half, "dev", "tun0")
    # The catch-all really captures ordinary traffic: the kernel routes the server into tun0.
    assert "dev tun0" in node.ip("route", "get", server_addr).stdout

    sink = UdpSink(server, server_addr, 7000)
    driver = BinderDriver(node)
    family = "IPv6" if ":" in server_addr else "IPv4"
    wifi = driver.bound()[("wifi0", family)]

    send_udp(node, server_addr, 7000, "unpinned")  # goes into the tun, never to the server
    assert driver.send(wifi["id"], server_addr, 7000, "pinned")
    received = wait_until(lambda: sink.received, what="the pinned datagram at the server")
    time.sleep(0.3)  # give a wrongly routed unpinned datagram time to show up too
    assert [(r["data"], r["from"][0]) for r in sink.received] == [("pinned", node_addr)]
    assert received[0]["from"][1] == wifi["port"]


def test_follows_interface_changes_as_they_happen(testbed):
    node, router = two_uplinks(testbed)
    driver = BinderDriver(node)
    first = driver.bound()
    assert set(first) == {("wifi0", "IPv4"), ("wifi0", "IPv6"), ("cell0", "IPv4"),
                          ("cell0", "IPv6")}  # fmt: skip

    testbed.link(node, "extra0", router, "r-extra", ["198.51.100.2/24"], ["198.51.100.1/24"])
    driver.wait_bound(lambda b: ("extra0", "IPv4") in b, "extra0 to be bound")

    node.ip("link", "set", "extra0", "down")
    driver.wait_bound(lambda b: ("extra0", "IPv4") not in b, "extra0 to be released when down")
    assert driver.skipped()["extra0"] == ["administratively down"]

    node.ip("link", "set", "extra0", "up")
    up_again = driver.wait_bound(lambda b: ("extra0", "IPv4") in b, "extra0 back when up")
    socket_id = up_again[("extra0", "IPv4")]["id"]

    # One batch, as a DHCP client renumbers: within one debounce window. (Two separate
    # commands may let a reconcile see no address at all, and close the socket, rightly.)
    node.run(
        "ip",
        "-batch",
        "-",
        input="addr del 198.51.100.2/24 dev extra0\naddr add 198.51.100.3/24 dev extra0\n",
    )
    readdressed = driver.wait_bound(
        lambda b: b.get(("extra0", "IPv4"), {}).get("address") == "198.51.100.3",
        "the new address of extra0",
    )
    # Bound to the device, not the address: the socket survives readdressing.
    assert readdressed[("extra0", "IPv4")]["id"] == socket_id
    assert any(
        (e["event"], e.get("socket"), e.get("new")) == ("address", socket_id, ["198.51.100.3"])
        for e in driver.events
    )

    router.ip("link", "set", "r-extra", "down")  # carrier lost, as when wifi disassociates
    driver.wait_bound(lambda b: ("extra0", "IPv4") not in b, "extra0 released on carrier loss")
    assert driver.skipped()["extra0"] == ["no carrier (link down)"]
    router.ip("link", "set", "r-extra", "up")
    driver.wait_bound(lambda b: ("extra0", "IPv4") in b, "extra0 back with carrier")

    node.ip("link", "del", "extra0")
    driver.wait_bound(lambda b: ("extra0", "IPv4") not in b, "extra0 released when deleted")
    assert "extra0" not in driver.skipped()


def test_uplink_recreated_with_same_name_and_address_gets_a_fresh_socket(testbed):
    """ZeroTier keeps a socket tied to the dead interface here (ANCHORS.md)."""
    node, _router = two_uplinks(testbed)
    driver = BinderDriver(node)
    old = driver.bound()[("cell0", "IPv4")]
    old_index = node.link_index("cell0")

    # Delete and re-create in one go, faster than any polling would notice.
    script = (
        "ip link del cell0 && "
        "ip link add cell0 type veth peer name cellpeer && "
        "ip addr add 203.0.113.2/24 dev cell0 && ip link set cell0 up && ip link set cellpeer up"
    )
    node.run("sh", "-c", script)
    new_index = node.link_index("cell0")
    assert new_index != old_index
    new = driver.wait_bound(
        lambda b: b.get(("cell0", "IPv4"), {}).get("index") == new_index,
        "a socket on the re-created cell0",
    )[("cell0", "IPv4")]
    assert new["id"] != old["id"]
    assert new["address"] == "203.0.113.2"
    downs = [e for e in driver.events if e["event"] == "down" and e["socket"] == old["id"]]
    assert downs and downs[0]["reason"] == "interface deleted"


def test_datagrams_arrive_tagged_with_their_interface_and_leave_on_the_chosen_one(testbed):
    node, router = two_uplinks(testbed)
    driver = BinderDriver(node, "--port", "9993")
    bound = driver.bound()
    assert all(entry["port"] == 9993 for entry in bound.values())
    send_udp(router, "192.0.2.2", 9993, "to-wifi")
    send_udp(router, "203.0.113.2", 9993, "to-cell")
    send_udp(router, "2001:db8:2::2", 9993, "to-cell6")
    wait_until(lambda: len(driver.datagrams) == 3, what="three datagrams at the node")
    arrived = {d["datagram"]: d["socket"] for d in driver.datagrams}
    assert arrived == {
        "to-wifi": bound[("wifi0", "IPv4")]["id"],
        "to-cell": bound[("cell0", "IPv4")]["id"],
        "to-cell6": bound[("cell0", "IPv6")]["id"],
    }

    sink = UdpSink(router, "0.0.0.0", 7001)
    assert driver.send(bound[("cell0", "IPv4")]["id"], "203.0.113.1", 7001, "via-cell")
    wait_until(lambda: sink.received, what="datagram from the cell socket")
    assert sink.received[0]["from"] == ["203.0.113.2", 9993]
    # A socket that is not (or no longer) there is a refused send, not an exception.
    assert driver.send(9999, "203.0.113.1", 7001, "nowhere") is False
    assert driver.state()["counters"]["send_no_socket"] == 1


def test_interface_churn_with_names_at_the_length_limit_leaks_nothing(testbed):
    node, _router = two_uplinks(testbed)
    driver = BinderDriver(node)
    fds_before = driver.open_fds()
    name, peer = "c23456789abcdef", "p23456789abcdef"  # 15 characters: the Linux limit
    assert len(name) == 15
    for round_number in range(200):
        batch = (
            f"link add {name} type veth peer name {peer}\n"
            f"addr add 198.51.100.{2 + round_number % 200}/24 dev {name}\n"
            f"link set {peer} up\nlink set {name} up\n"
        )
        node.run("ip", "-batch", "-", input=batch)
        if round_number % 20 == 0:
            # Now and then leave it long enough to really be bound, then released.
            driver.wait_bound(lambda b: (name, "IPv4") in b, f"{name} bound")
        node.ip("link", "del", name)
    driver.wait_bound(lambda b: (name, "IPv4") not in b, "the churned interface released")
    settled = driver.bound()
    assert set(settled) == {("wifi0", "IPv4"), ("wifi0", "IPv6"), ("cell0", "IPv4"),
                            ("cell0", "IPv6")}  # fmt: skip
    assert driver.open_fds() == fds_before
    ups = sum(1 for e in driver.events if e["event"] == "up" and e.get("interface") == name)
    assert ups >= 10, "the churned interface was really bound now and then"
