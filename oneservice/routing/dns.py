"""The network's DNS settings on this machine (allowDNS), through systemd-resolved.

Pure planning here, one small applier below it. Per TUN device: the network's servers and
search domain; while that network carries the full tunnel, also the routing domain "~." so
every query goes through the tunnel (a resolver on the local LAN would otherwise see them).
Without resolvectl nothing is changed and the network's status says so.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from .planner import TUNNEL_HELD, TUNNEL_ON, NetworkRouting


@dataclass(frozen=True)
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


class ResolvectlDns:
    """Applies DnsSettings with resolvectl; blocking (run in a worker thread)."""

    def __init__(self) -> None:
        self.applied: dict[str, DnsSetting] = {}

    @staticmethod
    def available() -> bool:
        return shutil.which("resolvectl") is not None

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
