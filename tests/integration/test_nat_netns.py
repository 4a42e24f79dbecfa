"""Members behind NAT routers (issue 27): a NAT that changes its public address, as a redial
does, must not cut member-to-member traffic for more than a second, and the pair must go
direct again within 5 s, every time."""

from __future__ import annotations

import time

import pytest

from tests.integration.natlab import NatLab, Pinger, longest_silence
from tests.testbed import wait_until

pytestmark = pytest.mark.integration


def test_a_nat_that_changes_address_cuts_traffic_under_a_second_and_the_pair_goes_direct_again(
    testbed, tmp_path
):
    lab = NatLab(testbed, tmp_path)
    _, addresses = lab.join_both()
    wait_until(lambda: lab.ping("m1", addresses["m2"]), timeout=15, what="m1 -> m2 ping")
    lab.wait_direct(timeout=10)
    pinger = Pinger(lab.hosts["m1"], addresses["m2"])
    results = []
    try:
        for new_public in ("198.51.100.20", "198.51.100.30", "198.51.100.40"):
            time.sleep(3)
            readdressed = time.time()
            lab.readdress("nat1", new_public)
            direct_after = lab.wait_direct(timeout=30, m1_public=new_public + "/")
            seen_by_m2 = lab.preferred("m2", "m1")["address"]
            time.sleep(1.5)
            results.append((new_public, readdressed, direct_after, seen_by_m2))
    finally:
        replies = pinger.stop()
    report = []
    for new_public, readdressed, direct_after, seen_by_m2 in results:
        silence = longest_silence([t for t in replies if t < readdressed + 6], readdressed)
        report.append(f"nat1 -> {new_public}: silent {silence:.2f} s, direct again after "
                      f"{direct_after:.2f} s, m2 sends to {seen_by_m2}")  # fmt: skip
    print("\n" + "\n".join(report))
    for (new_public, readdressed, direct_after, seen_by_m2), line in zip(results, report,
                                                                         strict=True):
        assert seen_by_m2.startswith(new_public + "/"), line
        assert direct_after <= 5.0, line
        assert longest_silence([t for t in replies if t < readdressed + 6], readdressed) <= 1.0, (
            line
        )


def test_two_members_behind_one_nat_talk_over_their_lan_within_two_seconds(testbed, tmp_path):
    """The router does no hairpin NAT (most do not): only the members' own addresses, told
    to each other over their session, find the LAN path."""
    lab = NatLab(testbed, tmp_path, with_m3=True)
    _, addresses = lab.join_both()
    started = time.monotonic()
    wait_until(lambda: lab.ping("m1", addresses["m3"]), timeout=15, what="m1 -> m3 ping")

    def on_the_lan() -> bool:
        there = lab.preferred("m1", "m3"), lab.preferred("m3", "m1")
        return [p.get("kind") for p in there] == ["lan", "lan"] and [
            p["address"] for p in there] == ["10.0.1.11/9993", "10.0.1.10/9993"]

    wait_until(on_the_lan, timeout=10, interval=0.1, what="m1 and m3 on their LAN")
    took = time.monotonic() - started
    print(f"\nm1 <-> m3 over their LAN {took:.2f} s after the first ping")
    assert took <= 2.0
    # m2, behind the other router, is reached at its public address: a direct path.
    wait_until(lambda: lab.ping("m1", addresses["m2"]), timeout=15, what="m1 -> m2 ping")
    wait_until(lambda: lab.preferred("m1", "m2").get("kind") == "direct", timeout=10,
               interval=0.2, what="m1 -> m2 direct")  # fmt: skip
    _, peers = lab.api("m1", "GET", "/peer")
    root = next(p for p in peers if p["address"] == lab.identities["ctrl"].address)
    assert any(p["kind"] == "direct" for p in root["paths"])
