"""A network's configuration: members with identities, virtual addresses and endpoint hints.

The same model comes from a static file (`<home>/networks.d/<network id>.json`, for tests and
air-gapped setups) and, later, from a controller. A static file looks like:

    {
      "id": "8056c2e21c000001",
      "name": "lab",
      "mtu": 1420,
      "members": [
        {"identity": "<address>:1:<x25519>:<ed25519>",
         "addresses": ["10.147.17.1/24", "fd00:147::1/64"],
         "endpoints": ["192.0.2.2/9993"]}
      ]
    }

Endpoints use ZeroTier's "ip/port" notation (no brackets needed for IPv6).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..files import DamagedFile, network_down, read_json_object
from ..identity import Identity, IdentityError
from ..mtu import DEFAULT_TUNNEL_MTU, MAX_MTU, MIN_MTU
from ..records import record

NETWORKS_DIR = "networks.d"

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Endpoint = tuple[str, int]


class NetworkConfigError(Exception):
    """A network file or config is malformed; the message names the place and the value."""


@record
class Member:
    identity: Identity
    addresses: tuple[IPInterface, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def address(self) -> str:
        return self.identity.address


@record
class Route:
    """``target`` is reached through the member at ``via`` (a gateway), or directly when None."""

    target: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    # Preference among routes to the same target (lower first): several default routes via
    # different members are gateways in that order, each taking over when the ones before
    # it are silent.
    metric: int = 0


@record
class NetworkConfig:
    id: str
    name: str
    members: tuple[Member, ...]
    mtu: int = DEFAULT_TUNNEL_MTU
    revision: int = 0
    private: bool = True
    routes: tuple[Route, ...] = ()
    dns_domain: str = ""
    dns_servers: tuple[str, ...] = ()

    def member(self, address: str) -> Member | None:
        return next((m for m in self.members if m.address == address), None)

    def holders(self) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]:
        """Virtual address -> the member that has it (how a route's "via" names a gateway)."""
        return {a.ip: m.address for m in self.members for a in m.addresses}

    def subnets(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(dict.fromkeys(a.network for m in self.members for a in m.addresses))


def is_network_id(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 16 and all(c in "0123456789abcdef" for c in text)


def parse_endpoint(text: Any, where: str) -> Endpoint:
    if not isinstance(text, str) or "/" not in text:
        raise NetworkConfigError(f'{where}: endpoint must be "ip/port", got {text!r}')
    host, _, port_text = text.rpartition("/")
    try:
        ip = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise NetworkConfigError(f'{where}: endpoint must be "ip/port", got {text!r}') from None
    if not 1 <= port <= 65535:
        raise NetworkConfigError(f"{where}: endpoint port must be 1-65535, got {port}")
    return (str(ip), port)


def parse_network(document: Any, source: str, verify_identities: bool = True,
                  reuse: Mapping[str, tuple[dict, Member]] | None = None) -> NetworkConfig:
    """``verify_identities=False``: members' identities are not checked against their
    addresses here (an scrypt run each) because their controller vouches for them and the
    core checks any that another source contradicts (node/vouching.py), or because they were
    checked already. A hand-written file is checked: a typo gets a clear error at once.
    ``reuse``: members parsed before (identity text -> (its document, the Member)): one whose
    document is unchanged is taken as it is, not parsed again (a delta to a big network)."""
    if not isinstance(document, dict):
        raise NetworkConfigError(f"{source}: must be a JSON object")
    unknown = sorted(set(document) - _NETWORK_KEYS)
    if unknown:
        raise NetworkConfigError(f"{source}: unknown key {unknown[0]!r}")
    network_id = document.get("id")
    if not is_network_id(network_id):
        raise NetworkConfigError(
            f"{source}: id must be 16 lowercase hex digits, got {network_id!r}"
        )
    name = document.get("name", "")
    if not isinstance(name, str):
        raise NetworkConfigError(f"{source}: name must be a string")
    mtu = document.get("mtu", DEFAULT_TUNNEL_MTU)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise NetworkConfigError(f"{source}: mtu must be {MIN_MTU}-{MAX_MTU}, got {mtu!r}")
    raw_members = document.get("members", [])
    if not isinstance(raw_members, list):
        raise NetworkConfigError(f"{source}: members must be a list")
    members = []
    index = MemberIndex()
    for position, raw in enumerate(raw_members):
        where = f"{source}: members[{position}]"
        cached = reuse.get(raw.get("identity")) if reuse and isinstance(raw, dict) else None
        if cached is not None and cached[0] == raw:
            member = cached[1]
        else:
            member = parse_member(raw, where, verify_identities)
        index.add(member, where)
        members.append(member)
    revision = document.get("revision", 0)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise NetworkConfigError(f"{source}: revision must be a whole number, got {revision!r}")
    private = document.get("private", True)
    if not isinstance(private, bool):
        raise NetworkConfigError(f"{source}: private must be true or false")
    routes = tuple(
        parse_route(raw, f"{source}: routes[{n}]")
        for n, raw in enumerate(_list(document.get("routes", []), f"{source}: routes"))
    )
    domain, servers = parse_dns(document.get("dns", {}), source)
    return NetworkConfig(
        network_id, name, tuple(members), mtu, revision, private, routes, domain, servers,
    )  # fmt: skip


def shown(value: Any) -> str:
    """A value as the user wrote it (JSON, shortened): for messages, never a Python repr."""
    return json.dumps(value, default=str)[:80]


MAX_DNS_SERVERS = 8
MAX_DOMAIN_LEN = 253


def parse_dns(dns: Any, source: str) -> tuple[str, tuple[str, ...]]:
    """{"domain": "lab.example", "servers": ["10.147.17.1", ...]}: (domain, servers)."""
    shape = f'{source}: dns must be {{"domain": "<search domain>", "servers": ["<address>"]}}'
    if not isinstance(dns, dict) or set(dns) - {"domain", "servers"}:
        raise NetworkConfigError(shape)
    domain = dns.get("domain", "")
    if not isinstance(domain, str) or len(domain) > MAX_DOMAIN_LEN or any(
        c.isspace() for c in domain
    ):
        raise NetworkConfigError(f"{source}: dns.domain must be a domain name, got "
                                 f"{shown(domain)}")  # fmt: skip
    raw = _list(dns.get("servers", []), f"{source}: dns.servers")
    if len(raw) > MAX_DNS_SERVERS:
        raise NetworkConfigError(f"{source}: dns.servers: at most {MAX_DNS_SERVERS}")
    servers = []
    for text in raw:
        try:
            if not isinstance(text, str):
                raise ValueError
            servers.append(str(ipaddress.ip_address(text)))
        except ValueError:
            raise NetworkConfigError(f"{source}: dns server {shown(text)} is not an "
                                     "address") from None  # fmt: skip
    return domain, tuple(servers)


_NETWORK_KEYS = {"id", "name", "mtu", "members", "revision", "private", "routes", "dns"}


# Never routed anywhere by a network: loopback, "this host", link-local, multicast, reserved.
FORBIDDEN_TARGETS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fe80::/10", "ff00::/8",
))  # fmt: skip


def forbidden_target(target: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """Why no network may route ``target`` ("" if it may)."""
    for forbidden in FORBIDDEN_TARGETS:
        if target.version == forbidden.version and target.subnet_of(forbidden):  # type: ignore[arg-type]
            return f"{target} is inside {forbidden}, which no network may route"
    return ""


def parse_route(raw: Any, where: str) -> Route:
    """A route object; ZeroTier's ``flags`` is accepted at 0 (its only value there)."""
    if (not isinstance(raw, dict) or set(raw) - {"target", "via", "metric", "flags"}
            or "target" not in raw):  # fmt: skip
        raise NetworkConfigError(
            f'{where}: must be {{"target": "<cidr>", "via": "<ip>", "metric": <0-65535>}}'
        )
    metric, flags = raw.get("metric", 0), raw.get("flags", 0)
    if isinstance(metric, bool) or not isinstance(metric, int) or not 0 <= metric <= 65535:
        raise NetworkConfigError(f"{where}: metric must be a whole number 0-65535, got "
                                 f"{shown(metric)}")  # fmt: skip
    if flags != 0 or isinstance(flags, bool):
        raise NetworkConfigError(f"{where}: flags must be 0, got {shown(flags)}")
    try:
        target = ipaddress.ip_network(raw["target"], strict=False)
    except (ValueError, TypeError):
        raise NetworkConfigError(f"{where}: target {raw['target']!r} is not a network") from None
    via = raw.get("via")
    if via is not None:
        try:
            via = ipaddress.ip_address(via)
        except (ValueError, TypeError):
            raise NetworkConfigError(f"{where}: via {via!r} is not an address") from None
        if via.version != target.version:
            raise NetworkConfigError(f"{where}: via {via} and target {target} differ in family")
    return Route(target, via, metric)


def route_document(route: Route) -> dict:
    return {"target": str(route.target), **({"via": str(route.via)} if route.via else {}),
            **({"metric": route.metric} if route.metric else {})}  # fmt: skip


def network_document(config: NetworkConfig) -> dict:
    """The JSON-compatible document of a config: the static file format, and what a
    controller signs."""
    document: dict[str, Any] = {
        "id": config.id,
        "name": config.name,
        "mtu": config.mtu,
        "revision": config.revision,
        "private": config.private,
        "members": [
            {
                "identity": m.identity.public_text(),
                "addresses": [str(a) for a in m.addresses],
                "endpoints": [f"{h}/{p}" for h, p in m.endpoints],
            }
            for m in config.members
        ],
        "routes": [route_document(r) for r in config.routes],
    }
    if config.dns_domain or config.dns_servers:
        document["dns"] = {"domain": config.dns_domain, "servers": list(config.dns_servers)}
    return document


class MemberIndex:
    """The members of one network by address and by assigned IP: no member twice, no IP
    given to two. Kept up to date member by member (a controller's next build), or filled at
    once (parse_network)."""

    def __init__(self) -> None:
        self._seen: dict[object, str] = {}  # addresses, and IPs (as objects: cheap to hash)

    def add(self, member: Member, where: str) -> None:
        seen = self._seen
        if member.address in seen:
            raise NetworkConfigError(f"{where}: member {member.address} is listed twice")
        keys: list[object] = []
        for interface in member.addresses:
            key = interface.ip
            if key in seen or key in keys:
                owner = seen.get(key, member.address)
                raise NetworkConfigError(f"{where}: address {key} is already assigned to {owner}")
            keys.append(key)
        for key in keys:
            seen[key] = member.address
        seen[member.address] = member.address

    def remove(self, member: Member) -> None:
        for key in (member.address, *(interface.ip for interface in member.addresses)):
            self._seen.pop(key, None)


def parse_member(raw: Any, where: str, verify: bool) -> Member:
    if not isinstance(raw, dict):
        raise NetworkConfigError(f"{where}: must be an object")
    unknown = sorted(set(raw) - {"identity", "addresses", "endpoints"})
    if unknown:
        raise NetworkConfigError(f"{where}: unknown key {unknown[0]!r}")
    try:
        identity = Identity.parse(raw.get("identity", ""), verify).public()
    except (IdentityError, AttributeError) as exc:
        raise NetworkConfigError(f"{where}: identity: {exc}") from None
    addresses = []
    for text in _list(raw.get("addresses", []), f"{where}.addresses"):
        try:
            interface = ipaddress.ip_interface(text)
        except ValueError:
            raise NetworkConfigError(
                f"{where}: address must be like 10.1.0.5/24, got {text!r}"
            ) from None
        if "/" not in text:
            raise NetworkConfigError(f"{where}: address {text!r} needs a prefix length")
        addresses.append(interface)
    endpoints = tuple(
        parse_endpoint(text, where)
        for text in _list(raw.get("endpoints", []), f"{where}.endpoints")
    )
    return Member(identity, tuple(addresses), endpoints)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise NetworkConfigError(f"{where} must be a list")
    return value


# The hand-written networks' configs, and why each file that cannot be used cannot be.
HandWritten = tuple[list[NetworkConfig], dict[str, str]]


def load_network_files(home: Path) -> HandWritten:
    """Every `networks.d/<id>.json`, and for each file that cannot be used, by its name's
    network id, the one-line reason (that network stays down; the file is left as it is)."""
    directory = home / NETWORKS_DIR
    if not directory.is_dir():
        return [], {}
    networks, errors = [], {}
    for path in sorted(directory.glob("*.json")):
        try:
            network = parse_network(read_json_object(path), str(path))
            if path.stem != network.id:
                raise NetworkConfigError(
                    f"{path}: file name must be the network id {network.id}.json"
                )
        except (DamagedFile, NetworkConfigError) as exc:
            errors[path.stem] = network_down(exc, path.stem)
            continue
        networks.append(network)
    return networks, errors
