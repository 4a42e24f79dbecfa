"""Another VPN on the same machine (issue 17, item 6): the status never says "on" while its
routes take the traffic, and four /2 routes (fullTunnelQuarters) win over its /1 halves."""

from __future__ import annotations

import pytest

from tests.integration.test_full_tunnel_netns import GW_UPLINK, SERVER, TunnelLab
from tests.testbed import wait_until

pytestmark = pytest.mark.integration


def other_vpn(host) -> None:
    """A TUN device nobody reads: what it is given goes nowhere."""
    host.ip("tuntap", "add", "dev", "othervpn", "mode", "tun")
    host.ip("link", "set", "othervpn", "up")


def other_vpn_with_halves(host) -> None:
    """What OpenVPN's redirect-gateway def1 does."""
    other_vpn(host)
    for half in ("0.0.0.0/1", "128.0.0.0/1"):
        host.ip("route", "add", half, "dev", "othervpn")


def device_for(host, address: str) -> str:
    words = host.ip("route", "get", address).stdout.split()
    return words[words.index("dev") + 1]


def test_another_vpns_halves_are_reported_and_quarters_win_over_them(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    network_id = lab.build_network()
    client = lab.hosts["client"]
    other_vpn_with_halves(client)  # it was there first: our halves cannot be added beside it
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "overridden")
    network = lab.network("client", network_id)
    assert "via othervpn" in network["fullTunnelWarning"], network["fullTunnelWarning"]
    assert device_for(client, SERVER) == "othervpn"

    lab.set_flags(network_id, fullTunnelQuarters=True)
    lab.wait_tunnel(network_id, "on")
    assert lab.network("client", network_id)["fullTunnelWarning"] == ""
    tap = lab.network("client", network_id)["portDeviceName"]
    assert device_for(client, SERVER) == tap
    assert "192.0.0.0/2" in lab.our_routes()
    wait_until(lambda: lab.whoami() == GW_UPLINK, timeout=10, what="traffic through the gateway")


def test_a_more_specific_route_of_another_vpn_turns_on_into_overridden(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    client = lab.hosts["client"]
    other_vpn(client)
    client.ip("route", "add", "192.0.0.0/3", "dev", "othervpn")  # catches the server's address
    lab.wait_tunnel(network_id, "overridden")
    client.ip("route", "del", "192.0.0.0/3", "dev", "othervpn")
    lab.wait_tunnel(network_id, "on")
