"""A relayed spell under load leaves UDP GSO on, and TCP through the relay adapts its size.

A relay frame is 37 bytes larger than the datagram it carries, so full-size packets relayed
used to make batches over the uplink's MTU: the kernel refused them (EMSGSIZE), and that one
refusal turned GSO off for good, leaving the direct path at a quarter of its speed until
restart (docs/PROTOCOL.md, "MTU")."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.integration.test_controller_netns import Lab, block, members_in_touch
from tests.testbed import wait_until

pytestmark = pytest.mark.integration


def iperf(lab: Lab, target: str, seconds: int) -> float:
    """Mbit/s from the client to ``target`` through the tunnel (TCP, one stream)."""
    result = lab.hosts["client"].run("iperf3", "-c", target, "-t", str(seconds), "-J",
                                     timeout=seconds + 20)  # fmt: skip
    return json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6


def test_a_relayed_spell_under_load_leaves_gso_on_and_relayed_tcp_flows(testbed, tmp_path):
    lab = Lab(testbed, tmp_path)
    gw_ip = members_in_touch(lab)
    gw, ctrl = lab.identities["gw"].address, lab.identities["ctrl"].address

    def preferred_path() -> str:
        paths = (lab.api("client", "GET", f"/peer/{gw}")[1] or {}).get("paths", [])
        return next((p["address"] for p in paths if p["preferred"]), "")

    lab.hosts["gw"].spawn("iperf3", "-s", "-B", gw_ip, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    assert preferred_path() == "198.51.100.10/9993"
    before = iperf(lab, gw_ip, 3)

    block(lab.router, "198.51.100.10", "203.0.113.10")
    wait_until(lambda: not lab.ping("client", gw_ip) or preferred_path() == f"{ctrl}/0",
               timeout=10, what="the block to bite")  # fmt: skip
    wait_until(lambda: lab.ping("client", gw_ip) and preferred_path() == f"{ctrl}/0",
               timeout=15, interval=0.3, what="the relay to carry the pair")  # fmt: skip
    relayed = iperf(lab, gw_ip, 3)  # full-size segments first: answered "too big", then smaller
    lab.router.run("nft", "delete", "table", "inet", "blockade")
    wait_until(lambda: lab.ping("client", gw_ip) and preferred_path() == "198.51.100.10/9993",
               timeout=15, interval=0.3, what="back to the direct path")  # fmt: skip
    after = iperf(lab, gw_ip, 3)
    print(f"\nclient -> gw: direct {before:.0f} Mbit/s, relayed {relayed:.0f}, direct again "
          f"{after:.0f}")  # fmt: skip

    for name in ("client", "gw", "ctrl"):
        _, binder = lab.api(name, "GET", "/binder")
        off = [(b["interface"], b["gsoOffReason"]) for b in binder["bound"] if not b["gso"]]
        assert off == [], f"{name}: GSO turned off by the relayed spell: {off}"
        _, status = lab.api(name, "GET", "/status")
        assert "EMSGSIZE" not in status["counters"]["sendErrors"], (name, status["counters"])
    _, client_status = lab.api("client", "GET", "/status")
    assert client_status["counters"]["packetDrops"].get("too_big_relayed", 0) > 0, (
        "full-size segments met the relay and were answered 'too big'"
    )
    assert relayed > 1, "TCP through the relay flows once told the smaller size"
