"""The leak test of a full tunnel (`oneservice-cli leaktest`): the verdicts (pure) and what it
takes from the kernel (Linux: a temporary nft table that counts, and probes that die at the
first hop).

Four checks, each PASS or FAIL with its figures: where the kernel routes sample destinations
of both families; where DNS queries go; what the gateway sees of us (a `whoami` exchange over
the tunnel with the gateway node itself, so no outside server is needed); and whether
anything but the tunnel's own UDP left the physical interfaces while the test sent probes
(counted in the kernel). The probes go to documentation addresses (RFC 5737, RFC 3849: never
routed on the internet) with a hop limit of 1: through the tunnel or around it, they die at
the first hop, and a counter on the uplinks sees those that went around it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping

from ..records import record
from .nft import delete_table, list_table, match, named_counters, prefixes, replace_table, run_nft
from .planner import FAMILY_NAMES

LEAK_TABLE = "oneservice-leaktest"
PROBES = {4: "198.51.100.1", 6: "2001:db8::1"}
PROBE_PORT = 9  # discard
PROBES_PER_FAMILY = 3
COUNT_FOR_S = 1.0
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@record
class Check:
    name: str
    passed: bool
    detail: str

    def document(self) -> dict:
        return {"check": self.name, "result": "PASS" if self.passed else "FAIL",
                "detail": self.detail}  # fmt: skip


def route_check(routed: Mapping[int, Mapping[str, str | None]],
                expected: Mapping[int, str | None]) -> Check:  # fmt: skip
    """``routed``: per family, the device the kernel chose for each sample (None:
    unreachable); ``expected``: per family, the tunnel's device (None: the family is
    blocked)."""
    parts, wrong = [], []
    for family in sorted(routed):
        want = expected.get(family)
        samples = routed[family]
        bad = {a: d for a, d in samples.items() if d != want}
        where = f"via {want}" if want else "blocked (the gateway offers no default)"
        parts.append(f"{FAMILY_NAMES[family]}: {len(samples) - len(bad)} of {len(samples)} "
                     f"sample destinations {where}")  # fmt: skip
        for address, device in list(bad.items())[:3]:
            wrong.append(f"{address} {'via ' + device if device else 'unreachable'}")
    detail = "; ".join(parts)
    if wrong:
        detail += "; around the tunnel: " + ", ".join(wrong)
    return Check("routes", not wrong, detail)


def dns_check(servers: Iterable[str], how: str, routed: Mapping[str, str | None],
              tunnel: str) -> Check:  # fmt: skip
    """``how``: what sets DNS here ("" if nothing of ours: the system's resolvers, whose
    routes are in ``routed``)."""
    servers = list(servers)
    if how:
        return Check("dns", True, how)
    if not servers:
        return Check("dns", False, "no DNS servers found in /etc/resolv.conf, and none of ours")
    local = [s for s in servers if ipaddress.ip_address(s.split("%")[0]).is_loopback]
    outside = {s: d for s, d in routed.items() if d != tunnel and s not in local}
    if local:
        return Check("dns", False, f"a local resolver ({', '.join(local)}) answers: where it "
                                   "forwards is not known here; set allowDNS to use the "
                                   "network's servers")  # fmt: skip
    if outside:
        where = ", ".join(f"{s} via {d or 'nowhere'}" for s, d in outside.items())
        return Check("dns", False, f"queries leave around the tunnel: {where} (allowDNS "
                                   "sends them to the network's servers)")  # fmt: skip
    return Check("dns", True, f"the system's resolvers ({', '.join(servers)}) are reached "
                              f"through the tunnel ({tunnel})")  # fmt: skip


GatewayAnswer = tuple[str, tuple[str, ...], bool | None]


def gateway_check(gateway: str, answer: GatewayAnswer | None, own: Iterable[str]) -> Check:
    """``answer``: (where it sees us, its uplink addresses, whether it forwards for us as exit
    node: None from a node that does not say), or None: no answer in time."""
    if answer is None:
        return Check("gateway", False, f"gateway {gateway} did not answer over the tunnel")
    seen, exits, forwards = answer
    if forwards is False:
        return Check("gateway", False, f"gateway {gateway} does not forward for us: it is not "
                                       "serving as this network's exit node (its "
                                       "settings.allowExitNode, or its forwarding table: see "
                                       "its status), so what we send it goes nowhere")  # fmt: skip
    mine = set(own) & set(exits)
    if mine:
        return Check("gateway", False, f"gateway {gateway} leaves from this machine's own "
                                       f"address {sorted(mine)[0]}")  # fmt: skip
    return Check("gateway", True, f"gateway {gateway} sees us at {seen}; what we send "
                                  f"leaves from {', '.join(exits) or 'its uplinks'}"
                                  + ("" if forwards else " (it does not say whether it "
                                     "forwards: an older node)"))  # fmt: skip


def leak_check(leaked: int, tunnel: int, uplinks: Iterable[str], seconds: float) -> Check:
    names = ", ".join(sorted(uplinks)) or "none"
    detail = (f"{leaked} packet(s) other than the tunnel's own UDP left the physical "
              f"interfaces ({names}) in {seconds:.1f} s, while {2 * PROBES_PER_FAMILY} probes "
              f"were sent; the tunnel's UDP: {tunnel} packet(s)")  # fmt: skip
    return Check("leaks", leaked == 0, detail)


def counter_ruleset(uplinks: Iterable[str], port: int, lan: Iterable[IPNetwork]) -> dict:
    """Counts what leaves the uplinks: the tunnel's UDP apart, and what is no leak (link-local
    and multicast, DHCP, the LAN when it stays direct)."""
    table = {"family": "inet", "table": LEAK_TABLE}
    commands: list[dict] = [
        *replace_table(LEAK_TABLE),
        {"add": {"counter": {**table, "name": "leaked"}}},
        {"add": {"counter": {**table, "name": "tunnel"}}},
        {"add": {"chain": {**table, "name": "output", "type": "filter", "hook": "output",
                           "prio": 10, "policy": "accept"}}},
    ]  # fmt: skip

    def rule(*expression: dict) -> None:
        commands.append({"add": {"rule": {**table, "chain": "output", "expr": list(expression)}}})

    rule({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}},
                    "right": {"set": sorted(set(uplinks))}}}, {"accept": None})  # fmt: skip
    rule(match({"meta": {"key": "l4proto"}}, "udp"),
         match({"payload": {"protocol": "udp", "field": "sport"}}, port),
         {"counter": "tunnel"}, {"accept": None})  # fmt: skip
    rule(match({"payload": {"protocol": "udp", "field": "dport"}}, {"set": [67, 547]}),
         {"accept": None})  # fmt: skip
    quiet = {4: [ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("255.255.255.255/32")],
             6: [ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("ff00::/8")]}
    for network in lan:
        quiet[network.version].append(network)
    for family, protocol in ((4, "ip"), (6, "ip6")):
        rule(match({"payload": {"protocol": protocol, "field": "daddr"}},
                   prefixes(quiet[family])), {"accept": None})  # fmt: skip
    rule({"counter": "leaked"})
    return {"nftables": commands}


def count_leaks(uplinks: Iterable[str], port: int, lan: Iterable[IPNetwork]) -> tuple[int, int]:
    """Blocking: the table in, probes sent, COUNT_FOR_S waited, (leaked, tunnel) read, the
    table removed (also when something failed). NftError if nft cannot do it."""
    run_nft(counter_ruleset(uplinks, port, lan))
    try:
        send_probes()
        time.sleep(COUNT_FOR_S)
        counters = named_counters(list_table("inet", LEAK_TABLE))
    finally:
        run_nft(delete_table(LEAK_TABLE), missing_ok=True)
    return counters.get("leaked", 0), counters.get("tunnel", 0)


def send_probes() -> None:
    """UDP to the documentation addresses, hop limit 1, from ordinary sockets: routed as any
    application's traffic is."""
    for family, address in PROBES.items():
        kind = socket.AF_INET if family == 4 else socket.AF_INET6
        with contextlib.suppress(OSError), socket.socket(kind, socket.SOCK_DGRAM) as probe:
            if family == 4:
                probe.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
            else:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
            for _ in range(PROBES_PER_FAMILY):
                with contextlib.suppress(OSError):  # unreachable (a blocked family): fine
                    probe.sendto(b"oneservice leak test", (address, PROBE_PORT))


def resolv_conf_servers(text: str) -> list[str]:
    servers = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(parts[1].split("%")[0])
                servers.append(parts[1])
    return servers
