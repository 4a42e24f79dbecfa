"""Controller logic: networks, members, authorization, IP assignment, signed configs.

I/O-free apart from the store: the service hands in join requests (with the requester's
verified identity) and sends back what this returns; the API calls the admin methods.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..identity import Identity, IdentityError
from ..messages import ConfigAnswer, ConfigDelta
from ..mtu import DEFAULT_TUNNEL_MTU
from ..network.config import (
    MAX_MTU,
    MIN_MTU,
    NetworkConfigError,
    forbidden_target,
    is_network_id,
    network_document,
    parse_dns,
    parse_endpoint,
    parse_network,
    parse_route,
    route_document,
    shown,
)
from ..network.signed import (
    STATUS_ACCESS_DENIED,
    STATUS_NOT_FOUND,
    canonical_with_members,
    sign_config,
    sign_delta,
)
from . import CONTROLLER_DB_FILE
from .errors import ControllerError
from .mirror import ConfigEntries, MemberMirror, usable_endpoint

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # the store (SQLite) is loaded only on controllers
    from .store import ControllerStore

# Joiners nobody authorized yet are recorded so an admin can see and authorize them, up to
# this many per network; beyond it they are refused without a trace (counted).
MAX_UNAUTHORIZED_MEMBERS = 1000
# A member that asked within this window gets pushed every change.
ONLINE_WINDOW_S = 180.0
# Config documents kept per network (the last revisions), to answer members with deltas; and
# deltas kept in all.
KEPT_REVISIONS = 8
MAX_DELTAS = 256
MAX_REMEMBERED_MEMBERS = 100_000
MAX_NAME_LEN = 128
# ZeroTier's flow rules reduced to what a layer-3 network of ours does: accept everything.
ACCEPT_ALL_RULES = [{"type": "ACTION_ACCEPT"}]
# Fields of ZeroTier's network and member objects that are read-only there: a tool may post an
# object back as it got it, and these are then ignored, as ZeroTier does.
READ_ONLY_NETWORK_FIELDS = {
    "id", "nwid", "objtype", "revision", "creationTime", "clock", "authTokens",
    "authorizationEndpoint", "ssoEnabled", "remoteTraceTarget", "remoteTraceLevel",
}  # fmt: skip
READ_ONLY_MEMBER_FIELDS = {
    "id", "address", "nwid", "objtype", "revision", "identity", "creationTime", "lastSeen",
    "lastAuthorizedTime", "lastDeauthorizedTime", "lastAuthorizedCredential",
    "lastAuthorizedCredentialType", "vMajor", "vMinor", "vRev", "vProto", "physicalAddress",
    "endpoints", "remoteTraceTarget", "remoteTraceLevel", "ssoExempt",
    "authenticationExpiryTime",
}  # fmt: skip


# The controller's SQLite database in the home, unless local.conf names a PostgreSQL server.


def open_controller(home: Path, database: str, identity: Identity,
                    on_change: Callable[[str], None]) -> Controller:  # fmt: skip
    """The controller of this node's networks: on the PostgreSQL server ``database`` names
    (shared with other controller processes, whose changes ``on_change`` hears of, with the
    network id, from the store's listener thread), else on SQLite in the home."""
    if database:
        from .postgres import PostgresStore  # only then: psycopg

        store: ControllerStore = PostgresStore(database)
        log.info("controller store: %s", store.where)
        store.listen(on_change)
    else:
        from .store import SQLiteStore  # only controllers load SQLite (~1 MiB)

        store = SQLiteStore(home / CONTROLLER_DB_FILE)
    return Controller(identity, store)



class Controller:
    def __init__(self, identity: Identity, store: ControllerStore) -> None:
        self.identity = identity
        self.store = store
        self._signed: dict[str, tuple[int | None, ConfigAnswer]] = {}  # id -> (revision, config)
        # The documents of the last few revisions, and the deltas made between them.
        self._documents: dict[str, dict[int, dict]] = {}
        # Per network, its member rows as last read, and the entries of the last build.
        self._mirrors: dict[str, MemberMirror] = {}
        self._built: dict[str, ConfigEntries] = {}
        self._deltas: dict[tuple[str, int, int | None], ConfigDelta] = {}
        # (network, member) -> the revision we last sent it: what the next push is a delta from.
        self._sent: dict[tuple[str, str], int] = {}
        self.refused_joiners = 0

    def owns(self, network_id: str) -> bool:
        return network_id.startswith(self.identity.address)

    # --- administration (the API) ----------------------------------------------------------------

    def create_network(self, network_id: str | None = None, changes: dict | None = None) -> dict:
        if network_id is None:
            while True:
                network_id = self.identity.address + secrets.token_hex(3)
                if self.store.get_network(network_id) is None:
                    break
        self._check_owned(network_id)
        if self.store.get_network(network_id) is not None:
            raise ControllerError(f"network {network_id} already exists", 409)
        document = {"name": "", "private": True, "mtu": DEFAULT_TUNNEL_MTU, "routes": [],
                    "ipAssignmentPools": [], "dns": {"domain": "", "servers": []},
                    "v4AssignMode": {"zt": True}, "v6AssignMode": {"zt": True},
                    "creationTime": _now_ms()}  # fmt: skip
        self.store.put_network(network_id, _validated_network(document, changes or {}), 1)
        return self.network(network_id)

    def _stored_network(self, network_id: str) -> tuple[dict, int]:
        found = self.store.get_network(network_id)
        if found is None:
            raise ControllerError(f"network {network_id} not found", 404)
        return found

    def network(self, network_id: str) -> dict:
        """The network in ZeroTier's shape (docs/API.md lists what each field does here)."""
        document, revision = self._stored_network(network_id)
        v4 = document.get("v4AssignMode", {"zt": True})
        v6 = document.get("v6AssignMode", {"zt": True})
        return {
            "id": network_id, "nwid": network_id, "objtype": "network",
            "name": document["name"], "creationTime": document.get("creationTime", 0),
            "private": document["private"], "enableBroadcast": False,
            "v4AssignMode": {"zt": v4["zt"]},
            "v6AssignMode": {"zt": v6["zt"], "6plane": False, "rfc4193": False},
            "mtu": document["mtu"], "multicastLimit": 0, "revision": revision,
            "routes": [{"target": r["target"], "via": r.get("via"), "flags": 0,
                        "metric": r.get("metric", 0)} for r in document["routes"]],
            "ipAssignmentPools": document["ipAssignmentPools"],
            "rules": ACCEPT_ALL_RULES, "capabilities": [], "tags": [],
            "dns": document["dns"],
            "remoteTraceTarget": None, "remoteTraceLevel": 0,
        }  # fmt: skip

    def revision(self, network_id: str) -> int | None:
        found = self.store.get_network(network_id)
        return found[1] if found else None

    def networks(self) -> list[str]:
        return self.store.network_ids()

    def update_network(self, network_id: str, changes: dict) -> dict:
        document, revision = self._stored_network(network_id)
        self.store.put_network(network_id, _validated_network(document, changes), revision + 1)
        return self.network(network_id)

    def delete_network(self, network_id: str) -> dict:
        """The network as it was (ZeroTier answers a DELETE with the deleted object)."""
        document = self.network(network_id)
        self.store.delete_network(network_id)
        return document

    def member(self, network_id: str, address: str) -> dict:
        self.network(network_id)
        found = self.store.get_member(network_id, address)
        if found is None:
            raise ControllerError(f"member {address} of {network_id} not found", 404)
        identity, document, last_seen = found
        return {
            "id": address, "address": address, "nwid": network_id, "objtype": "member",
            "authorized": bool(document.get("authorized")), "activeBridge": False,
            "identity": identity or None,
            "ipAssignments": document.get("ipAssignments", []),
            "noAutoAssignIps": bool(document.get("noAutoAssignIps")),
            "name": document.get("name", ""),
            "revision": document.get("revision", 1),
            "creationTime": document.get("creationTime", 0),
            "lastAuthorizedTime": document.get("lastAuthorizedTime", 0),
            "lastDeauthorizedTime": document.get("lastDeauthorizedTime", 0),
            "lastSeen": int(last_seen * 1000),
            # The member's software version is not known to the controller.
            "vMajor": -1, "vMinor": -1, "vRev": -1, "vProto": -1,
            "capabilities": [], "tags": [],
            "endpoints": document.get("endpoints", []),
        }  # fmt: skip

    def member_revisions(self, network_id: str) -> dict[str, int]:
        """ZeroTier's member list: {"<address>": <member revision>}."""
        self.network(network_id)
        return {a: d.get("revision", 1) for a, _, d, _ in self.store.members(network_id)}

    def update_member(self, network_id: str, address: str, changes: dict) -> dict:
        """Authorize, assign addresses, name. A member may be prepared by address before it
        ever joins (its identity is then learned at the first request)."""
        network = self.network(network_id)
        if not _is_address(address):
            raise ControllerError(f"member address must be 10 hex digits, got {shown(address)}")
        found = self.store.get_member(network_id, address)
        identity, document, _ = found if found else ("", _new_member(False), 0.0)
        was_authorized = bool(document.get("authorized"))
        document = _validated_member(document, changes, network)
        document["revision"] = document.get("revision", 1) + 1
        if document["authorized"] != was_authorized:
            key = "lastAuthorizedTime" if document["authorized"] else "lastDeauthorizedTime"
            document[key] = _now_ms()
        if (document["authorized"] and not document["ipAssignments"]
                and not document.get("noAutoAssignIps")):  # fmt: skip
            document["ipAssignments"] = self._assign(network_id, network)
        self.store.put_member(network_id, address, identity, document, None, new_revision=True)
        return self.member(network_id, address)

    def delete_member(self, network_id: str, address: str) -> dict:
        """The member as it was (ZeroTier answers a DELETE with the deleted object)."""
        document = self.member(network_id, address)
        self.store.delete_member(network_id, address)
        self._bump(network_id)
        return document

    # --- the protocol ---------------------------------------------------------------------------

    def handle_request(
        self, network_id: str, requester: Identity, endpoints: list[str], now: float,
        have: int = -1,
    ) -> ConfigAnswer | ConfigDelta:
        """A member at revision ``have`` (-1: none) asks for the config: what changed since
        (a delta), or the whole signed config, or ACCESS_DENIED / NOT_FOUND. Its endpoints
        are stored as hints for the next revision; a member that merely moved costs no new
        revision and no push to everyone (peers with a session follow it themselves)."""
        found = self.store.get_network(network_id) if self.owns(network_id) else None
        if found is None:
            return ConfigAnswer(network_id, error=STATUS_NOT_FOUND)
        network_document_, _ = found
        existing = self.store.get_member(network_id, requester.address)
        if existing is None:
            private = network_document_.get("private", True)
            if private and self.store.count_unauthorized(network_id) >= MAX_UNAUTHORIZED_MEMBERS:
                self.refused_joiners += 1
                return ConfigAnswer(network_id, error=STATUS_ACCESS_DENIED)
            document = _new_member(not private)
            if document["authorized"]:
                document["ipAssignments"] = self._assign(network_id, self.network(network_id))
            identity_text = ""
        else:
            identity_text, document, _ = existing
        # Hints only: one that does not parse is dropped here, never stored (every member's
        # config is built from them).
        endpoints = [e for e in endpoints if usable_endpoint(e)][:8]
        changed = identity_text != requester.public_text()
        document["endpoints"] = endpoints
        document["configRevision"] = have
        self.store.put_member(network_id, requester.address, requester.public_text(), document,
                              now, new_revision=changed and bool(document.get("authorized")))
        if not document.get("authorized"):
            return ConfigAnswer(network_id, error=STATUS_ACCESS_DENIED)
        return self._answer_member(network_id, requester.address, have)

    def message_for(self, network_id: str, address: str) -> ConfigAnswer | ConfigDelta:
        """What a member gets pushed after a change: its config, or why not."""
        found = self.store.get_member(network_id, address)
        if self.store.get_network(network_id) is None:
            return ConfigAnswer(network_id, error=STATUS_NOT_FOUND)
        if found is None or not found[1].get("authorized"):
            return ConfigAnswer(network_id, error=STATUS_ACCESS_DENIED)
        # A delta from the revision it was last sent (by us) or last asked with.
        have = self._sent.get((network_id, address), found[1].get("configRevision", -1))
        return self._answer_member(network_id, address, have)

    def _answer_member(self, network_id: str, address: str,
                       have: int) -> ConfigAnswer | ConfigDelta:  # fmt: skip
        """As answer(), remembering what the member now holds (if it arrives: a delta to a
        revision it does not hold is not applied there, and it asks again)."""
        reply = self.answer(network_id, have)
        if len(self._sent) >= MAX_REMEMBERED_MEMBERS:
            self._sent.clear()
        self._sent[(network_id, address)] = self.revision(network_id) or -1
        return reply

    def answer(self, network_id: str, have: int) -> ConfigAnswer | ConfigDelta:
        """For a member at revision ``have``: the delta from there if this controller still
        holds that revision's document (the last few), else the whole config. Each delta is
        made once, for every member at that revision."""
        whole = self.config_message(network_id)
        documents = self._documents.get(network_id, {})
        current = self.revision(network_id)
        if have not in documents or current not in documents:
            return whole
        key = (network_id, have, current)
        delta = self._deltas.get(key)
        if delta is None:
            if len(self._deltas) >= MAX_DELTAS:
                self._deltas.clear()
            delta = self._deltas[key] = sign_delta(documents[have], documents[current], whole)
        return delta

    def config_message(self, network_id: str) -> ConfigAnswer:
        """The signed config, built and signed once per revision: every change that reaches
        a config bumps the revision, and every member asking at that revision gets the same
        bytes (300 joins no longer cost 300 builds and signatures). Not to be modified."""
        revision = self.revision(network_id)
        cached = self._signed.get(network_id)
        if cached is not None and cached[0] == revision:
            return cached[1]
        document, blob = self._build(network_id)
        message = sign_config(self.identity, document, blob)
        self._signed[network_id] = (revision, message)
        kept = self._documents.setdefault(network_id, {})
        kept[document["revision"]] = document
        for old in sorted(kept)[:-KEPT_REVISIONS]:
            del kept[old]
        return message

    def config_document(self, network_id: str) -> dict:
        """The document members get (what config_message signs)."""
        return self._build(network_id)[0]

    def _build(self, network_id: str) -> tuple[dict, bytes]:
        """The config document and its canonical bytes. Only the member rows written since
        the last build are read and worked on again, and the bytes are joined from each
        member's own: a change to one member of a big network costs what that member costs."""
        network = self.network(network_id)
        routes = network["routes"]
        local = tuple(ipaddress.ip_network(r["target"]) for r in routes if not r.get("via"))
        document = {
            "id": network_id, "name": network["name"], "mtu": network["mtu"],
            "revision": network["revision"], "private": network["private"],
            "members": [], "routes": routes,
        }  # fmt: skip
        if network["dns"].get("domain") or network["dns"].get("servers"):
            document["dns"] = network["dns"]
        # What members will parse is checked here first: the network's own fields, each member
        # new or changed since the last build, and every member against the others (index).
        # Not the scrypt check of each identity (40 ms): each was checked before it was stored
        # (a requester's, from a verified handshake).
        normalized = network_document(parse_network(document, f"network {network_id}"))
        changed = self._mirror(network_id).take_changes()
        built = self._built.pop(network_id, None)  # put back once whole
        if built is None or built.local != local:  # the prefixes come from the local routes
            built = ConfigEntries(local)
            changed = dict(self._mirrors[network_id].rows)
        built.apply(changed.items(), f"network {network_id}")
        self._built[network_id] = built
        entries, blobs = built.ordered()
        normalized["members"] = entries
        return normalized, canonical_with_members(normalized, blobs)

    def contact(self, network_id: str,
                address: str) -> tuple[Identity, list[tuple[str, int]]] | None:  # fmt: skip
        """A member's identity and the endpoints it was last seen at, as the store holds them:
        enough to reach a member that talked to another controller process sharing it."""
        found = self.store.get_member(network_id, address)
        if found is None or not found[0]:
            return None
        try:
            identity = Identity.parse(found[0], verify=False)
            endpoints = [parse_endpoint(e, "endpoint") for e in found[1].get("endpoints", [])]
        except (IdentityError, NetworkConfigError):
            return None
        return identity, endpoints

    def online_members(self, network_id: str, now: float) -> list[str]:
        return self.store.seen_since(network_id, now - ONLINE_WINDOW_S)

    # --- helpers ----------------------------------------------------------------------------------

    def _check_owned(self, network_id: str) -> None:
        if not is_network_id(network_id):
            raise ControllerError(f"network id must be 16 hex digits, got {shown(network_id)}")
        if not self.owns(network_id):
            raise ControllerError(
                f"network {network_id} belongs to controller {network_id[:10]}, not this node "
                f"({self.identity.address})", 403,
            )  # fmt: skip

    def _bump(self, network_id: str) -> None:
        self.store.bump_revision(network_id)

    def _mirror(self, network_id: str) -> MemberMirror:
        """The network's member rows, read up to now."""
        mirror = self._mirrors.setdefault(network_id, MemberMirror())
        mirror.update(self.store, network_id)
        return mirror

    def _assign(self, network_id: str, network: dict) -> list[str]:
        """The lowest free address of each pool (one per family)."""
        taken = self._mirror(network_id).taken
        assigned, families = [], set()
        automatic = {4: network["v4AssignMode"]["zt"], 6: network["v6AssignMode"]["zt"]}
        for pool in network.get("ipAssignmentPools", []):
            start = ipaddress.ip_address(pool["ipRangeStart"])
            end = ipaddress.ip_address(pool["ipRangeEnd"])
            if start.version in families or not automatic[start.version]:
                continue
            number, last, version = int(start), int(end), start.version
            while number <= last and (version, number) in taken:
                number += 1
            if number <= last:
                assigned.append(str(type(start)(number)))
                families.add(start.version)
        return assigned


def _now_ms() -> int:
    return int(time.time() * 1000)


def _new_member(authorized: bool) -> dict:
    return {"authorized": authorized, "ipAssignments": [], "name": "", "revision": 1,
            "creationTime": _now_ms(),
            **({"lastAuthorizedTime": _now_ms()} if authorized else {})}  # fmt: skip


def _is_address(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 10 and all(c in "0123456789abcdef" for c in text)


def _validated_network(document: dict, changes: Any) -> dict:
    if not isinstance(changes, dict):
        raise ControllerError("network settings must be a JSON object")
    changes = {k: v for k, v in changes.items() if k not in READ_ONLY_NETWORK_FIELDS}
    _only_what_layer3_does(changes, "network")
    allowed = {"name", "private", "mtu", "routes", "ipAssignmentPools", "dns", "v4AssignMode",
               "v6AssignMode"}  # fmt: skip
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ControllerError(f"unknown network field {shown(unknown[0])}; known: "
                              + ", ".join(sorted(allowed)))
    document = {**document, **changes}
    for key, modes in (("v4AssignMode", {"zt"}), ("v6AssignMode", {"zt", "6plane", "rfc4193"})):
        mode = document.setdefault(key, {"zt": True})
        if not isinstance(mode, dict) or set(mode) - modes:
            names = ", ".join(sorted(modes))
            raise ControllerError(f"{key} must be an object of booleans ({names})")
        mode = {name: lenient_bool(value, f"{key}.{name}") for name, value in mode.items()}
        if mode.get("6plane") or mode.get("rfc4193"):
            raise ControllerError(f"{key}: 6plane and rfc4193 are not supported; assign IPv6 "
                                  "from ipAssignmentPools with zt")  # fmt: skip
        document[key] = {"zt": mode.get("zt", document.get(key, {}).get("zt", True))}
    if not isinstance(document["name"], str) or len(document["name"]) > MAX_NAME_LEN:
        raise ControllerError(f"name must be a string of at most {MAX_NAME_LEN} characters")
    document["private"] = lenient_bool(document["private"], "private")
    mtu = document["mtu"]
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise ControllerError(f"mtu must be {MIN_MTU}-{MAX_MTU}, got {shown(mtu)}")
    if not isinstance(document["routes"], list):
        raise ControllerError('routes must be a list of {"target": ..., "via": ...}')
    routes = []
    parsed = []
    for n, raw in enumerate(document["routes"]):
        try:
            parsed.append(parse_route(raw, f"routes[{n}]"))
        except NetworkConfigError as exc:
            raise ControllerError(str(exc)) from None
    on_link = [r.target for r in parsed if r.via is None]
    for n, route in enumerate(parsed):
        # Members refuse these too (a controller may be older or hostile); say it here first.
        if forbidden_target(route.target):
            raise ControllerError(f"routes[{n}]: {forbidden_target(route.target)}")
        if route.via is not None and not any(route.via in net for net in on_link):
            raise ControllerError(
                f"routes[{n}]: gateway {route.via} is outside the network's subnets; add the "
                'subnet as a route without "via" first'
            )
        routes.append(route_document(route))
    document["routes"] = routes
    pools = document["ipAssignmentPools"]
    if not isinstance(pools, list):
        raise ControllerError("ipAssignmentPools must be a list")
    for pool in pools:
        try:
            start = ipaddress.ip_address(pool["ipRangeStart"])
            end = ipaddress.ip_address(pool["ipRangeEnd"])
        except (KeyError, TypeError, ValueError):
            raise ControllerError(
                'each ipAssignmentPool needs "ipRangeStart" and "ipRangeEnd" addresses'
            ) from None
        if start.version != end.version or start > end:
            raise ControllerError(f"ipAssignmentPool {start}-{end} is not a range")
    try:
        domain, servers = parse_dns(document["dns"], "network")
    except NetworkConfigError as exc:
        raise ControllerError(str(exc)) from None
    document["dns"] = {"domain": domain, "servers": list(servers)}
    return document


def _validated_member(document: dict, changes: Any, network: dict) -> dict:
    if not isinstance(changes, dict):
        raise ControllerError("member settings must be a JSON object")
    changes = {k: v for k, v in changes.items() if k not in READ_ONLY_MEMBER_FIELDS}
    _only_what_layer3_does(changes, "member")
    allowed = {"authorized", "ipAssignments", "name", "noAutoAssignIps"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ControllerError(f"unknown member field {shown(unknown[0])}; known: "
                              + ", ".join(sorted(allowed)))
    document = {**document, **changes}
    document["authorized"] = lenient_bool(document["authorized"], "authorized")
    if "noAutoAssignIps" in document:
        document["noAutoAssignIps"] = lenient_bool(document["noAutoAssignIps"], "noAutoAssignIps")
    if not isinstance(document["name"], str) or len(document["name"]) > MAX_NAME_LEN:
        raise ControllerError(f"name must be a string of at most {MAX_NAME_LEN} characters")
    if not isinstance(document["ipAssignments"], list):
        raise ControllerError("ipAssignments must be a list of addresses")
    addresses = []
    for text in document["ipAssignments"]:
        try:
            if not isinstance(text, str):
                raise ValueError
            addresses.append(str(ipaddress.ip_address(text)))
        except (TypeError, ValueError):
            raise ControllerError(f"ipAssignments: {shown(text)} is not an address") from None
    document["ipAssignments"] = addresses
    return document


def lenient_bool(value: Any, field: str) -> bool:
    """A boolean field as ZeroTier's controller reads it (controller UIs post HTML form
    values): a JSON boolean; a number, true when above 0; a string, true when it starts with
    t, T or 1. Anything else (a list, an object, null) is refused, naming the field."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, str):
        return value[:1] in ("t", "T", "1")
    raise ControllerError(f"{field} must be true or false, got {shown(value)}")


def _only_what_layer3_does(changes: dict, what: str) -> None:
    """ZeroTier fields that only have a meaning on an Ethernet network with flow rules: their
    do-nothing values are accepted (tools send them), anything else is refused, not ignored.
    Removes them from ``changes``."""
    limit = changes.pop("multicastLimit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ControllerError("multicastLimit must be a whole number")  # no multicast: any holds
    trivial = {"enableBroadcast": [False], "activeBridge": [False],
               "rules": [[], ACCEPT_ALL_RULES], "capabilities": [[]], "tags": [[]]}  # fmt: skip
    for key, accepted in trivial.items():
        if key not in changes:
            continue
        value = changes.pop(key)
        if accepted == [False]:  # a boolean field: read as ZeroTier reads one
            value = lenient_bool(value, key)
        if not any(json.dumps(value) == json.dumps(a) for a in accepted):
            raise ControllerError(
                f"{what} field {key}={json.dumps(value)[:200]} is not supported: networks here "
                "carry IP (layer 3) with every packet accepted; accepted: "
                + " or ".join(json.dumps(a) for a in accepted)
            )
