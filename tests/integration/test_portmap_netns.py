"""A member behind a NAT that maps every destination to a new port (a carrier's NAT: Linux
`masquerade random,fully-random`) whose router runs Debian's miniupnpd (issue 27, item 5):
the node asks the router for a mapping (PCP first; UPnP IGD where the router speaks only
that), tells the other member, and the pair goes direct instead of staying relayed; GET
/status says which protocol mapped which port, the other member calls the path
"port-mapped", and a clean stop deletes the mapping at the router. The lab is natlab.py's;
nat2's WAN is the lab's one non-reserved address block (miniupnpd maps nothing on reserved
ones)."""

from __future__ import annotations

import time

import pytest

from tests.integration.natlab import MAPPING_WAN, NatLab
from tests.testbed import wait_until

pytestmark = pytest.mark.integration


def redirects(lab: NatLab) -> str:
    """The router's port forwards as miniupnpd wrote them."""
    return lab.routers["nat2"].run("nft", "list", "chain", "inet", "filter",
                                   "prerouting_miniupnpd").stdout  # fmt: skip


@pytest.mark.parametrize("router", ["pcp", "upnp"])
def test_a_member_behind_a_hard_nat_goes_direct_through_its_routers_port_mapping(
        testbed, tmp_path, router):  # fmt: skip
    lab = NatLab(testbed, tmp_path, hard=("nat2",), port_mapping=router)
    external = f"{MAPPING_WAN}.10/9993"

    def mapping() -> dict:
        entries = lab.api("m2", "GET", "/status")[1]["portMappings"]
        return next((e for e in entries if e.get("protocol")), {})

    wait_until(lambda: mapping().get("external") == external, timeout=10, interval=0.1,
               what="m2's port mapping")  # fmt: skip
    assert mapping()["protocol"] == router and mapping()["interface"] == "eth0"
    assert "dport 9993" in redirects(lab) and "10.0.2.10" in redirects(lab)

    _, addresses = lab.join_both()
    met = time.monotonic()
    lab.ping("m1", addresses["m2"])  # they meet (through the root first)
    took = lab.wait_direct(timeout=5.0)
    print(f"\n{router}: direct {time.monotonic() - met:.2f} s after meeting ({took:.2f} s wait)")
    to_m2 = lab.preferred("m1", "m2")
    assert to_m2["address"] == external and to_m2["kind"] == "port-mapped", to_m2
    assert lab.ping("m2", addresses["m1"]) and lab.ping("m1", addresses["m2"])

    lab.nodes["m2"].stop()
    assert "dport 9993" not in redirects(lab), "a clean stop deletes the mapping"


def test_without_port_mapping_nothing_is_asked_of_the_router_and_the_path_says_so(
    testbed, tmp_path
):
    """settings.portMapping off (for the paranoid): nothing is asked of the router, and the
    pair is relayed or direct by birthday probes (node/birthday.py), which /peer says, never
    port-mapped."""
    lab = NatLab(testbed, tmp_path, hard=("nat2",), port_mapping="pcp",
                 settings={"m2": {"portMapping": False}})  # fmt: skip
    _, addresses = lab.join_both()
    assert lab.ping("m1", addresses["m2"])
    time.sleep(3)
    assert lab.api("m2", "GET", "/status")[1]["portMappings"] == []
    assert "dport" not in redirects(lab)
    kinds = {lab.preferred("m1", "m2")["kind"], lab.preferred("m2", "m1")["kind"]}
    assert kinds in ({"relayed"}, {"birthday"}), kinds
