"""Isolation on the exit node (issue 17, item 7), proven in namespaces: the full-tunnel lab of
test_full_tunnel_netns.py, with a LAN behind the gateway and a second network the gateway
is also a member of.

    client --tunnel (network A, 10.147.17.0/24)--> gw --eth0--> inet --> server
                                         |--lan0 10.0.5.1/24-- lanhost 10.0.5.10
                                         \\--network B (10.147.18.0/24)-- ctrl 10.147.18.10

The gateway forwards the client's traffic to the internet; never into network B, and to its
LAN only with settings.allowExitNodeLan. What it refuses is counted in its status.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.integration.nodes import capture, write_local_conf
from tests.integration.test_full_tunnel_netns import GW_UPLINK, TunnelLab
from tests.testbed import wait_until

pytestmark = pytest.mark.integration

LAN_HOST, GW_LAN = "10.0.5.10", "10.0.5.1"
CTRL_IN_B, GW_IN_B = "10.147.18.10", "10.147.18.1"


def refused(lab: TunnelLab) -> dict:
    code, body = lab.api("gw", "GET", "/routes")
    assert code == 200, body
    return body["forwardingRefused"]


def test_an_exit_node_forwards_only_to_the_internet_never_into_another_network(testbed,
                                                                               tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    gw = lab.hosts["gw"]
    lanhost = testbed.host("lanhost")
    testbed.link(gw, "lan0", lanhost, "eth0", [f"{GW_LAN}/24"], [f"{LAN_HOST}/24"])
    lanhost.python("tests/integration/whoami_server.py", "8080", stdout=subprocess.PIPE)
    network_a = lab.build_network()
    # Network B: the gateway and the controller (a member of its own network), with a
    # whoami server on the controller's address in it.
    network_b = lab.create_network("ctrl", {
        "name": "other", "routes": [{"target": "10.147.18.0/24"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.18.20", "ipRangeEnd": "10.147.18.99"}],
    })  # fmt: skip
    for name, address in (("gw", GW_IN_B), ("ctrl", CTRL_IN_B)):
        code, body = lab.api(name, "POST", f"/network/{network_b}", {})
        assert code == 200, body
        lab.authorize("ctrl", network_b, name, ipAssignments=[address])
    for name in ("gw", "ctrl"):
        lab.wait_status(name, network_b, "OK")
    lab.hosts["ctrl"].python("tests/integration/whoami_server.py", "8081",
                             stdout=subprocess.PIPE)  # fmt: skip
    assert lab.ping("gw", CTRL_IN_B), "network B works between its members"
    lab.set_flags(network_a, allowDefault=True)
    lab.wait_tunnel(network_a, "on")
    assert lab.whoami() == GW_UPLINK, "the internet through the exit node"
    assert lab.network("gw", network_a)["exitNode"].endswith(
        "through the physical uplinks to the internet only, not this node's LAN "
        "(settings.allowExitNodeLan)")  # fmt: skip

    # Into network B: refused at the gateway (nothing of the client's on B's device).
    device_b = lab.network("gw", network_b)["portDeviceName"]
    pcap = tmp_path / "b.pcap"
    capture(gw, device_b, pcap, outbound=True)
    before = refused(lab)
    assert lab.whoami(f"http://{CTRL_IN_B}:8081/", timeout=2) is None
    forwarded = gw.run("tcpdump", "-r", str(pcap), "-n", "src net 10.147.17.0/24",
                       check=False).stdout.splitlines()  # fmt: skip
    assert forwarded == [], f"the exit forwarded into network B: {forwarded}"
    wait_until(lambda: refused(lab)["betweenNetworks"] > before["betweenNetworks"], timeout=3,
               interval=0.5, what="the refusal counted")  # fmt: skip
    # To its LAN: refused, counted.
    assert lab.whoami(f"http://{LAN_HOST}:8080/", timeout=2) is None
    wait_until(lambda: refused(lab)["toLan"] > before["toLan"], timeout=3, interval=0.5,
               what="the refusal counted")  # fmt: skip
    assert lab.whoami() == GW_UPLINK, "the internet still"

    # With the local flag, the LAN is reachable (masqueraded behind the gateway's address).
    conf = json.loads((lab.homes["gw"] / "local.conf").read_text())
    conf["settings"]["allowExitNodeLan"] = True
    write_local_conf(lab.homes["gw"], conf)
    lab.nodes["gw"].process.send_signal(signal.SIGHUP)
    wait_until(lambda: lab.whoami(f"http://{LAN_HOST}:8080/", timeout=2) == GW_LAN,
               timeout=15, interval=0.5, what="the LAN through the exit node")  # fmt: skip
    assert lab.whoami(f"http://{CTRL_IN_B}:8081/", timeout=2) is None, "B stays apart"
    ruleset = json.loads(gw.run("nft", "-j", "list", "table", "inet", "oneservice").stdout)
    assert any("counter" in item for item in ruleset["nftables"])


def test_a_plain_member_never_forwards_between_its_networks(testbed, tmp_path):
    """Even with forwarding on (a router, a Docker host) and a route in network A through it
    to network B's subnet: nothing passes from one network into the other."""
    lab = TunnelLab(testbed, tmp_path)
    write_local_conf(lab.homes["gw"], {"settings": {}, "roots": [{  # not an exit node
        "identity": lab.identities["ctrl"].public_text(), "endpoints": ["192.0.2.10/9993"]}]})
    gw = lab.hosts["gw"]
    gw.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    for name in ("ctrl", "gw", "client"):
        lab.start(name)
    network_a = lab.create_network("ctrl", {
        "name": "a", "routes": [{"target": "10.147.17.0/24"},
                                {"target": "10.147.18.0/24", "via": "10.147.17.1"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.99"}],
    })  # fmt: skip
    network_b = lab.create_network("ctrl", {
        "name": "b", "routes": [{"target": "10.147.18.0/24"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.18.20", "ipRangeEnd": "10.147.18.99"}],
    })  # fmt: skip
    for network_id, members in ((network_a, (("gw", "10.147.17.1"), ("client", None))),
                                (network_b, (("gw", GW_IN_B), ("ctrl", CTRL_IN_B)))):
        for name, address in members:
            assert lab.api(name, "POST", f"/network/{network_id}", {})[0] == 200
            lab.authorize("ctrl", network_id, name,
                          **({"ipAssignments": [address]} if address else {}))
        for name, _ in members:
            lab.wait_status(name, network_id, "OK")
    device_b = lab.network("gw", network_b)["portDeviceName"]
    pcap = tmp_path / "b.pcap"
    capture(gw, device_b, pcap, outbound=True)
    assert not lab.ping("client", CTRL_IN_B)
    forwarded = gw.run("tcpdump", "-r", str(pcap), "-n", "src net 10.147.17.0/24",
                       check=False).stdout.splitlines()  # fmt: skip
    assert forwarded == [], f"forwarded from network A into B: {forwarded}"
    assert refused(lab)["betweenNetworks"] > 0
