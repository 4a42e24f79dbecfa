"""Controller and roots in namespaces: join by network id, authorization, restarts."""

from __future__ import annotations

import re

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import Node, NodeLab, write_home, write_local_conf
from tests.testbed import Host, Testbed, wait_until

pytestmark = pytest.mark.integration


class Lab(NodeLab):
    """ctrl (controller + root) 192.0.2.10, gw 198.51.100.10, client 203.0.113.10, all behind
    one router; gw and client know only the root."""

    def __init__(self, bed: Testbed, tmp_path) -> None:
        super().__init__()
        self.bed = bed
        self.router = bed.host("router", forwarding=True)
        self.identities = {name: Identity.generate() for name in ("ctrl", "gw", "client")}
        for name, net in (("ctrl", "192.0.2"), ("gw", "198.51.100"), ("client", "203.0.113")):
            host = self.hosts[name] = bed.host(name)
            bed.link(host, "eth0", self.router, f"r-{name}", [f"{net}.10/24"], [f"{net}.1/24"])
            host.ip("route", "add", "default", "via", f"{net}.1")
            home = self.homes[name] = write_home(tmp_path / name, self.identities[name], [])
            if name == "ctrl":
                write_local_conf(home, {"settings": {"relay": True}})
            else:
                write_local_conf(home, {"roots": [{
                    "identity": self.identities["ctrl"].public_text(),
                    "endpoints": ["192.0.2.10/9993"],
                }]})  # fmt: skip
        for name in ("ctrl", "gw", "client"):
            self.start(name)


def create_network(lab: Lab) -> str:
    return lab.create_network("ctrl", {
        "name": "lab", "routes": [{"target": "10.147.17.0/24"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.200"}],
    })  # fmt: skip


def authorize(lab: Lab, network_id: str, name: str, authorized: bool = True) -> None:
    lab.authorize("ctrl", network_id, name, authorized=authorized)


def test_join_by_network_id_authorize_restart_and_deauthorize(testbed, tmp_path):
    lab = Lab(testbed, tmp_path)
    network_id = create_network(lab)
    for name in ("gw", "client"):
        code, body = lab.api(name, "POST", f"/network/{network_id}", {})
        assert code == 200 and body["status"] == "REQUESTING_CONFIGURATION", body
    lab.wait_status("client", network_id, "ACCESS_DENIED")
    code, revisions = lab.api("ctrl", "GET", f"/controller/network/{network_id}/member")
    # ZeroTier's shape: {"<address>": <revision>}, each member read on its own.
    assert set(revisions) == {lab.identities[n].address for n in ("gw", "client")}
    members = [lab.api("ctrl", "GET", f"/controller/network/{network_id}/member/{a}")[1]
               for a in revisions]  # fmt: skip
    assert not any(m["authorized"] for m in members)

    for name in ("gw", "client"):
        authorize(lab, network_id, name)
    lab.wait_status("client", network_id, "OK")
    lab.wait_status("gw", network_id, "OK")
    _, gw_network = lab.api("gw", "GET", f"/network/{network_id}")
    _, client_network = lab.api("client", "GET", f"/network/{network_id}")
    gw_ip = gw_network["assignedAddresses"][0].split("/")[0]
    client_ip = client_network["assignedAddresses"][0].split("/")[0]
    assert gw_ip.startswith("10.147.17.") and client_ip.startswith("10.147.17.")
    wait_until(lambda: lab.ping("client", gw_ip), timeout=10, what="client -> gw ping")

    # The controller goes away: members keep working from what they have.
    assert lab.nodes["ctrl"].stop() == 0
    assert lab.ping("client", gw_ip)
    # Members restart without it too: the saved, signed config is enough.
    assert lab.nodes["client"].stop() == 0
    lab.start("client")
    assert lab.status("client", network_id) == "OK"
    wait_until(lambda: lab.ping("client", gw_ip), timeout=10, what="ping after client restart")
    # The controller comes back with its networks.
    lab.start("ctrl")
    code, network = lab.api("ctrl", "GET", f"/controller/network/{network_id}")
    assert code == 200 and network["name"] == "lab"

    # Deauthorized: the client is told, and the gateway stops talking to it.
    client = lab.identities["client"].address
    wait_until(
        lambda: (lab.api("ctrl", "GET", f"/peer/{client}")[1] or {}).get("connected"),
        timeout=20,
        interval=0.3,
        what="the client back in touch with the controller",
    )
    authorize(lab, network_id, "client", authorized=False)
    lab.wait_status("client", network_id, "ACCESS_DENIED")
    wait_until(lambda: not lab.ping("gw", client_ip), timeout=15, what="gw to drop the client")


def test_corrupt_controller_database_stops_the_node_untouched(testbed, tmp_path):
    host = testbed.host("solo")
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    (home / "controller.db").write_bytes(b"garbage" * 50)
    node = Node(host, home)
    assert node.process.wait(timeout=15) != 0
    wait_until(lambda: any("controller.db" in line for line in node.log), what="the error")
    assert any("left untouched" in line for line in node.log)
    assert (home / "controller.db").read_bytes() == b"garbage" * 50


def block(router: Host, a: str, b: str) -> None:
    """Drop everything between two hosts at the router, both ways."""
    router.run(
        "nft",
        "-f",
        "-",
        input=f"""
table inet blockade {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ip saddr {a} ip daddr {b} drop
    ip saddr {b} ip daddr {a} drop
  }}
}}
""",
    )


def members_in_touch(lab: Lab) -> str:
    """gw and client joined and authorized in a new network, the client pinging gw directly:
    gw's address in the network."""
    network_id = create_network(lab)
    for name in ("gw", "client"):
        lab.api(name, "POST", f"/network/{network_id}", {})
        authorize(lab, network_id, name)
    lab.wait_status("client", network_id, "OK")
    lab.wait_status("gw", network_id, "OK")
    _, gw_network = lab.api("gw", "GET", f"/network/{network_id}")
    gw_ip = gw_network["assignedAddresses"][0].split("/")[0]
    wait_until(lambda: lab.ping("client", gw_ip), timeout=10, what="direct ping")
    return gw_ip


def test_members_keep_talking_through_the_root_when_the_direct_path_is_blocked(testbed, tmp_path):
    lab = Lab(testbed, tmp_path)
    gw_ip = members_in_touch(lab)
    gw = lab.identities["gw"].address

    def preferred_path() -> str:
        paths = (lab.api("client", "GET", f"/peer/{gw}")[1] or {}).get("paths", [])
        return next((p["address"] for p in paths if p["preferred"]), "")

    assert preferred_path() == "198.51.100.10/9993"
    ctrl = lab.identities["ctrl"].address
    block(lab.router, "198.51.100.10", "203.0.113.10")
    ping = lab.hosts["client"].run("ping", "-c", "20", "-i", "0.2", "-W", "1", gw_ip,
                                   check=False)  # fmt: skip
    # A silent block raises no interface event: the direct path is given up when its probes
    # go unanswered (usually ~1 s: the replies stop, which earns an early probe; at most
    # ~2 s), then every packet goes through the root.
    answered = {int(m) for m in re.findall(r"icmp_seq=(\d+)", ping.stdout)}
    client = lab.identities["client"].address
    assert set(range(11, 21)) <= answered, (
        f"traffic continues through the root: {ping.stdout}\n"
        f"client's view of gw: {lab.api('client', 'GET', f'/peer/{gw}')[1]}\n"
        f"gw's view of client: {lab.api('gw', 'GET', f'/peer/{client}')[1]}\n"
        f"client's view of the root: {lab.api('client', 'GET', f'/peer/{ctrl}')[1]}"
    )
    assert preferred_path() == f"{ctrl}/0", "the client's path to gw is the relay"

    lab.router.run("nft", "delete", "table", "inet", "blockade")
    wait_until(
        lambda: lab.ping("client", gw_ip) and preferred_path() == "198.51.100.10/9993",
        timeout=15,
        interval=0.3,
        what="back to the direct path",
    )


def test_a_member_authorized_before_it_joins_is_announced_to_the_others_at_once(testbed, tmp_path):
    lab = Lab(testbed, tmp_path)
    network_id = create_network(lab)
    lab.api("gw", "POST", f"/network/{network_id}", {})
    authorize(lab, network_id, "gw")
    authorize(lab, network_id, "client")  # prepared by address: no identity known yet
    lab.wait_status("gw", network_id, "OK")
    lab.api("client", "POST", f"/network/{network_id}", {})
    lab.wait_status("client", network_id, "OK")
    _, client_network = lab.api("client", "GET", f"/network/{network_id}")
    client_ip = client_network["assignedAddresses"][0].split("/")[0]
    # Well before the 30 s refresh: the controller pushed the new member to gw.
    wait_until(lambda: lab.ping("gw", client_ip), timeout=5, what="gw reaching the new member")
