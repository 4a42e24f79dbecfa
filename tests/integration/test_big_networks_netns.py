"""Networks of hundreds of members over an underlay that drops every IP fragment (issue 14,
item 1): the config arrives in chunks that never need fragmentation, IPv4 and IPv6.

Many NATs, firewalls and most IPv6 paths drop fragments. Here both hosts drop them where they
arrive, before the kernel could put them back together: an nft prerouting hook at priority
-450, ahead of the defragmentation hook at -400 (a rule in an output hook would see datagrams
before they are fragmented and drop nothing).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from oneservice.controller.controller import Controller
from oneservice.controller.store import SQLiteStore
from oneservice.identity import Identity
from tests.integration.nodes import NodeLab, write_home, write_local_conf
from tests.testbed import REPO_ROOT, Host, Testbed, wait_until

pytestmark = pytest.mark.integration

MEMBERS = REPO_ROOT / "tests" / "fixtures" / "identities-300.txt"  # public identities only
FRAGMENT_DROP = """
table inet ost_fragment_drop {
  counter fragments4 { }
  counter fragments6 { }
  chain prerouting {
    type filter hook prerouting priority -450; policy accept;
    ip frag-off & 0x3fff != 0 counter name fragments4 drop
    exthdr frag exists counter name fragments6 drop
  }
}
"""
SEND_BIG = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
socket.socket(family, socket.SOCK_DGRAM).sendto(b"x" * 3000, (sys.argv[1], 9))
"""


def fragments_dropped(host: Host) -> int:
    listed = json.loads(host.run("nft", "-j", "list", "table", "inet", "ost_fragment_drop").stdout)
    return sum(item["counter"]["packets"] for item in listed["nftables"] if "counter" in item)


class BigLab(NodeLab):
    """ctrl 192.0.2.10 / 2001:db8:1::10 and member 198.51.100.10 / 2001:db8:2::10, behind one
    router; the member knows the controller (its root) at the chosen family's address."""

    def __init__(self, bed: Testbed, tmp_path: Path, family: str, members: int) -> None:
        super().__init__()
        router = bed.host("router", forwarding=True)
        self.identities = {"ctrl": Identity.generate(), "member": Identity.generate()}
        for name, v4, v6 in (("ctrl", "192.0.2", "2001:db8:1:"), ("member", "198.51.100",
                                                                 "2001:db8:2:")):  # fmt: skip
            host = self.hosts[name] = bed.host(name)
            bed.link(host, "eth0", router, f"r-{name}", [f"{v4}.10/24", f"{v6}:10/64"],
                     [f"{v4}.1/24", f"{v6}:1/64"])  # fmt: skip
            host.ip("route", "add", "default", "via", f"{v4}.1")
            host.ip("-6", "route", "add", "default", "via", f"{v6}:1")
            host.run("nft", "-f", "-", input=FRAGMENT_DROP)
            self.homes[name] = write_home(tmp_path / name, self.identities[name], [])
        self.ctrl_endpoint = "192.0.2.10/9993" if family == "ipv4" else "2001:db8:1::10/9993"
        write_local_conf(self.homes["ctrl"], {"settings": {"relay": True}})
        write_local_conf(self.homes["member"], {"roots": [{
            "identity": self.identities["ctrl"].public_text(), "endpoints": [self.ctrl_endpoint],
        }]})  # fmt: skip
        self.network_id = self._prepare_controller(members)

    def _prepare_controller(self, count: int) -> str:
        """The network with ``count`` members that joined once (their identities known) and
        the lab's member authorized ahead, written before the controller starts."""
        controller = Controller(self.identities["ctrl"],
                                SQLiteStore(self.homes["ctrl"] / "controller.db"))  # fmt: skip
        network_id = controller.create_network(changes={
            "name": "big", "routes": [{"target": "10.147.0.0/16"}],
            "ipAssignmentPools": [{"ipRangeStart": "10.147.1.1", "ipRangeEnd": "10.147.9.254"}],
        })["id"]  # fmt: skip
        identities = [Identity.parse(line, verify=False)  # valid: generated for this fixture
                      for line in MEMBERS.read_text().split()[:count]]
        for identity in [*identities, self.identities["member"].public()]:
            controller.update_member(network_id, identity.address, {"authorized": True})
        store = controller.store
        for identity in identities:
            _, document, _ = store.get_member(network_id, identity.address)
            document["endpoints"] = ["203.0.113.77/9993"]  # hints only: nobody is there
            store.put_member(network_id, identity.address, identity.public_text(), document, 0)
        self.config_bytes = len(json.dumps(controller.config_document(network_id)))
        store.close()
        return network_id


@pytest.mark.parametrize(("family", "members"), [("ipv4", 300), ("ipv6", 100)])
def test_a_big_networks_config_arrives_although_every_fragment_is_dropped(
    testbed, tmp_path, family, members
):
    lab = BigLab(testbed, tmp_path, family, members)
    assert lab.config_bytes > 3 * 1500, "the config would need fragments in one datagram"
    ctrl_ip = lab.ctrl_endpoint.split("/")[0]

    def big_datagram_dropped() -> bool:  # (the first may wait for neighbour discovery)
        lab.hosts["member"].run("python3", "-c", SEND_BIG, ctrl_ip)
        return fragments_dropped(lab.hosts["ctrl"]) >= 2

    wait_until(big_datagram_dropped, timeout=5, interval=0.3,
               what="the underlay to drop a fragmented datagram")  # fmt: skip
    lab.start("ctrl")
    lab.start("member")
    started = time.monotonic()
    assert lab.api("member", "POST", f"/network/{lab.network_id}", {})[0] == 200
    lab.wait_status("member", lab.network_id, "OK", timeout=90)
    print(f"{members} members, config {lab.config_bytes} bytes: OK after "
          f"{time.monotonic() - started:.1f} s")
    _, network = lab.api("member", "GET", f"/network/{lab.network_id}")
    assert network["rejectedConfigs"] == 0 and network["assignedAddresses"]
    assert fragments_dropped(lab.hosts["member"]) == 0, "nothing was sent in fragments"
