"""Our own rtnetlink client against the real kernel: the routes and rules a plan asks for are
the ones `ip` then shows, read back as what was written (a second apply changes nothing),
replaced in one step, refused with the kernel's reason, and all removed again; route lookups
and the interface dump say what `ip` says."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.testbed import Host, Testbed

pytestmark = pytest.mark.integration

PLAN = {
    "routes": [
        [4, "0.0.0.0/1", "10.9.0.2", "eth0", 3000],
        [4, "198.51.100.7/32", None, "eth0", 254],
        [6, "2001:db8:1::/48", None, "eth0", 52],
        [6, "::/0", None, "", 3000, "unreachable"],
    ],
    "rules": [
        [4, "0.0.0.0/0", 3000, 5211, 6, "80:443", -1],
        [4, "0.0.0.0/0", 254, 5210, 0, "", 0],
        [6, "fd00::/8", 3000, 5212],
    ],
}


def run_steps(host: Host, steps: list[dict]) -> list:
    process = host.python("-m", "tests.integration.routes_driver", stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = process.communicate(json.dumps(steps), timeout=60)
    assert process.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


def ours_in_kernel(host: Host) -> set[str]:
    """Our routes and rules as `ip` shows them."""
    shown = set()
    for family in ("-4", "-6"):
        for route in json.loads(host.ip(family, "-j", "route", "show", "table", "all",
                                        "proto", "165").stdout):  # fmt: skip
            shown.add(" ".join(f"{key}={route[key]}" for key in
                               ("type", "dst", "gateway", "dev", "table") if key in route))
        for rule in json.loads(host.ip(family, "-j", "rule", "show").stdout):
            if 5210 <= rule["priority"] < 5220:
                shown.add(" ".join(f"{key}={rule[key]}" for key in
                                   ("priority", "dst", "dstlen", "ipproto", "dport_start",
                                    "dport_end", "table") if key in rule))  # fmt: skip
    return shown


def test_routes_and_rules_round_trip_through_the_kernel():
    bed = Testbed()
    try:
        host, other = bed.host("node"), bed.host("router")
        bed.link(host, "eth0", other, "eth0", ["10.9.0.1/24", "2001:db8:9::1/64"],
                 ["10.9.0.2/24", "2001:db8:9::2/64"])  # fmt: skip
        host.ip("route", "add", "default", "via", "10.9.0.2", "metric", "50")
        wanted = {
            "dst=0.0.0.0/1 gateway=10.9.0.2 dev=eth0 table=3000",
            "dst=198.51.100.7 dev=eth0",
            "dst=2001:db8:1::/48 dev=eth0 table=52",
            "type=unreachable dst=default dev=lo table=3000",
            "priority=5210 table=main",
            "priority=5211 ipproto=tcp dport_start=80 dport_end=443 table=3000",
            "priority=5212 dst=fd00:: dstlen=8 table=3000",
        }
        assert run_steps(host, [{"apply": PLAN}]) == [[]]
        assert ours_in_kernel(host) == wanted
        assert "suppress_prefixlength 0" in host.ip("rule", "show", "priority", "5210").stdout
        # A node started again reads back what it wrote: nothing to change.
        assert run_steps(host, [{"apply": PLAN}]) == [[]]
        assert ours_in_kernel(host) == wanted

        # The full tunnel's route moving off its gateway: replaced in one step.
        moved = {**PLAN, "routes": [[4, "0.0.0.0/1", None, "eth0", 3000], *PLAN["routes"][1:]]}
        assert run_steps(host, [{"apply": moved}]) == [[]]
        assert ours_in_kernel(host) == (wanted - {
            "dst=0.0.0.0/1 gateway=10.9.0.2 dev=eth0 table=3000"}) | {
            "dst=0.0.0.0/1 dev=eth0 table=3000"}  # fmt: skip

        # What cannot be: refused with the reason, the rest still applied.
        refused = {**moved, "routes": [*moved["routes"], [4, "10.1.0.0/16", None, "nope0"],
                                       [4, "10.2.0.0/16", "10.99.0.1", "eth0"]]}  # fmt: skip
        [refusals] = run_steps(host, [{"apply": refused}])
        assert refusals == ["add route 10.1.0.0/16 dev nope0: no device nope0",
                            "add route 10.2.0.0/16 via 10.99.0.1 dev eth0: "
                            "Network is unreachable"]  # fmt: skip

        [devices, interfaces] = run_steps(host, [
            {"devices": ["192.0.2.1", "2001:db8:5::1", "10.9.0.2", "not an address"]},
            {"interfaces": True}])  # fmt: skip
        assert devices == {"192.0.2.1": "eth0", "2001:db8:5::1": None, "10.9.0.2": "eth0",
                           "not an address": None}  # fmt: skip
        eth0 = next(i for i in interfaces if i["name"] == "eth0")
        assert eth0["kind"] == "veth" and eth0["up"] and eth0["running"]
        assert eth0["default_metric"] == 50 and eth0["default_gateway"] == "10.9.0.2"
        assert {(a["address"], a["prefixlen"]) for a in eth0["addresses"]} >= {
            ("10.9.0.1", 24), ("2001:db8:9::1", 64)}  # fmt: skip
        assert next(i for i in interfaces if i["name"] == "lo")["loopback"]

        assert run_steps(host, [{"remove_all": True}]) == [7]
        assert ours_in_kernel(host) == set()
        assert "default via 10.9.0.2" in host.ip("route", "show").stdout, "not ours: kept"
    finally:
        bed.cleanup()
