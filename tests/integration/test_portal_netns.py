"""Captive portals (issue 17, item 3), on the full-tunnel lab of test_full_tunnel_netns.py
with the kill switch on: the gateway cannot be reached, a portal on the client's own network
(a namespace web server that redirects) is found through a socket pinned to the uplink, and
`oneservice-cli portal open` lets direct traffic through for a while, then re-arms the tunnel
and the kill switch."""

from __future__ import annotations

import sys

import pytest

from tests.integration.test_full_tunnel_netns import CLIENT_WIFI, GW_UPLINK, TunnelLab
from tests.testbed import wait_until

pytestmark = pytest.mark.integration

PROBE = "http://10.0.1.1:8081/generate_204"


def cli(lab: TunnelLab, *arguments: str):
    return lab.hosts["client"].run(sys.executable, "-m", "oneservice.cli", "-D",
                                   str(lab.homes["client"]), *arguments, check=False)  # fmt: skip


def test_a_captive_portal_is_found_and_a_login_window_opens_and_closes(testbed, tmp_path):
    state = tmp_path / "portal.state"
    lab = TunnelLab(testbed, tmp_path, client_settings={"fullTunnelFailClosed": True,
                                                        "captivePortalUrl": PROBE})
    lab.inet.python("tests/integration/portal_server.py", "8081", str(state))
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    assert lab.whoami() == GW_UPLINK
    assert lab.network("client", network_id)["captivePortal"] == ""

    lab.nodes["gw"].stop()  # the gateway cannot be reached: the portal is probed
    lab.wait_tunnel(network_id, "held", timeout=20)
    wait_until(lambda: "captive portal on wifi: the probe got HTTP 302 to "
               "http://10.0.1.1:8081/login instead of 204"
               in lab.network("client", network_id)["captivePortal"], timeout=10,
               interval=0.3, what="the portal found")  # fmt: skip
    lab.nodes["client"].wait_log("captive portal on wifi")
    assert lab.whoami(timeout=2) is None, "held by the kill switch"

    result = cli(lab, "portal", "open", "6")
    assert result.returncode == 0 and "login window open" in result.stdout, result.stdout
    lab.wait_tunnel(network_id, "off", timeout=5)
    wait_until(lambda: lab.whoami(timeout=2) == CLIENT_WIFI, timeout=5, interval=0.3,
               what="direct traffic to log in")  # fmt: skip
    # The kernel lets direct traffic through a moment before the node records the kill switch
    # as lifted (it does once nft has returned): the report follows within that moment.
    wait_until(lambda: not lab.api("client", "GET", "/routes")[1]["killSwitch"]["armed"],
               timeout=2, interval=0.1, what="the kill switch reported lifted")  # fmt: skip
    state.write_text("free")  # logged in

    lab.wait_tunnel(network_id, "held", timeout=15)  # the window is over
    wait_until(lambda: lab.api("client", "GET", "/routes")[1]["killSwitch"]["armed"],
               timeout=5, interval=0.3, what="the kill switch re-armed")  # fmt: skip
    assert lab.whoami(timeout=2) is None, "nothing direct after the window"
    wait_until(lambda: cli(lab, "portal").stdout.strip() == "no captive portal seen",
               timeout=10, interval=0.5, what="the portal gone after the login")  # fmt: skip

    result = cli(lab, "portal", "open", "soon")
    assert result.returncode == 1 and "takes a number of seconds" in result.stderr
