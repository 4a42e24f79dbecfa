"""Per-port split tunnel (issue 17, item 2), proven in namespaces on the full-tunnel lab of
test_full_tunnel_netns.py: the server answers with the address each request came from, so the
gateway's address means "through the tunnel" and the client's own means "direct".

The network offers an IPv4 default only: IPv6 that the split sends to the tunnel is blocked.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.test_full_tunnel_netns import (
    CLIENT_WIFI,
    GW_UPLINK,
    SERVER,
    SERVER6,
    TunnelLab,
)
from tests.testbed import wait_until

pytestmark = pytest.mark.integration

CLIENT_WIFI6 = "2001:db8:1::10"


def our_rules(lab: TunnelLab) -> str:
    host = lab.hosts["client"]
    lines = [line for family in ("-4", "-6")
             for line in host.ip(family, "rule", "show").stdout.splitlines()]  # fmt: skip
    return "\n".join(line for line in lines if line.split(":")[0].isdigit()
                     and 5210 <= int(line.split(":")[0]) < 5220)  # fmt: skip


def test_only_the_ports_chosen_take_the_tunnel_or_all_but_them(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    for port in ("80", "443"):
        lab.server.python("tests/integration/whoami_server.py", port, stdout=subprocess.PIPE)
    network_id = lab.build_network()
    url = f"http://{SERVER}:{{}}/"
    url6 = f"http://[{SERVER6}]:{{}}/"

    # Everything through the tunnel but HTTPS.
    lab.set_flags(network_id, allowDefault=True, fullTunnelExcept=["tcp/443", "udp/443"])
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: lab.whoami(url.format(80)) == GW_UPLINK, timeout=10, interval=0.5,
               what=":80 through the gateway")  # fmt: skip
    assert lab.whoami(url.format(443)) == CLIENT_WIFI, ":443 direct, from the client itself"
    assert lab.whoami(url.format(8080)) == GW_UPLINK, "any other port through the tunnel"
    assert lab.whoami(url6.format(443)) == CLIENT_WIFI6, "IPv6 :443 direct too"
    assert lab.whoami(url6.format(80), timeout=2) is None, "the rest of IPv6 is blocked"
    status = lab.network("client", network_id)
    assert status["fullTunnelSplit"] == ("everything through the tunnel but tcp/443, udp/443, "
                                         "which go direct")  # fmt: skip
    assert "ipproto tcp dport 443 lookup main" in our_rules(lab)

    # Only HTTP through the tunnel.
    lab.set_flags(network_id, fullTunnelExcept=[], fullTunnelOnly=["tcp/80"])
    wait_until(lambda: lab.network("client", network_id)["fullTunnelSplit"]
               == "only tcp/80 through the tunnel", timeout=10, interval=0.2,
               what="the new split applied")  # fmt: skip
    assert lab.whoami(url.format(80)) == GW_UPLINK, ":80 through the gateway"
    assert lab.whoami(url.format(8080)) == CLIENT_WIFI, "any other port direct"
    assert lab.whoami(url.format(443)) == CLIENT_WIFI
    assert lab.whoami(url6.format(443)) == CLIENT_WIFI6
    assert lab.whoami(url6.format(80), timeout=2) is None, "IPv6 :80 blocked, not leaked"
    assert lab.ping("client", SERVER), "ICMP goes direct"

    # Wrong values change nothing and say why.
    code, body = lab.api("client", "POST", f"/network/{network_id}",
                         {"fullTunnelExcept": ["tcp/443"]})  # fmt: skip
    assert code == 400 and "exclude each other" in body["error"], body
    code, body = lab.api("client", "POST", f"/network/{network_id}",
                         {"fullTunnelOnly": ["icmp/1"]})  # fmt: skip
    assert code == 400 and "fullTunnelOnly must be a list" in body["error"], body
    assert lab.whoami(url.format(80)) == GW_UPLINK

    # Off: none of the rules stays.
    lab.set_flags(network_id, allowDefault=False)
    lab.wait_tunnel(network_id, "off")
    wait_until(lambda: our_rules(lab) == "", timeout=5, interval=0.2, what="rules removed")
    assert lab.whoami(url.format(80)) == CLIENT_WIFI


def test_the_kill_switch_follows_the_split(testbed, tmp_path):
    """Fail-closed: the ports that go direct pass the kill switch; with fullTunnelOnly only
    the listed ports are held when the gateway dies, the rest still goes direct."""
    lab = TunnelLab(testbed, tmp_path, client_settings={"fullTunnelFailClosed": True})
    for port in ("80", "443"):
        lab.server.python("tests/integration/whoami_server.py", port, stdout=subprocess.PIPE)
    network_id = lab.build_network()
    url = f"http://{SERVER}:{{}}/"
    lab.set_flags(network_id, allowDefault=True, fullTunnelExcept=["tcp/443"])
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: lab.whoami(url.format(80)) == GW_UPLINK, timeout=10, interval=0.5,
               what=":80 through the gateway")  # fmt: skip
    wait_until(lambda: lab.api("client", "GET", "/routes")[1]["killSwitch"].get("directPorts")
               == ["tcp/443"], timeout=5, interval=0.2, what="the kill switch armed")
    assert lab.whoami(url.format(443)) == CLIENT_WIFI, "the direct port passes the kill switch"

    lab.set_flags(network_id, fullTunnelExcept=[], fullTunnelOnly=["tcp/80"])
    wait_until(lambda: lab.whoami(url.format(8080)) == CLIENT_WIFI, timeout=10, interval=0.5,
               what="other ports direct")  # fmt: skip
    lab.nodes["gw"].stop()
    lab.wait_tunnel(network_id, "held", timeout=20)
    assert lab.whoami(url.format(80), timeout=2) is None, ":80 held, not leaked"
    assert lab.whoami(url.format(443)) == CLIENT_WIFI, "the rest still goes direct"
