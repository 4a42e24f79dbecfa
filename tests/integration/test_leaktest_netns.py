"""The built-in leak test (issue 17, item 4), on the full-tunnel lab of
test_full_tunnel_netns.py: PASS on a good setup, FAIL when a leak is made on purpose (a route
around the tunnel), with the exit status of `oneservice-cli leaktest` saying so."""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.test_dns_netns import without_resolvectl
from tests.integration.test_full_tunnel_netns import GW_UPLINK, GW_VIRTUAL, TunnelLab

pytestmark = pytest.mark.integration


def leaktest(lab: TunnelLab, *arguments: str) -> tuple[int, str]:
    result = lab.hosts["client"].run(sys.executable, "-m", "oneservice.cli", "-D",
                                     str(lab.homes["client"]), "leaktest", *arguments,
                                     check=False, timeout=30)  # fmt: skip
    return result.returncode, result.stdout


def verdicts(output: str) -> dict[str, str]:
    """check name -> PASS/FAIL, from the lines the CLI prints."""
    found = {}
    for line in output.splitlines():
        result, _, rest = line.partition(" ")
        name = rest.split(":")[0]
        if result in ("PASS", "FAIL") and name != "leak test of network":
            found[name] = result
    return found


def test_leaktest_passes_on_a_good_tunnel_and_fails_on_a_route_around_it(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    lab.start("client", env=without_resolvectl())
    network_id = lab.build_network()
    code, output = leaktest(lab)
    assert code == 1 and "no network carries the full tunnel" in output, output

    assert lab.api("ctrl", "POST", f"/controller/network/{network_id}",
                   {"dns": {"servers": [GW_VIRTUAL]}})[0] == 200  # fmt: skip
    lab.set_flags(network_id, allowDefault=True, allowDNS=True)
    lab.wait_tunnel(network_id, "on")
    code, output = leaktest(lab)
    assert code == 0, output
    assert verdicts(output) == {"tunnel": "PASS", "routes": "PASS", "dns": "PASS",
                                "gateway": "PASS", "leaks": "PASS"}, output  # fmt: skip
    assert f"what we send leaves from {GW_UPLINK}, " in output, "where our traffic exits"
    assert "0 packet(s) other than the tunnel's own UDP left" in output
    assert output.splitlines()[-1] == f"PASS: leak test of network {network_id}"

    # A leak made on purpose: the documentation network routed around the tunnel.
    client = lab.hosts["client"]
    client.ip("route", "add", "198.51.100.0/24", "via", "10.0.1.1", "dev", "wifi")
    try:
        code, output = leaktest(lab, network_id)
    finally:
        client.ip("route", "del", "198.51.100.0/24", "via", "10.0.1.1", "dev", "wifi")
    assert code == 1, output
    found = verdicts(output)
    assert found["routes"] == "FAIL" and "198.51.100.1 via wifi" in output, output
    assert found["leaks"] == "FAIL", output
    assert output.splitlines()[-1] == f"FAIL: leak test of network {network_id}"

    # JSON too, and it is the same verdict.
    result = client.run(sys.executable, "-m", "oneservice.cli", "-D", str(lab.homes["client"]),
                        "-j", "leaktest", check=False, timeout=30)  # fmt: skip
    assert result.returncode == 0 and json.loads(result.stdout)["result"] == "PASS"



def test_leaktest_fails_when_the_gateway_does_not_forward(testbed, tmp_path):
    """The gateway named by the network is not an exit node (its allowExitNode is off): the
    client's full tunnel is on and leaks nothing, but what it sends goes nowhere. The gateway
    says so in its whoami answer, and the leak test fails on it (it passed before)."""
    lab = TunnelLab(testbed, tmp_path)
    conf = lab.homes["gw"] / "local.conf"
    document = json.loads(conf.read_text())
    document["settings"]["allowExitNode"] = False
    conf.write_text(json.dumps(document))
    lab.start("client", env=without_resolvectl())
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    code, output = leaktest(lab)
    assert code == 1, output
    found = verdicts(output)
    assert found["gateway"] == "FAIL" and "does not forward for us" in output, output
    assert found["leaks"] == "PASS" and found["tunnel"] == "PASS", output
