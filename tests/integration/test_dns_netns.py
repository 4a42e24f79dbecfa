"""DNS without systemd-resolved (issue 17, item 5), proven in namespaces on the full-tunnel lab
of test_full_tunnel_netns.py. The client has no resolvectl; its LAN resolver (on the router,
10.0.1.1) answers 192.0.2.66, the network's server (on the gateway's virtual address) answers
192.0.2.77: the answer says who was asked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.nodes import capture
from tests.integration.test_full_tunnel_netns import GW_VIRTUAL, TunnelLab
from tests.testbed import wait_until

pytestmark = pytest.mark.integration

LAN_RESOLVER, LAN_RESOLVER6 = "10.0.1.1", "2001:db8:1::1"
LAN_ANSWER, NETWORK_ANSWER = "192.0.2.66", "192.0.2.77"


def without_resolvectl() -> dict:
    path = [d for d in os.environ["PATH"].split(":") if not (Path(d) / "resolvectl").exists()]
    return {"PATH": ":".join(path)}


def ask(lab: TunnelLab, server: str) -> str | None:
    result = lab.hosts["client"].python("tests/integration/dns_responder.py", "query", server,
                                        "example.test", stdout=-1, text=True)  # fmt: skip
    out, _ = result.communicate(timeout=10)
    return out.strip() if result.returncode == 0 else None


def test_without_resolved_every_query_goes_to_the_networks_server_through_the_tunnel(
        testbed, tmp_path):  # fmt: skip
    lab = TunnelLab(testbed, tmp_path)
    lan_log, network_log = tmp_path / "lan.log", tmp_path / "network.log"
    lab.inet.python("tests/integration/dns_responder.py", "serve", LAN_ANSWER, str(lan_log))
    lab.hosts["gw"].python("tests/integration/dns_responder.py", "serve", NETWORK_ANSWER,
                           str(network_log))  # fmt: skip
    lab.start("client", env=without_resolvectl())
    network_id = lab.build_network()
    code, _ = lab.api("ctrl", "POST", f"/controller/network/{network_id}",
                      {"dns": {"domain": "lab.test", "servers": [GW_VIRTUAL]}})  # fmt: skip
    assert code == 200
    wait_until(lambda: ask(lab, LAN_RESOLVER) == LAN_ANSWER, timeout=5, interval=0.2,
               what="the LAN resolver answering")  # fmt: skip
    assert ask(lab, LAN_RESOLVER6) == LAN_ANSWER, "and over IPv6"

    lab.set_flags(network_id, allowDNS=True)  # no full tunnel: nothing is redirected
    wait_until(lambda: "only while it carries the full tunnel"
               in lab.network("client", network_id)["dnsStatus"], what="the DNS status")
    assert ask(lab, LAN_RESOLVER) == LAN_ANSWER

    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: lab.network("client", network_id)["dnsStatus"].startswith(
        f"servers {GW_VIRTUAL}: every query to port 53 is redirected"), what="the redirect")
    lan_log.unlink(missing_ok=True)
    pcap = tmp_path / "wifi.pcap"
    capture(lab.hosts["client"], "wifi", pcap, outbound=True)
    assert ask(lab, LAN_RESOLVER) == NETWORK_ANSWER, "asked the LAN, answered by the network"
    assert ask(lab, "198.51.100.10") == NETWORK_ANSWER, "any resolver"
    assert ask(lab, LAN_RESOLVER6) is None, "no IPv6 server in the network: refused"
    assert not lan_log.exists(), "the LAN resolver saw nothing"
    leaked = lab.hosts["client"].run("tcpdump", "-r", str(pcap), "-n", "port 53",
                                     check=False).stdout.splitlines()  # fmt: skip
    assert leaked == [], f"DNS left in the clear: {leaked}"
    queriers = set(network_log.read_text().split())
    assert queriers and all(q.startswith("10.147.17.") for q in queriers), queriers

    # Off: restored exactly (the table gone, the LAN resolver answers again).
    lab.set_flags(network_id, allowDNS=False)
    wait_until(lambda: ask(lab, LAN_RESOLVER) == LAN_ANSWER, timeout=5, interval=0.2,
               what="the LAN resolver again")  # fmt: skip
    tables = lab.hosts["client"].run("nft", "list", "tables").stdout
    assert "oneservice-dns" not in tables
    lab.set_flags(network_id, allowDNS=True)
    wait_until(lambda: ask(lab, LAN_RESOLVER) == NETWORK_ANSWER, timeout=5, interval=0.2,
               what="the redirect again")  # fmt: skip
    lab.nodes["client"].stop()
    assert "oneservice-dns" not in lab.hosts["client"].run("nft", "list", "tables").stdout
    assert ask(lab, LAN_RESOLVER) == LAN_ANSWER, "a clean stop restores it"
