"""Several gateways for one full tunnel (issue 17, item 1): the most preferred live one
carries it, the next takes over when it goes silent with nothing in the clear meanwhile, and
it moves back only once the preferred one has answered for a while."""

from __future__ import annotations

import signal
import time

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import capture, write_home, write_local_conf
from tests.integration.test_full_tunnel_netns import GW_UPLINK, GW_VIRTUAL, TunnelLab, stray_packets
from tests.testbed import Testbed, wait_until

pytestmark = pytest.mark.integration

GW2_UPLINK, GW2_VIRTUAL = "10.152.0.10", "10.147.17.2"


class TwoGatewayLab(TunnelLab):
    """TunnelLab with a second exit node, gw2, behind its own uplink: a default route via gw
    (metric 0) and one via gw2 (metric 10)."""

    def __init__(self, bed: Testbed, tmp_path) -> None:
        super().__init__(bed, tmp_path)
        gw2 = self.hosts["gw2"] = bed.host("gw2")
        bed.link(gw2, "eth0", self.inet, "r-gw2", [f"{GW2_UPLINK}/24"], ["10.152.0.1/24"])
        gw2.ip("route", "add", "default", "via", "10.152.0.1")
        identity = self.identities["gw2"] = Identity.generate()
        home = self.homes["gw2"] = write_home(tmp_path / "gw2", identity, [])
        write_local_conf(home, {"settings": {"allowExitNode": True}, "roots": [{
            "identity": self.identities["ctrl"].public_text(), "endpoints": ["192.0.2.10/9993"],
        }]})  # fmt: skip

    def build_network(self) -> str:
        for name in ("ctrl", "gw", "gw2", "client"):
            self.start(name)
        network_id = self.create_network("ctrl", {
            "name": "exit", "routes": [
                {"target": "10.147.17.0/24"},
                {"target": "0.0.0.0/0", "via": GW2_VIRTUAL, "metric": 10},
                {"target": "0.0.0.0/0", "via": GW_VIRTUAL},
            ],
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.99"}],
        })  # fmt: skip
        for name in ("gw", "gw2", "client"):
            assert self.api(name, "POST", f"/network/{network_id}", {})[0] == 200
        self.authorize("ctrl", network_id, "gw", ipAssignments=[GW_VIRTUAL])
        self.authorize("ctrl", network_id, "gw2", ipAssignments=[GW2_VIRTUAL])
        self.authorize("ctrl", network_id, "client")
        for name in ("gw", "gw2", "client"):
            self.wait_status(name, network_id, "OK")
        return network_id

    def gateway(self, network_id: str) -> str:
        return self.network("client", network_id)["fullTunnelGateways"].get("ipv4", "")


def test_the_next_gateway_takes_over_a_silent_one_and_the_preferred_one_comes_back(
    testbed, tmp_path
):
    lab = TwoGatewayLab(testbed, tmp_path)
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: lab.whoami() == GW_UPLINK, timeout=10, what="traffic through gw")
    assert lab.gateway(network_id) == lab.identities["gw"].address

    client = lab.hosts["client"]
    pcap = tmp_path / "failover-wifi.pcap"
    tcpdump = capture(client, "wifi", pcap, outbound=True)
    lab.nodes["gw"].process.send_signal(signal.SIGKILL)  # silent: no goodbye
    died = time.monotonic()
    wait_until(lambda: lab.whoami(timeout=1) == GW2_UPLINK, timeout=15,
               what="traffic through gw2")  # fmt: skip
    print(f"failover to gw2 after {time.monotonic() - died:.1f} s")
    assert lab.network("client", network_id)["fullTunnel"] == "on"
    assert lab.gateway(network_id) == lab.identities["gw2"].address
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    assert stray_packets(client, pcap) == [], "nothing left in the clear during the failover"

    lab.start("gw")

    def gw_standing_by() -> bool:
        statuses = lab.network("client", network_id)["routeStatus"]
        return any(s["via"] == GW_VIRTUAL and s["reason"].startswith("standby")
                   for s in statuses)  # fmt: skip

    wait_until(gw_standing_by, timeout=20, interval=0.2, what="gw answering again, on standby")
    time.sleep(3)
    assert lab.gateway(network_id) == lab.identities["gw2"].address, "no flapping back at once"
    wait_until(lambda: lab.gateway(network_id) == lab.identities["gw"].address, timeout=30,
               interval=0.5, what="back on the preferred gateway")  # fmt: skip
    wait_until(lambda: lab.whoami() == GW_UPLINK, timeout=10, what="traffic through gw again")
