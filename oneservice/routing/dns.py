"""The network's DNS settings on this machine (allowDNS), through systemd-resolved, or without
it by redirecting queries in the kernel.

Pure planning here, small appliers below it. With resolvectl, per TUN device: the network's
servers and search domain; while that network carries the full tunnel, also the routing
domain "~." so every query goes through the tunnel (a resolver on the local LAN would
otherwise see them). Without resolvectl, while the network carries the full tunnel: an nft
table of ours (REDIRECT_TABLE) sends every query this machine makes to port 53 (UDP and TCP,
to any resolver but a local one on loopback, whose own upstream queries are sent on) to the
network's first server of its family, masqueraded behind the tunnel's address; queries of a
family the network has no server for are refused, not leaked. Without the full tunnel there
is no per-domain DNS without resolved: the status says so, and nothing is changed.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence

from ..records import record
from .nft import delete_table, match, replace_table, run_nft
from .planner import TUNNEL_HELD, TUNNEL_ON, NetworkRouting

REDIRECT_TABLE = "oneservice-dns"
LOOPBACK = {4: "127.0.0.0/8", 6: "::1/128"}


@record
class DnsSetting:
    device: str
    servers: tuple[str, ...]
    domains: tuple[str, ...]


def plan_dns(
    networks: Sequence[NetworkRouting], full_tunnel: dict[str, str]
) -> dict[str, DnsSetting]:
    """network id -> what its device's DNS should be (networks without allowDNS or without
    servers are absent: their devices keep no DNS settings of ours)."""
    wanted = {}
    for network in networks:
        config = network.config
        if not network.flags.allow_dns or not config.dns_servers:
            continue
        domains = (config.dns_domain,) if config.dns_domain else ()
        if full_tunnel.get(config.id) in (TUNNEL_ON, TUNNEL_HELD):
            domains += ("~.",)
        wanted[config.id] = DnsSetting(network.device, tuple(config.dns_servers), domains)
    return wanted


@record
class DnsRedirect:
    """Every query to port 53 goes to ``servers`` (one per family; a family absent: refused),
    out of ``device``, the full tunnel's."""

    network_id: str
    device: str
    servers: tuple[tuple[int, str], ...]  # (family, address)

    def describe(self) -> str:
        shown = ", ".join(address for _, address in self.servers)
        return (f"servers {shown}: every query to port 53 is redirected to them through the "
                "tunnel (no systemd-resolved here; nft table inet " + REDIRECT_TABLE + ")")


def plan_dns_redirect(
    networks: Sequence[NetworkRouting], full_tunnel: dict[str, str]
) -> DnsRedirect | None:
    """Without resolved: the redirect for the network carrying the full tunnel, if it has
    allowDNS and servers (None otherwise: nothing is redirected)."""
    for network in networks:
        config = network.config
        if (not network.flags.allow_dns or not config.dns_servers
                or full_tunnel.get(config.id) not in (TUNNEL_ON, TUNNEL_HELD)):  # fmt: skip
            continue
        first: dict[int, str] = {}
        for server in config.dns_servers:
            first.setdefault(ipaddress.ip_address(server).version, str(server))
        return DnsRedirect(config.id, network.device, tuple(sorted(first.items())))
    return None


def redirect_ruleset(redirect: DnsRedirect) -> dict:
    """The whole table, replaced in one transaction."""
    table = {"family": "inet", "table": REDIRECT_TABLE}
    commands: list[dict] = [
        *replace_table(REDIRECT_TABLE),
        {"add": {"chain": {**table, "name": "output", "type": "nat", "hook": "output",
                           "prio": -100, "policy": "accept"}}},
        {"add": {"chain": {**table, "name": "postrouting", "type": "nat",
                           "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        {"add": {"chain": {**table, "name": "refuse", "type": "filter", "hook": "output",
                           "prio": 0, "policy": "accept"}}},
    ]  # fmt: skip
    servers = dict(redirect.servers)
    dns = [match({"meta": {"key": "l4proto"}}, {"set": ["udp", "tcp"]}),
           match({"payload": {"protocol": "th", "field": "dport"}}, 53)]  # fmt: skip
    for family, protocol in ((4, "ip"), (6, "ip6")):
        address, length = LOOPBACK[family].split("/")
        not_local = {"match": {"op": "!=", "left": {"payload": {"protocol": protocol,
                                                                 "field": "daddr"}},
                               "right": {"prefix": {"addr": address, "len": int(length)}}}}
        of_family = match({"meta": {"key": "nfproto"}}, f"ipv{family}")
        server = servers.get(family)
        if server is None:  # no server of this family: refused (applications try the other)
            commands.append({"add": {"rule": {**table, "chain": "refuse", "expr": [
                of_family, *dns, not_local, {"counter": None}, {"reject": None}]}}})
            continue
        commands.append({"add": {"rule": {**table, "chain": "output", "expr": [
            of_family, *dns, not_local,
            {"dnat": {"family": protocol, "addr": server}}]}}})  # fmt: skip
    # The query left with the source address of the route it first had (the LAN's, say):
    # the tunnel's own, so that the far end accepts it from us.
    commands.append({"add": {"rule": {**table, "chain": "postrouting", "expr": [
        match({"meta": {"key": "oifname"}}, redirect.device),
        {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, *dns,
        {"masquerade": None}]}}})
    return {"nftables": commands}


class LinuxDnsRedirect:
    """Applies a DnsRedirect (or removes it); blocking (nft: run in a worker thread)."""

    def __init__(self) -> None:
        self.applied: DnsRedirect | None = None

    def apply(self, redirect: DnsRedirect | None) -> None:
        """NftError says what failed."""
        if redirect == self.applied:
            return
        run_nft(redirect_ruleset(redirect) if redirect else delete_table(REDIRECT_TABLE),
                missing_ok=redirect is None)  # fmt: skip
        self.applied = redirect

    @staticmethod
    def remove() -> None:
        """At start and stop: whatever table of ours is there goes."""
        run_nft(delete_table(REDIRECT_TABLE), missing_ok=True)


class ResolvectlDns:
    """Applies DnsSettings with resolvectl; blocking (run in a worker thread)."""

    def __init__(self) -> None:
        self.applied: dict[str, DnsSetting] = {}

    @staticmethod
    def available() -> bool:
        """Whether resolvectl is on the PATH. (Not shutil.which: shutil loads bz2 and lzma
        with it, 0.5 MiB of an idle node, for this one look-up made at every routing change.)"""
        directories = os.environ.get("PATH", os.defpath).split(os.pathsep)
        return any(os.access(os.path.join(directory, "resolvectl"), os.X_OK)
                   and os.path.isfile(os.path.join(directory, "resolvectl"))
                   for directory in directories if directory)  # fmt: skip

    def apply(self, wanted: dict[str, DnsSetting]) -> list[str]:
        errors = []
        for network_id, setting in list(self.applied.items()):
            if wanted.get(network_id) != setting:
                errors += _run("revert", setting.device)
                del self.applied[network_id]
        for network_id, setting in wanted.items():
            if self.applied.get(network_id) == setting:
                continue
            failed = _run("dns", setting.device, *setting.servers)
            failed += _run("domain", setting.device, *setting.domains)
            if not failed:
                self.applied[network_id] = setting
            errors += failed
        return errors


def _run(*argv: str) -> list[str]:
    try:
        result = subprocess.run(["resolvectl", *argv], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"resolvectl {' '.join(argv)}: {exc}"]
    if result.returncode != 0:
        return [f"resolvectl {' '.join(argv)}: {result.stderr.strip() or result.returncode}"]
    return []
