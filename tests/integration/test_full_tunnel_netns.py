"""Full tunnel through a gateway on the virtual network, proven in namespaces.

    server 198.51.100.10 (HTTP "whoami", iperf3), 2001:db8:100::10
        |
      inet (router) ---- ctrl 192.0.2.10 (controller + root)
        |   \\---------- gw 203.0.113.10 (exit node)
        |
      wifi 10.0.1.10, 2001:db8:1::10 / cell 10.0.2.10: client

The network routes 0.0.0.0/0 via the gateway (10.147.17.1) and offers no IPv6 default.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import time

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import NodeLab, capture, member, write_home, write_local_conf
from tests.testbed import Testbed, wait_until

pytestmark = pytest.mark.integration

SERVER, SERVER6 = "198.51.100.10", "2001:db8:100::10"
GW_UPLINK, GW_VIRTUAL = "203.0.113.10", "10.147.17.1"
GW_UPLINK6 = "2001:db8:203::10"
CLIENT_WIFI, CLIENT_CELL = "10.0.1.10", "10.0.2.10"
# What the client sends on an uplink (captured outbound only: an ICMP "port unreachable"
# arriving from a stopped gateway is no leak) must be the tunnel's UDP. Link-scope IPv6
# (neighbour discovery, MLD) is the link's business, not traffic that could leak.
NOT_OURS = (
    "not arp and not (udp port 9993)"
    " and not (ip6 and (src host :: or src net fe80::/10 or dst net ff00::/8))"
    " and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137)"
)


class TunnelLab(NodeLab):
    def __init__(self, bed: Testbed, tmp_path, client_settings: dict | None = None) -> None:
        super().__init__()
        self.tmp_path = tmp_path
        inet = self.inet = bed.host("inet", forwarding=True)
        self.server = bed.host("server")
        bed.link(self.server, "eth0", inet, "r-server", [f"{SERVER}/24", f"{SERVER6}/64"],
                 ["198.51.100.1/24", "2001:db8:100::1/64"])  # fmt: skip
        self.server.ip("route", "add", "default", "via", "198.51.100.1")
        self.server.ip("-6", "route", "add", "default", "via", "2001:db8:100::1")
        self.identities = {name: Identity.generate() for name in ("ctrl", "gw", "client")}
        for name, net in (("ctrl", "192.0.2"), ("gw", "203.0.113")):
            host = self.hosts[name] = bed.host(name)
            bed.link(host, "eth0", inet, f"r-{name}", [f"{net}.10/24"], [f"{net}.1/24"])
            host.ip("route", "add", "default", "via", f"{net}.1")
        # Like a NIC without checksum offload: the gateway's kernel finishes the checksums of
        # what it forwards and the server checks them. Over a plain veth nobody would, and a
        # wrong checksum in a packet we merged would pass unnoticed.
        self.hosts["gw"].run("ethtool", "-K", "eth0", "tx", "off")
        # The gateway also has IPv6, for the test whose tunnel runs over IPv6.
        self.hosts["gw"].ip("addr", "add", f"{GW_UPLINK6}/64", "dev", "eth0", "nodad")
        inet.ip("addr", "add", "2001:db8:203::1/64", "dev", "r-gw", "nodad")
        self.hosts["gw"].ip("-6", "route", "add", "default", "via", "2001:db8:203::1")
        client = self.hosts["client"] = bed.host("client")
        bed.link(client, "wifi", inet, "r-wifi", [f"{CLIENT_WIFI}/24", "2001:db8:1::10/64"],
                 ["10.0.1.1/24", "2001:db8:1::1/64"])  # fmt: skip
        bed.link(client, "cell", inet, "r-cell", [f"{CLIENT_CELL}/24"], ["10.0.2.1/24"])
        client.ip("route", "add", "default", "via", "10.0.1.1", "dev", "wifi", "metric", "100")
        client.ip("route", "add", "default", "via", "10.0.2.1", "dev", "cell", "metric", "200")
        client.ip("-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "wifi")
        roots = [{"identity": self.identities["ctrl"].public_text(),
                  "endpoints": ["192.0.2.10/9993"]}]  # fmt: skip
        settings = {"ctrl": {"relay": True}, "gw": {"allowExitNode": True},
                    "client": client_settings or {}}  # fmt: skip
        for name, identity in self.identities.items():
            home = self.homes[name] = write_home(tmp_path / name, identity, [])
            write_local_conf(home, {"settings": settings[name],
                                    "roots": [] if name == "ctrl" else roots})  # fmt: skip
        self.server.python("tests/integration/whoami_server.py", "8080", stdout=subprocess.PIPE)
        self.server.spawn("iperf3", "-s", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def build_network(self) -> str:
        """Controller, gateway and client up; the client is a member with allowDefault off."""
        for name in ("ctrl", "gw", "client"):
            if name not in self.nodes or self.nodes[name].process.poll() is not None:
                self.start(name)
        network_id = self.create_network("ctrl", {
            "name": "exit", "routes": [{"target": "10.147.17.0/24"},
                                       {"target": "0.0.0.0/0", "via": GW_VIRTUAL}],
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.99"}],
        })  # fmt: skip
        for name in ("gw", "client"):
            code, body = self.api(name, "POST", f"/network/{network_id}", {})
            assert code == 200, body
        self.authorize("ctrl", network_id, "gw", ipAssignments=[GW_VIRTUAL])
        self.authorize("ctrl", network_id, "client")
        for name in ("gw", "client"):
            self.wait_status(name, network_id, "OK")
        return network_id

    def network(self, name: str, network_id: str) -> dict:
        code, body = self.api(name, "GET", f"/network/{network_id}")
        assert code == 200, body
        return body

    def set_flags(self, network_id: str, **flags) -> None:
        code, body = self.api("client", "POST", f"/network/{network_id}", flags)
        assert code == 200, body

    def wait_tunnel(self, network_id: str, state: str, timeout: float = 15) -> None:
        wait_until(lambda: self.network("client", network_id)["fullTunnel"] == state, timeout,
                   interval=0.2, what=f"full tunnel {state}")  # fmt: skip

    def whoami(self, url: str = f"http://{SERVER}:8080/", timeout: float = 3) -> str | None:
        """Who the server thinks the client is (None: no answer)."""
        result = self.hosts["client"].run("curl", "-s", "-m", str(timeout), url, check=False,
                                          timeout=timeout + 5)  # fmt: skip
        return result.stdout if result.returncode == 0 else None

    def our_routes(self, name: str = "client") -> str:
        host = self.hosts[name]
        return "".join(host.ip(*family, "route", "show", "table", "all", "proto", "165").stdout
                       for family in ((), ("-6",)))  # fmt: skip


def full_tunnel(bed: Testbed, tmp_path) -> tuple[TunnelLab, str]:
    """The lab with the client's full tunnel on and proven (the server sees the gateway)."""
    lab = TunnelLab(bed, tmp_path)
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    assert lab.whoami() == GW_UPLINK
    return lab, network_id


def routing_state(host) -> dict:
    """Everything the node may touch: routes and rules of both families, the nft ruleset
    (the egress guard included: it must be left alone too), forwarding sysctls."""
    # New links get their link-local addresses (and local routes) once DAD is through.
    wait_until(lambda: not host.ip("-6", "addr", "show", "tentative").stdout.strip(),
               timeout=5, what="IPv6 duplicate address detection")  # fmt: skip
    state = {}
    for family in ("-4", "-6"):
        state[f"routes{family}"] = host.ip(family, "route", "show", "table", "all").stdout
        state[f"rules{family}"] = host.ip(family, "rule", "show").stdout
    state["nft"] = host.run("nft", "list", "ruleset").stdout
    for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):
        state[key] = host.run("sysctl", "-n", key).stdout
    return state


def assert_unchanged(before: dict, after: dict, who: str) -> None:
    changed = {
        key: "\n".join(difflib.unified_diff(before[key].splitlines(), after[key].splitlines(),
                                             "before", "after", lineterm=""))
        for key in before if before[key] != after[key]
    }  # fmt: skip
    assert not changed, f"{who}: routing state differs from before the node ran: {changed}"


def tunnel_udp_inside(host, pcap) -> list[str]:
    """The tunnel's own UDP seen on the TUN device: must be none, or it would tunnel itself."""
    return host.run("tcpdump", "-r", str(pcap), "-n", "udp port 9993").stdout.splitlines()


def stray_packets(host, pcap) -> list[str]:
    return host.run("tcpdump", "-r", str(pcap), "-n", NOT_OURS).stdout.splitlines()


def test_full_tunnel_through_the_gateway_leaks_nothing(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    client = lab.hosts["client"]
    before = routing_state(client)
    network_id = lab.build_network()
    assert lab.whoami() == CLIENT_WIFI, "without allowDefault the client uses its own uplink"
    [default] = [r for r in lab.network("client", network_id)["routeStatus"]
                 if r["target"] == "0.0.0.0/0"]  # fmt: skip
    assert default == {"target": "0.0.0.0/0", "via": GW_VIRTUAL, "installed": False,
                       "reason": "needs allowDefault"}  # fmt: skip

    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    tap = lab.network("client", network_id)["portDeviceName"]
    routes = lab.our_routes()
    assert f"0.0.0.0/1 via {GW_VIRTUAL} dev {tap}" in routes, routes
    assert f"128.0.0.0/1 via {GW_VIRTUAL} dev {tap}" in routes, routes
    assert lab.whoami() == GW_UPLINK, "the server sees the gateway"
    # Someone deletes one of our routes: the route event brings it back.
    client.ip("route", "del", "0.0.0.0/1")
    assert f"0.0.0.0/1 via {GW_VIRTUAL}" not in lab.our_routes()
    wait_until(lambda: f"0.0.0.0/1 via {GW_VIRTUAL}" in lab.our_routes(), timeout=2,
               what="the deleted route re-added")  # fmt: skip

    captures = {name: (tmp_path / f"{name}.pcap") for name in ("wifi", "cell", tap)}
    tcpdumps = [capture(client, name, path, outbound=name != tap)
                for name, path in captures.items()]  # fmt: skip
    assert lab.whoami() == GW_UPLINK
    assert lab.ping("client", SERVER)
    client.run(sys.executable, "-c", "import socket; s = socket.socket(socket.AF_INET, "
               f"socket.SOCK_DGRAM); s.sendto(b'dns?', ('{SERVER}', 53))")  # fmt: skip
    # The gateway offers no IPv6 default: IPv6 to the internet is blocked, not leaked, and
    # fails at once (applications fall back to IPv4 instead of waiting for a timeout).
    started = time.monotonic()
    assert lab.whoami(f"http://[{SERVER6}]:8080/", timeout=5) is None
    assert time.monotonic() - started < 1.0, "IPv6 must fail at once, not time out"
    assert lab.whoami(f"http://{SERVER}:8080/") == GW_UPLINK
    time.sleep(0.3)
    for tcpdump in tcpdumps:
        tcpdump.terminate()
        tcpdump.wait(timeout=5)
    for uplink in ("wifi", "cell"):
        assert stray_packets(client, captures[uplink]) == [], f"only tunnel UDP on {uplink}"
    tunnel_udp = sum(
        len(client.run("tcpdump", "-r", str(captures[uplink]), "-n", "udp port 9993")
            .stdout.splitlines())
        for uplink in ("wifi", "cell")
    )  # fmt: skip
    assert tunnel_udp >= 10, "the traffic went through the tunnel (over either uplink)"
    inside = client.run("tcpdump", "-r", str(captures[tap]), "-n").stdout
    assert SERVER in inside, "the tunnel carried the test traffic"
    assert SERVER6 not in inside, "blocked IPv6 does not even enter the tunnel"
    assert tunnel_udp_inside(client, captures[tap]) == []
    blocked = [r for r in lab.network("client", network_id)["routeStatus"]
               if r["target"] == "::/0"]  # fmt: skip
    assert blocked and blocked[0]["installed"] and "IPv6 blocked" in blocked[0]["reason"]

    lab.set_flags(network_id, allowDefault=False)
    wait_until(lambda: lab.our_routes() == "", what="the full tunnel removed")
    assert lab.whoami() == CLIENT_WIFI
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    code, _ = lab.api("client", "DELETE", f"/network/{network_id}")
    assert code == 200
    wait_until(lambda: lab.our_routes() == "", what="routes gone after leave")
    assert lab.nodes["client"].stop() == 0
    assert_unchanged(before, routing_state(client), "client")


def test_handover_under_full_tunnel(testbed, tmp_path):
    lab, network_id = full_tunnel(testbed, tmp_path)
    client = lab.hosts["client"]
    tap = lab.network("client", network_id)["portDeviceName"]
    pcap = tmp_path / "tap.pcap"
    tcpdump = capture(client, tap, pcap)
    iperf = client.spawn("iperf3", "-c", SERVER, "-t", "8", "-J", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(2.5)
    client.ip("link", "del", "wifi")
    out, _ = iperf.communicate(timeout=30)
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    report = json.loads(out)
    assert "error" not in report, report.get("error")
    intervals = [i["sum"]["bytes"] for i in report["intervals"]]
    assert len(intervals) >= 8 and all(b > 0 for b in intervals[-4:]), intervals
    assert lab.whoami() == GW_UPLINK, "still through the gateway, now over cell"
    gw = lab.identities["gw"].address
    paths = lab.api("client", "GET", f"/peer/{gw}")[1]["paths"]
    assert [p["interface"] for p in paths if p["preferred"]] == ["cell"], paths
    assert SERVER in client.run("tcpdump", "-r", str(pcap), "-n").stdout
    assert tunnel_udp_inside(client, pcap) == []


def test_silent_gateway_withdraws_the_tunnel_or_holds_traffic_when_fail_closed(testbed, tmp_path):
    lab, network_id = full_tunnel(testbed, tmp_path)

    assert lab.nodes["gw"].stop() == 0
    lab.wait_tunnel(network_id, "withdrawn")
    assert lab.our_routes() == ""
    assert lab.whoami() == CLIENT_WIFI, "back on the machine's own connection"
    lab.start("gw")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.whoami() == GW_UPLINK, "the full tunnel came back by itself"

    # Fail-closed: the same silence holds traffic in the tunnel instead.
    assert lab.nodes["client"].stop() == 0
    write_local_conf(
        lab.homes["client"],
        {
            "settings": {"fullTunnelFailClosed": True},
            "roots": [
                {"identity": lab.identities["ctrl"].public_text(), "endpoints": ["192.0.2.10/9993"]}
            ],
        },
    )
    lab.start("client")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.nodes["gw"].stop() == 0
    lab.wait_tunnel(network_id, "held")
    client = lab.hosts["client"]
    pcaps = {uplink: tmp_path / f"held-{uplink}.pcap" for uplink in ("wifi", "cell")}
    tcpdumps = [capture(client, uplink, path, outbound=True) for uplink, path in pcaps.items()]
    assert lab.whoami(timeout=2) is None, "blocked, not leaked"
    for tcpdump in tcpdumps:
        tcpdump.terminate()
        tcpdump.wait(timeout=5)
    for uplink, path in pcaps.items():
        assert stray_packets(client, path) == [], f"nothing but tunnel UDP on {uplink}"
    held_udp = sum(len(client.run("tcpdump", "-r", str(path), "-n", "udp port 9993")
                       .stdout.splitlines()) for path in pcaps.values())  # fmt: skip
    assert held_udp > 0, "the captures worked: the node kept looking for its gateway"
    lab.start("gw")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.whoami() == GW_UPLINK


def test_sigkill_then_restart_leaves_nothing_behind(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    client, gw = lab.hosts["client"], lab.hosts["gw"]
    before = {"client": routing_state(client), "gw": routing_state(gw)}
    network_id = lab.build_network()
    # Without LAN access the LAN goes through the tunnel too: rules of ours, which (unlike
    # routes on the TUN device) outlive the process.
    lab.set_flags(network_id, allowDefault=True, allowLanAccess=False)
    lab.wait_tunnel(network_id, "on")
    assert "lookup 52100" in client.ip("rule", "show").stdout
    assert "table inet oneservice" in gw.run("nft", "list", "ruleset").stdout
    assert gw.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert lab.whoami() == GW_UPLINK

    for name in ("client", "gw"):
        lab.nodes[name].process.kill()
        lab.nodes[name].process.wait(timeout=5)
    assert "lookup 52100" in client.ip("rule", "show").stdout, "the crash left its rules"
    assert "table inet oneservice" in gw.run("nft", "list", "ruleset").stdout

    lab.start("gw").wait_log("restored /proc/sys/net/ipv4/ip_forward = 0")
    lab.start("client").wait_log("left by an earlier run")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.whoami() == GW_UPLINK, "full tunnel back after the restart"
    for name in ("client", "gw"):
        assert lab.nodes[name].stop() == 0
    assert_unchanged(before["client"], routing_state(client), "client")
    assert_unchanged(before["gw"], routing_state(gw), "gw")


def test_bad_routes_are_refused_with_a_reason_and_nothing_is_installed(testbed, tmp_path):
    # A controller refuses most of these at its API already; a member must refuse them by
    # itself (the controller may be older or hostile), so the config comes from a file here.
    lab = TunnelLab(testbed, tmp_path)
    network_id = "8056c2e21c0000bd"
    network = {"id": network_id, "name": "bad", "members": [
        member(lab.identities["client"], ["10.147.17.10/24"], []),
        member(lab.identities["gw"], [f"{GW_VIRTUAL}/24"], []),
    ], "routes": [
        {"target": "10.147.17.0/24"},
        {"target": "0.0.0.0/0", "via": "10.147.17.10"},  # the client itself
        {"target": "0.0.0.0/0", "via": "172.16.0.1"},  # outside the network
        {"target": "127.0.0.0/8", "via": GW_VIRTUAL},
        {"target": "224.0.0.0/4", "via": GW_VIRTUAL},
    ]}  # fmt: skip
    write_home(lab.homes["client"], lab.identities["client"], [network])
    lab.start("client")
    code, body = lab.api("client", "POST", f"/network/{network_id}",
                         {"allowDefault": True, "allowGlobal": True})  # fmt: skip
    assert code == 200, body
    wait_until(lambda: len(lab.network("client", network_id)["routeStatus"]) == 5,
               what="route statuses")  # fmt: skip
    reasons = {(r["target"], r["via"]): r["reason"]
               for r in lab.network("client", network_id)["routeStatus"] if r["via"]}  # fmt: skip
    assert "this node is the gateway" in reasons[("0.0.0.0/0", "10.147.17.10")]
    assert "outside the network's subnets" in reasons[("0.0.0.0/0", "172.16.0.1")]
    assert "refused" in reasons[("127.0.0.0/8", GW_VIRTUAL)]
    assert "refused" in reasons[("224.0.0.0/4", GW_VIRTUAL)]
    # Not an exit node either: it was never allowed to be one. (The exit plan is published
    # after the routes in the same planning round: waited for, not read at once.)
    wait_until(lambda: "allowExitNode" in lab.network("client", network_id)["exitNode"],
               what="the exit node's refusal")  # fmt: skip
    assert lab.our_routes() == ""
    assert lab.hosts["client"].run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    code, body = lab.api("client", "DELETE", f"/network/{network_id}")
    assert code == 409 and "defined by a file" in body["error"]


def test_allow_dns_hands_the_networks_resolvers_to_systemd_resolved(testbed, tmp_path):
    # No systemd-resolved in a namespace: a stand-in resolvectl records what it is asked.
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "resolvectl.log"
    (fake / "resolvectl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "resolvectl").chmod(0o755)
    lab = TunnelLab(testbed, tmp_path)
    lab.start("client", env={"PATH": f"{fake}:{os.environ['PATH']}"})
    network_id = lab.build_network()
    code, _ = lab.api("ctrl", "POST", f"/controller/network/{network_id}",
                      {"dns": {"domain": "lab.test", "servers": [GW_VIRTUAL]}})  # fmt: skip
    assert code == 200
    tap = lab.network("client", network_id)["portDeviceName"]
    wait_until(lambda: lab.network("client", network_id)["dnsStatus"]
               == "not applied: allowDNS is off", what="the DNS config")  # fmt: skip
    assert not calls.exists(), "nothing touched without allowDNS"

    lab.set_flags(network_id, allowDNS=True, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: calls.exists() and f"domain {tap} lab.test ~." in calls.read_text(),
               what="DNS applied")  # fmt: skip
    assert f"dns {tap} {GW_VIRTUAL}" in calls.read_text()
    assert lab.network("client", network_id)["dnsStatus"].startswith(f"servers {GW_VIRTUAL}")
    lab.set_flags(network_id, allowDNS=False)
    wait_until(lambda: f"revert {tap}" in calls.read_text(), what="DNS reverted")


def test_lan_access_stays_direct_by_default_and_goes_through_the_tunnel_when_refused(
    testbed, tmp_path
):
    lab, network_id = full_tunnel(testbed, tmp_path)
    client = lab.hosts["client"]
    tap = lab.network("client", network_id)["portDeviceName"]
    lan_router = "10.0.1.1"  # on the client's wifi subnet

    def way_to_lan() -> str:
        return client.ip("route", "get", lan_router).stdout

    assert "dev wifi" in way_to_lan(), "directly connected subnets stay direct by default"
    lab.set_flags(network_id, allowLanAccess=False)
    wait_until(lambda: f"dev {tap}" in way_to_lan(), what="the LAN routed into the tunnel")
    pcap = tmp_path / "lan.pcap"
    tcpdump = capture(client, "wifi", pcap, outbound=True)
    assert lab.ping("client", lan_router), "the LAN answers, through the gateway"
    time.sleep(0.3)
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    assert stray_packets(client, pcap) == [], "nothing to the LAN in the clear"
    lab.set_flags(network_id, allowLanAccess=True)
    wait_until(lambda: "dev wifi" in way_to_lan(), what="the LAN direct again")


def test_a_rule_or_route_of_ours_deleted_behind_our_back_is_back_within_a_second(
    testbed, tmp_path
):
    """The change monitor hears rule events too, and knows our own routes and rules by their
    marks: one of ours deleted by someone else is put back at once; our own writes (putting
    it back included) cost no interface re-read."""
    lab, network_id = full_tunnel(testbed, tmp_path)
    client = lab.hosts["client"]
    lab.set_flags(network_id, allowLanAccess=False)
    wait_until(lambda: "lookup 52100" in client.ip("rule", "show").stdout, what="LAN rules")
    time.sleep(1)  # the routing of that change is done

    def rules_now() -> list[str]:  # rules of one priority come back in any order
        return sorted(client.ip("rule", "show").stdout.splitlines())

    rules, routes = rules_now(), lab.our_routes()
    reconciles = lab.api("client", "GET", "/binder")[1]["counters"]["reconciles"]

    client.ip("rule", "del", "priority", "5210")
    assert rules_now() != rules
    wait_until(lambda: rules_now() == rules, timeout=1.0, interval=0.02, what="our rule back")
    client.ip("route", "del", "0.0.0.0/1")
    assert lab.our_routes() != routes
    wait_until(lambda: lab.our_routes() == routes, timeout=1.0, interval=0.02,
               what="our route back")  # fmt: skip
    assert lab.whoami() == GW_UPLINK, "the full tunnel carries everything again"
    time.sleep(0.5)
    assert lab.api("client", "GET", "/binder")[1]["counters"]["reconciles"] == reconciles, (
        "our own routes and rules made the binder re-read the interfaces"
    )


def test_a_tunnel_over_ipv6_keeps_running_while_ipv6_to_the_internet_is_blocked(testbed, tmp_path):
    """The IPv6 block (the gateway offers no ::/0) must not catch the tunnel's own IPv6 UDP:
    its sockets are pinned to the uplinks, whose lookups skip routes into the TUN."""
    lab = TunnelLab(testbed, tmp_path)
    network_id = "8056c2e21c0000b6"
    network = {"id": network_id, "name": "over6", "members": [
        member(lab.identities["client"], ["10.147.17.10/24"], ["2001:db8:1::10/9993"]),
        member(lab.identities["gw"], [f"{GW_VIRTUAL}/24"], [f"{GW_UPLINK6}/9993"]),
    ], "routes": [{"target": "10.147.17.0/24"},
                  {"target": "0.0.0.0/0", "via": GW_VIRTUAL}]}  # fmt: skip
    for name in ("gw", "client"):
        write_home(lab.homes[name], lab.identities[name], [network])
        lab.start(name)
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    assert "unreachable ::/1" in lab.our_routes(), "IPv6 to the internet is blocked"
    client = lab.hosts["client"]
    pcap = tmp_path / "wifi6.pcap"
    tcpdump = capture(client, "wifi", pcap)
    assert lab.whoami() == GW_UPLINK, "through the gateway, over an IPv6 tunnel"
    assert lab.ping("client", SERVER)
    time.sleep(0.5)
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    sent6 = client.run("tcpdump", "-r", str(pcap), "-n",
                       "ip6 and src host 2001:db8:1::10 and udp port 9993").stdout  # fmt: skip
    assert f"> {GW_UPLINK6}.9993" in sent6, client.run("tcpdump", "-r", str(pcap), "-n").stdout
    ours = f"src host {CLIENT_WIFI} or src host {CLIENT_CELL} or src net 2001:db8:1::/64"
    leaked = client.run("tcpdump", "-r", str(pcap), "-n", f"({ours}) and {NOT_OURS}").stdout
    assert leaked == "", "nothing but tunnel UDP leaves the client"
