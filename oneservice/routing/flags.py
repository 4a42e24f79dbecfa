"""What the user lets a network do to this machine's routing: ZeroTier's flags, ours added.

Stored per network in `networks.d/<network id>.local.conf` (JSON), changeable at run time:

    allowManaged    true   routes to private subnets (or only inside the CIDRs of a list)
    allowGlobal     false  routes to public address space
    allowDefault    false  the default route: all traffic through the network's gateway
    allowDNS        false  the network's DNS servers and search domain
    allowLanAccess  true   during full tunnel, directly connected subnets stay direct
    fullTunnelQuarters false  the default as four /2 routes instead of two /1 halves: more
                           specific than another VPN's /1 halves, so ours win over them

They are checked in ZeroTier's order: a default route needs allowDefault, a route into public
space allowGlobal, anything else allowManaged.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..files import DamagedFile, read_json_object, write_atomically
from ..network.config import NETWORKS_DIR, shown

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FlagsError(ValueError):
    """A flag's value is wrong; the message names the flag and the value."""


@dataclass(frozen=True)
class NetworkFlags:
    allow_managed: bool | tuple[IPNetwork, ...] = True
    allow_global: bool = False
    allow_default: bool = False
    allow_dns: bool = False
    allow_lan_access: bool = True
    full_tunnel_quarters: bool = False

    def document(self) -> dict[str, Any]:
        managed = self.allow_managed
        return {
            "allowManaged": managed if isinstance(managed, bool) else [str(n) for n in managed],
            "allowGlobal": self.allow_global,
            "allowDefault": self.allow_default,
            "allowDNS": self.allow_dns,
            "allowLanAccess": self.allow_lan_access,
            "fullTunnelQuarters": self.full_tunnel_quarters,
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
        else:
            values[attribute] = _boolean(name, value)
    return NetworkFlags(**values)


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
