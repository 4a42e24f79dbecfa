"""Home directory layout and local.conf: load, validate, explain.

local.conf is JSON shaped like ZeroTier's (``{"settings": {...}}``) so its users feel at home.
Every mistake is reported with the file, the key and the value, and what is allowed; a typo in
a key name is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import urllib.parse
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from .files import DamagedFile, json_type, read_json_object
from .records import record

DEFAULT_PRIMARY_PORT = 9993
# Files in the home directory that the local API and its clients share.
TOKEN_FILE = "authtoken.secret"
METRICS_TOKEN_FILE = "metricstoken.secret"  # GET /metrics only (as zerotier-one's)
PORT_FILE = "oneservice.port"
# Both are written: zerotier-cli -D<home> looks for its own name.
PORT_FILES = (PORT_FILE, "zerotier-one.port")
LOCAL_CONF_NAME = "local.conf"

# Linux interface names are at most 15 bytes (IFNAMSIZ - 1); other systems are similar.
MAX_INTERFACE_NAME_LEN = 15


class SettingsError(Exception):
    """local.conf or a command-line option is wrong; the message says what to change."""


@record
class ProbeUrl:
    host: str  # an address
    port: int
    path: str
    text: str  # as configured

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.host).version


def parse_probe_url(text: str) -> ProbeUrl:
    """settings.captivePortalUrl (routing/portal.py); ValueError saying what is wrong."""
    usage = ('an http:// URL whose host is an address and which answers 204 when no portal is '
             'in the way, e.g. "http://192.0.2.1/generate_204"')  # fmt: skip
    if not isinstance(text, str):
        raise ValueError(f"must be {usage}")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"must be {usage}, got {json.dumps(text)[:200]}")
    try:
        host = str(ipaddress.ip_address(parts.hostname))
    except ValueError:
        raise ValueError(f"must be {usage} (the node resolves no names), got "
                         f"{json.dumps(text)[:200]}") from None
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError(f"has a port outside 1-65535: {json.dumps(text)[:200]}") from None
    return ProbeUrl(host, port, parts.path or "/", text)


@record
class Settings:
    primary_port: int = DEFAULT_PRIMARY_PORT
    # Extra name prefixes never to bind, added to the binder's built-in list.
    interface_prefix_blacklist: tuple[str, ...] = ()
    # Interface names bound even if the classification calls them virtual.
    interface_allowlist: tuple[str, ...] = ()
    # Relay datagrams between nodes that cannot reach each other directly (roots do).
    relay: bool = False
    # Serve as the exit of networks that route their default route via this node.
    allow_exit_node: bool = False
    # As an exit node, forward the networks' traffic to hosts of its own LAN too (otherwise
    # only to the internet beyond it).
    allow_exit_node_lan: bool = False
    # When the full tunnel's gateway goes silent, hold traffic rather than use the local uplink.
    full_tunnel_fail_closed: bool = False
    # Networks (CIDR text) whose clients may use the local API besides loopback.
    allow_management_from: tuple[str, ...] = ()
    # Linux TUN offloads: TCP read and written 64 KiB at a time (off: packet by packet).
    tun_offload: bool = True
    # Ask each uplink's router for a port mapping (PCP, NAT-PMP, UPnP IGD): portmap/.
    port_mapping: bool = True
    # Roots: (public identity text, ("ip/port", ...)) pairs, checked when loaded.
    roots: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Interface name -> metric, instead of its default route's: lower carries the tunnel.
    uplink_metrics: tuple[tuple[str, int], ...] = ()
    # A PostgreSQL connection string for the controller's store (controller/postgres.py);
    # empty: SQLite, controller.db in the home. Holds a password maybe: never logged.
    controller_database: str = field(default="", repr=False)
    # An http:// URL (host by address) answering 204 when no captive portal is in the way:
    # probed when the full tunnel's gateway cannot be reached (routing/portal.py); None: never.
    captive_portal: ProbeUrl | None = None


def default_home() -> Path:
    if sys.platform == "darwin":
        return Path("/Library/Application Support/OneService")
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "OneService"
    return Path("/var/lib/oneservice")


def ensure_home(home: Path) -> Path:
    """Create the home directory (owner-only) if missing; fail clearly if that is impossible."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(
            f"cannot create home directory {home}: {exc.strerror}; run as root or pass --home DIR"
        ) from exc
    if not home.is_dir():
        raise SettingsError(f"home {home} exists but is not a directory")
    return home


def reloaded_settings(running: Settings, read: Settings) -> tuple[Settings, list[str]]:
    """What a reload (SIGHUP) applies of the settings just read, and a warning for each
    change that waits for a restart."""
    warnings = []
    if read.primary_port != running.primary_port:
        warnings.append(f"primaryPort changes only at restart; still {running.primary_port}")
    if read.controller_database != running.controller_database:
        warnings.append("controllerDatabase changes only at restart")
    if read.allow_management_from != running.allow_management_from:
        warnings.append("allowManagementFrom is checked at once, but the API listens beyond "
                        "loopback only if it was set at start")  # fmt: skip
    applied = replace(read, primary_port=running.primary_port,
                      controller_database=running.controller_database)  # fmt: skip
    return applied, warnings


def load_local_conf(home: Path) -> Settings:
    """Read ``<home>/local.conf``; a missing file means defaults."""
    path = home / LOCAL_CONF_NAME
    try:
        document = read_json_object(path)
    except DamagedFile as exc:
        raise SettingsError(str(exc)) from None
    if document is None:
        return Settings()
    return parse_local_conf(document, source=str(path))


_TOP_LEVEL_KEYS = {"settings", "roots"}
_BOOLEAN_SETTINGS = {
    "relay": "relay",
    "allowExitNode": "allow_exit_node",
    "allowExitNodeLan": "allow_exit_node_lan",
    "fullTunnelFailClosed": "full_tunnel_fail_closed",
    "tunOffload": "tun_offload",
    "portMapping": "port_mapping",
}
_SETTINGS_KEYS = {"primaryPort", "interfacePrefixBlacklist", "interfaceAllowlist",
                  "allowManagementFrom", "uplinkMetrics", "controllerDatabase",
                  "captivePortalUrl",
                  *_BOOLEAN_SETTINGS}  # fmt: skip
MAX_METRIC = 2**32 - 1


_DEFAULTS = Settings()


def parse_local_conf(document: Any, source: str = LOCAL_CONF_NAME) -> Settings:
    """Validate a decoded local.conf document and return Settings."""
    if not isinstance(document, dict):
        raise SettingsError(f"{source}: must be a JSON object, got {json_type(document)}")
    misplaced = sorted(set(document) & _SETTINGS_KEYS)
    if misplaced:
        key = misplaced[0]
        raise SettingsError(f"{source}: unknown top-level key {key}; did you mean settings.{key}? "
                            f'(it goes inside "settings": {{"{key}": ...}})')  # fmt: skip
    _reject_unknown(document, _TOP_LEVEL_KEYS, source, "")
    raw = document.get("settings", {})
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: settings must be an object, got {json_type(raw)}")
    _reject_unknown(raw, _SETTINGS_KEYS, source, "settings.")

    port = raw.get("primaryPort", DEFAULT_PRIMARY_PORT)
    validate_port(port, f"{source}: settings.primaryPort")
    roots = _roots(document.get("roots", []), f"{source}: roots")
    booleans = {}
    for key, attribute in _BOOLEAN_SETTINGS.items():
        value = booleans[attribute] = raw.get(key, getattr(_DEFAULTS, attribute))
        if not isinstance(value, bool):
            raise SettingsError(f"{source}: settings.{key} must be true or false, got {value!r}")
    return Settings(
        roots=roots,
        allow_management_from=_networks(
            raw.get("allowManagementFrom", []), f"{source}: settings.allowManagementFrom"
        ),
        **booleans,
        primary_port=port,
        interface_prefix_blacklist=_name_list(
            raw.get("interfacePrefixBlacklist", []), f"{source}: settings.interfacePrefixBlacklist"
        ),
        interface_allowlist=_name_list(
            raw.get("interfaceAllowlist", []), f"{source}: settings.interfaceAllowlist"
        ),
        uplink_metrics=_metrics(raw.get("uplinkMetrics", {}), f"{source}: settings.uplinkMetrics"),
        controller_database=_database(raw.get("controllerDatabase", ""),
                                      f"{source}: settings.controllerDatabase"),
        captive_portal=_probe_url(raw.get("captivePortalUrl", ""),
                                  f"{source}: settings.captivePortalUrl"),
    )


def _probe_url(value: Any, what: str) -> ProbeUrl | None:
    if value == "":
        return None
    try:
        return parse_probe_url(value)
    except ValueError as exc:
        raise SettingsError(f"{what} {exc}") from None


def _database(value: Any, what: str) -> str:
    """A PostgreSQL connection string ("postgresql://user@host/db" or "host=... dbname=...");
    checked for form only here (the server is reached when the controller starts)."""
    if not isinstance(value, str):
        raise SettingsError(f"{what} must be a PostgreSQL connection string, got "
                            f"{json_type(value)}")  # fmt: skip
    if value and not (value.startswith(("postgresql://", "postgres://")) or "=" in value):
        raise SettingsError(f'{what} must be a PostgreSQL connection string like '
                            '"postgresql://oneservice@db.example/oneservice" or '
                            '"host=/run/postgresql dbname=oneservice"')  # fmt: skip
    return value


def _metrics(value: Any, what: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, dict):
        raise SettingsError(f'{what} must be an object like {{"wlan0": 100}}, got '
                            f"{json_type(value)}")  # fmt: skip
    _name_list(list(value), what)
    for name, metric in value.items():
        if isinstance(metric, bool) or not isinstance(metric, int) or not 0 <= metric <= MAX_METRIC:
            raise SettingsError(f"{what}.{name} must be a whole number 0-{MAX_METRIC} (lower "
                                f"is preferred), got {json.dumps(metric)}")  # fmt: skip
    return tuple(sorted(value.items()))


def validate_port(port: Any, what: str) -> int:
    # bool is an int in Python; "primaryPort": true is a mistake, not port 1.
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise SettingsError(f"{what} must be 0-65535 (0 picks a free port), got {port!r}")
    return port


def _name_list(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SettingsError(f"{what} must be a list of interface names, got {json_type(value)}")
    names = []
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_INTERFACE_NAME_LEN:
            raise SettingsError(
                f"{what} entries must be non-empty strings of at most "
                f"{MAX_INTERFACE_NAME_LEN} characters, got {item!r}"
            )
        names.append(item)
    return tuple(names)


def _reject_unknown(obj: dict, known: set[str], source: str, prefix: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise SettingsError(
            f"{source}: unknown key {prefix}{unknown[0]!s}; known keys: "
            + ", ".join(prefix + key for key in sorted(known))
        )


def _networks(value: Any, what: str) -> tuple[str, ...]:
    import ipaddress

    if not isinstance(value, list):
        raise SettingsError(f"{what} must be a list of CIDRs, got {json_type(value)}")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(item)))
        except (TypeError, ValueError):
            raise SettingsError(f"{what}: {item!r} is not a CIDR like 192.0.2.0/24") from None
    return tuple(networks)


def _roots(value: Any, what: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """[{"identity": "<public identity>", "endpoints": ["ip/port", ...]}], each checked."""
    from .identity import Identity, IdentityError
    from .network.config import NetworkConfigError, parse_endpoint

    if not isinstance(value, list):
        raise SettingsError(f"{what} must be a list of {{identity, endpoints}} objects")
    roots = []
    for n, item in enumerate(value):
        where = f"{what}[{n}]"
        if not isinstance(item, dict) or set(item) - {"identity", "endpoints"}:
            raise SettingsError(f'{where} must be {{"identity": ..., "endpoints": [...]}}')
        try:
            identity = Identity.parse(item.get("identity", "")).public()
            endpoints = item.get("endpoints", [])
            if not isinstance(endpoints, list) or not endpoints:
                raise SettingsError(f'{where}: "endpoints" must list at least one "ip/port"')
            for endpoint in endpoints:
                parse_endpoint(endpoint, where)
        except (IdentityError, NetworkConfigError, AttributeError) as exc:
            raise SettingsError(f"{where}: {exc}") from None
        roots.append((identity.public_text(), tuple(endpoints)))
    return tuple(roots)
