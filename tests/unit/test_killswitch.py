"""When the kill switch is armed, and what its table lets through (pure)."""

from __future__ import annotations

import json
from ipaddress import ip_network

from oneservice.routing.flags import NetworkFlags
from oneservice.routing.killswitch import KillSwitch, plan_kill_switch, ruleset
from oneservice.routing.planner import NetworkRouting, RoutingPlan
from tests.unit.test_route_planner import DEFAULT_V4, network

LAN = [ip_network("192.168.1.0/24")]


def test_armed_only_while_a_fail_closed_tunnel_is_on_or_held():
    config = network(DEFAULT_V4)
    routing = [NetworkRouting(config, "onet1", NetworkFlags(allow_default=True))]
    for state, fail_closed, armed in [("on", True, True), ("held", True, True),
                                      ("off", True, False), ("on", False, False)]:  # fmt: skip
        plan = RoutingPlan(frozenset(), frozenset(), (), {config.id: state})
        switch = plan_kill_switch(routing, plan, fail_closed, 9993, LAN)
        assert (switch is not None) == armed, (state, fail_closed)
    plan = RoutingPlan(frozenset(), frozenset(), (), {config.id: "on"})
    assert plan_kill_switch(routing, plan, True, 9993, LAN) == KillSwitch(("onet1",), 9993,
                                                                          tuple(LAN))  # fmt: skip
    no_lan = [NetworkRouting(config, "onet1", NetworkFlags(allow_default=True,
                                                           allow_lan_access=False))]  # fmt: skip
    assert plan_kill_switch(no_lan, plan, True, 9993, LAN).lan == ()


def test_the_table_drops_by_default_and_names_what_it_lets_through():
    document = ruleset(KillSwitch(("onet1",), 9993, tuple(LAN)))
    commands = document["nftables"]
    [chain] = [c["add"]["chain"] for c in commands if "chain" in c.get("add", {})]
    assert (chain["hook"], chain["policy"]) == ("output", "drop")
    text = json.dumps(commands)
    for allowed in ('"lo"', '"onet1"', "9993", "nd-neighbor-solicit", "192.168.1.0", "67"):
        assert allowed in text, allowed
    assert commands[-1]["add"]["rule"]["expr"] == [{"counter": None}, {"drop": None}]
