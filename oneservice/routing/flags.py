"""What the user lets a network do to this machine's routing: ZeroTier's flags, ours added.

Stored per network in `networks.d/<network id>.local.conf` (JSON), changeable at run time:

    allowManaged    true   routes to private subnets (or only inside the CIDRs of a list)
    allowGlobal     false  routes to public address space
    allowDefault    false  the default route: all traffic through the network's gateway
    allowDNS        false  the network's DNS servers and search domain
    allowLanAccess  true   during full tunnel, directly connected subnets stay direct
    fullTunnelQuarters false  the default as four /2 routes instead of two /1 halves: more
                           specific than another VPN's /1 halves, so ours win over them
    fullTunnelOnly   []    per-port split: only these through the full tunnel (e.g.
                           ["tcp/80"]), everything else direct
    fullTunnelExcept []    per-port split: everything through the full tunnel but these
                           (e.g. ["tcp/443", "udp/443"]), which go direct

They are checked in ZeroTier's order: a default route needs allowDefault, a route into public
space allowGlobal, anything else allowManaged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..files import DamagedFile, network_down, read_json_object, write_atomically
from ..network.config import NETWORKS_DIR, shown
from ..records import record

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FlagsError(ValueError):
    """A flag's value is wrong; the message names the flag and the value."""


@record(order=True)
class PortSpec:
    """Traffic of one protocol to a port or a range of ports: "tcp/80", "udp/60000-61000"."""

    protocol: str  # "tcp" or "udp"
    first: int
    last: int

    @property
    def number(self) -> int:
        """The IP protocol number."""
        return PROTOCOL_NUMBERS[self.protocol]

    def __str__(self) -> str:
        ports = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.protocol}/{ports}"


PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}
MAX_PORT_SPECS = 16


def parse_port_specs(name: str, value: Any) -> tuple[PortSpec, ...]:
    """A flag's list of "tcp/80"-like strings; FlagsError names what is wrong."""
    usage = (f'{name} must be a list of at most {MAX_PORT_SPECS} "<tcp|udp>/<port>" or '
             f'"<tcp|udp>/<first>-<last>" strings, e.g. ["tcp/80"]')  # fmt: skip
    if not isinstance(value, list) or len(value) > MAX_PORT_SPECS:
        raise FlagsError(f"{usage}; got {shown(value)}")
    specs = []
    for item in value:
        protocol, _, ports = item.partition("/") if isinstance(item, str) else ("", "", "")
        first, _, last = ports.partition("-")
        try:
            digits = first + last
            if protocol not in PROTOCOL_NUMBERS or not first or not (
                    digits.isascii() and digits.isdigit()):  # fmt: skip
                raise ValueError
            spec = PortSpec(protocol, int(first), int(last or first))
            if not 1 <= spec.first <= spec.last <= 65535:
                raise ValueError
        except ValueError:
            raise FlagsError(f"{usage}; got {shown(item)}") from None
        if spec not in specs:
            specs.append(spec)
    return tuple(sorted(specs))


@record
class NetworkFlags:
    allow_managed: bool | tuple[IPNetwork, ...] = True
    allow_global: bool = False
    allow_default: bool = False
    allow_dns: bool = False
    allow_lan_access: bool = True
    full_tunnel_quarters: bool = False
    full_tunnel_only: tuple[PortSpec, ...] = ()
    full_tunnel_except: tuple[PortSpec, ...] = ()

    def split(self) -> str:
        """The per-port split in force, in words ("" for none)."""
        if self.full_tunnel_only:
            return f"only {', '.join(map(str, self.full_tunnel_only))} through the tunnel"
        if self.full_tunnel_except:
            return (f"everything through the tunnel but "
                    f"{', '.join(map(str, self.full_tunnel_except))}, which go direct")
        return ""

    def document(self) -> dict[str, Any]:
        managed = self.allow_managed
        return {
            "allowManaged": managed if isinstance(managed, bool) else [str(n) for n in managed],
            "allowGlobal": self.allow_global,
            "allowDefault": self.allow_default,
            "allowDNS": self.allow_dns,
            "allowLanAccess": self.allow_lan_access,
            "fullTunnelQuarters": self.full_tunnel_quarters,
            "fullTunnelOnly": [str(p) for p in self.full_tunnel_only],
            "fullTunnelExcept": [str(p) for p in self.full_tunnel_except],
        }

    def changed(self, changes: dict[str, Any]) -> NetworkFlags:
        """These flags with ``changes`` (API names) applied; FlagsError if any is wrong."""
        return parse_flags({**self.document(), **changes})


_NAMES = {
    "allowManaged": "allow_managed",
    "allowGlobal": "allow_global",
    "allowDefault": "allow_default",
    "allowDNS": "allow_dns",
    "allowLanAccess": "allow_lan_access",
    "fullTunnelQuarters": "full_tunnel_quarters",
    "fullTunnelOnly": "full_tunnel_only",
    "fullTunnelExcept": "full_tunnel_except",
}
FLAG_NAMES = tuple(_NAMES)
assert set(_NAMES.values()) == {f.name for f in fields(NetworkFlags)}


def _boolean(name: str, value: Any) -> bool:
    # ZeroTier's CLI sends 0/1 and "true"/"false"; accept those spellings, nothing vaguer.
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("0", "1", "true", "false"):
        return value.lower() in ("1", "true")
    raise FlagsError(f"{name} must be true or false (or 1/0), got {shown(value)}")



def parse_flags(document: Any) -> NetworkFlags:
    if not isinstance(document, dict):
        raise FlagsError("network flags must be a JSON object")
    unknown = sorted(set(document) - set(_NAMES))
    if unknown:
        raise FlagsError(f"unknown flag {json.dumps(unknown[0])}; known: {', '.join(FLAG_NAMES)}")
    values: dict[str, Any] = {}
    for name, attribute in _NAMES.items():
        if name not in document:
            continue
        value = document[name]
        if name == "allowManaged" and isinstance(value, list):
            try:
                if not all(isinstance(v, str) for v in value):
                    raise ValueError
                values[attribute] = tuple(ipaddress.ip_network(v) for v in value)
            except (TypeError, ValueError):
                raise FlagsError(
                    f"allowManaged must be true/false or a list of CIDRs, got {shown(value)}"
                ) from None
        elif name in ("fullTunnelOnly", "fullTunnelExcept"):
            values[attribute] = parse_port_specs(name, value)
        else:
            values[attribute] = _boolean(name, value)
    flags = NetworkFlags(**values)
    if flags.full_tunnel_only and flags.full_tunnel_except:
        raise FlagsError("fullTunnelOnly and fullTunnelExcept exclude each other: set one (the "
                         "other to [])")  # fmt: skip
    return flags


def flags_path(home: Path, network_id: str) -> Path:
    return home / NETWORKS_DIR / f"{network_id}.local.conf"


def load_flags(home: Path, network_id: str) -> NetworkFlags:
    """The saved flags, or the defaults when none were saved; FlagsError names a damaged file
    (it is left as it is)."""
    path = flags_path(home, network_id)
    try:
        document = read_json_object(path)
        return NetworkFlags() if document is None else parse_flags(document)
    except (DamagedFile, FlagsError) as exc:
        raise FlagsError(str(exc) if isinstance(exc, DamagedFile) else f"{path}: {exc}") from None


def save_flags(home: Path, network_id: str, flags: NetworkFlags) -> None:
    """WriteFailed if the file cannot be written (the old one is then unchanged)."""
    write_atomically(flags_path(home, network_id), json.dumps(flags.document(), indent=1) + "\n")


def delete_flags(home: Path, network_id: str) -> None:
    flags_path(home, network_id).unlink(missing_ok=True)


class FlagsStore:
    """Each network's flags as saved in ``networks.d/<nwid>.local.conf``, read once; a damaged
    file keeps its network down (its reason in ``error``) and is never written over."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._flags: dict[str, NetworkFlags] = {}
        self._errors: dict[str, str] = {}

    def of(self, network_id: str) -> NetworkFlags:
        """The network's flags (the defaults while its file is damaged or absent)."""
        if network_id not in self._flags:
            try:
                self._flags[network_id] = load_flags(self.home, network_id)
                self._errors.pop(network_id, None)
            except FlagsError as exc:
                # The network stays down (NetworkRegistry.down_reason): running it with other
                # flags than the user saved could route or leak what they meant not to. The
                # file stays as it is.
                self._errors[network_id] = network_down(exc, network_id)
                log.error("%s", self._errors[network_id])
                self._flags[network_id] = NetworkFlags()
        return self._flags[network_id]

    def error(self, network_id: str) -> str:
        """Why this network's flags file cannot be used ("" if it can)."""
        self.of(network_id)
        return self._errors.get(network_id, "")

    def set(self, network_id: str, changes: dict) -> NetworkFlags:
        """FlagsError if a change is wrong, WriteFailed if it cannot be saved; nothing is then
        changed."""
        if self.error(network_id):
            raise FlagsError(f"{self._errors[network_id]}; fix or remove that file first "
                             "(the node does not write over it)")  # fmt: skip
        flags = self.of(network_id).changed(changes)
        save_flags(self.home, network_id, flags)
        self._flags[network_id] = flags
        self._errors.pop(network_id, None)
        return flags

    def forget(self, network_id: str) -> None:
        """The network was left: its flags go, file and all."""
        self._flags.pop(network_id, None)
        self._errors.pop(network_id, None)
        delete_flags(self.home, network_id)
