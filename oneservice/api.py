"""The local JSON API, shaped like ZeroTier's service API (docs/API.md): HTTP on loopback at
the primary port (`httpserver.py`), the token of `authtoken.secret` in every request, a 4xx
with {"error": "..."} for a bad one; nothing a request carries can crash the service."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import __version__, native
from .controller.calls import create_or_update, delete_network, on_controller
from .controller.errors import ControllerError, StoreError
from .files import WriteFailed, write_atomically
from .httpserver import HttpError, HttpServer, Request, Router, Text
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import NodeFigures, node_families
from .metrics import render as render_metrics
from .network.config import is_network_id
from .network.membership import STATUS_FILE_ERROR
from .network.signed import STATUS_ACCESS_DENIED, STATUS_NOT_FOUND, controller_address
from .routing.documents import network_document, routes_document, shown_tunnel
from .routing.flags import FlagsError
from .routing.portal import DEFAULT_OPEN_S, MAX_OPEN_S
from .settings import METRICS_TOKEN_FILE, PORT_FILES, TOKEN_FILE
from .tap import tap_name

if TYPE_CHECKING:
    from .controller.thread import ControllerThread
    from .identity import Identity
    from .network.registry import NetworkRegistry
    from .node.events import PeerView
    from .portfeed import PortMapFeed
    from .routing.manager import RoutingManager
    from .settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class TapView(Protocol):
    name: str

    def stats(self) -> dict[str, int | bool]: ...


class NodeView(Protocol):
    """All the API may see of the node and do to it. The service provides it; the API
    imports nothing of the service, and reaches no further in (core, binder, taps)."""

    identity: Identity
    home: Path
    settings: Settings
    api_token: str
    metrics_token: str
    networks: NetworkRegistry
    routing: RoutingManager
    controller: ControllerThread
    port_map: PortMapFeed

    @property
    def port(self) -> int: ...
    def now(self) -> float: ...
    def online(self) -> bool: ...
    def peer_views(self) -> list[PeerView]: ...
    def binder_state(self) -> dict: ...
    def uplink_ranks(self) -> dict[int, int]: ...
    def tap(self, network_id: str) -> TapView | None: ...
    def port_error(self, network_id: str) -> int: ...
    def port_errors(self) -> dict[str, str]: ...
    def counters(self) -> dict: ...
    def join(self, network_id: str) -> None: ...
    async def leave(self, network_id: str) -> bool: ...
    def set_network_flags(self, network_id: str, changes: dict) -> None: ...
    async def controller_call(self, function: Callable[..., T], *args: Any,
                              create: bool = False) -> T: ...
    def push_config(self, network_id: str, also: list[str] | tuple = ()) -> None: ...
    async def leaktest(self, network_id: str | None) -> dict: ...
    def open_portal(self, seconds: float) -> None: ...


class ApiError(HttpError):
    """A request the API refuses: answered as {"error": message} with this status."""


async def start_api(service: NodeView) -> HttpServer:
    token = service.api_token.encode()
    metrics_token = service.metrics_token.encode()

    def guard(request: Request) -> HttpError | None:
        if not _management_allowed(request.remote, service.settings.allow_management_from):
            return ApiError(403, f"{request.remote} may not manage this node: only loopback "
                                 "and settings.allowManagementFrom may")  # fmt: skip
        supplied = request.header("X-ZT1-Auth")
        bearer = request.header("Authorization")
        if bearer.startswith("Bearer "):
            supplied = supplied or bearer[7:]
        # Compared as bytes: a header may carry any octet, and none of them may raise.
        given = supplied.encode("latin-1")
        if hmac.compare_digest(given, token):
            return None
        metrics = request.method == "GET" and request.path.rstrip("/") == "/metrics"
        if metrics and hmac.compare_digest(given, metrics_token):
            return None  # what a Prometheus server holds opens GET /metrics only
        also = f" (or {METRICS_TOKEN_FILE}, for GET /metrics)" if metrics else ""
        return ApiError(401, f"missing or wrong token: send the contents of {TOKEN_FILE}{also} "
                             "as header X-ZT1-Auth or Authorization: Bearer")  # fmt: skip

    routes = Routes(service)
    router = Router()
    for method, pattern, handler in [
        ("GET", "/status", routes.status),
        ("GET", "/metrics", routes.metrics),
        ("GET", "/network", routes.networks),
        ("GET", "/network/{nwid}", routes.network),
        ("POST", "/network/{nwid}", routes.join),
        ("DELETE", "/network/{nwid}", routes.leave),
        ("GET", "/peer", routes.peers),
        ("GET", "/peer/{address}", routes.peer),
        ("GET", "/moon", routes.moons),
        ("GET", "/moon/{id}", routes.moon),
        ("POST", "/moon/{id}", routes.moon),
        ("DELETE", "/moon/{id}", routes.moon),
        ("GET", "/binder", routes.binder),
        ("GET", "/routes", routes.routes),
        ("POST", "/leaktest", routes.leaktest),
        ("GET", "/portal", routes.portal),
        ("POST", "/portal", routes.portal_open),
        ("POST", "/leaktest/{nwid}", routes.leaktest),
        ("GET", "/controller", routes.controller_status),
        ("GET", "/controller/network", routes.controller_networks),
        ("GET", "/controller/network/{nwid}", routes.controller_network),
        ("POST", "/controller/network/{nwid}", routes.controller_network_post),
        ("DELETE", "/controller/network/{nwid}", routes.controller_network_delete),
        ("GET", "/controller/network/{nwid}/member", routes.controller_members),
        ("GET", "/controller/network/{nwid}/member/{address}", routes.controller_member),
        ("POST", "/controller/network/{nwid}/member/{address}", routes.controller_member_post),
        ("DELETE", "/controller/network/{nwid}/member/{address}",
         routes.controller_member_delete),
    ]:  # fmt: skip
        router.add(method, pattern, _errors_answered(handler))
    server = routes.server = HttpServer(router, guard)
    port = service.port
    bound = []
    # Loopback only, unless the user named other networks (the guard then checks each client).
    hosts = ("0.0.0.0", "::") if service.settings.allow_management_from else ("127.0.0.1", "::1")
    for host in hosts:
        try:
            await server.listen(host, port)
            bound.append(host)
        except OSError as exc:
            log.warning("local API not on %s port %d: %s", host, port, exc.strerror or exc)
    if not bound:
        await server.close()
        raise OSError(f"local API could not listen on 127.0.0.1 or ::1 port {port}")
    for name in PORT_FILES:  # ours, and the one zerotier-cli -D<home> reads
        try:
            write_atomically(service.home / name, f"{port}\n", mode=0o644)
        except WriteFailed as exc:
            log.error("%s: oneservice-cli and zerotier-cli must be given --port %d", exc, port)
    log.info("local API on %s port %d", " and ".join(bound), port)
    return server


def _errors_answered(handler):
    """Errors below the API as JSON errors: a full disk is 507 (nothing was changed)."""

    async def answered(request: Request):
        try:
            return await handler(request)
        except ControllerError as exc:
            raise ApiError(exc.status, str(exc)) from None
        except WriteFailed as exc:
            raise ApiError(507, f"{exc}; nothing was changed") from None
        except StoreError as exc:  # e.g. the PostgreSQL server went away
            raise ApiError(503, f"controller database: {exc}; nothing was changed") from None
        except Exception as exc:
            sqlite3 = sys.modules.get("sqlite3")  # loaded only on a controller
            if sqlite3 is None or not isinstance(exc, sqlite3.OperationalError):
                raise
            full = "full" in str(exc)
            raise ApiError(507 if full else 503, f"controller database: {exc}; nothing was "
                                                 "changed") from None  # fmt: skip

    return answered


def _management_allowed(remote: str | None, allowed: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    networks = [ipaddress.ip_network(n) for n in allowed]
    return any(address.version == n.version and address in n for n in networks)


def _body(request: Request) -> dict:
    if not request.body.strip():
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _network_id(request: Request) -> str:
    network_id = request.params["nwid"]
    if not is_network_id(network_id):
        raise ApiError(400, "network id must be 16 lowercase hex digits, got "
                            + json.dumps(network_id))
    return network_id


VERSION_NUMBERS = tuple(int(part) for part in __version__.split(".")[:3])
# ZeroTier's /peer shows a peer's software version; our handshake does not carry it.
UNKNOWN_VERSION = {"version": "-", "versionMajor": -1, "versionMinor": -1, "versionRev": -1}


class Routes:
    def __init__(self, service: NodeView) -> None:
        self.service = service
        self.server: HttpServer | None = None  # (its answers are counted in /metrics)

    async def metrics(self, request: Request) -> Text:
        """Prometheus's text format (oneservice/metrics.py)."""
        s = self.service
        binder = s.binder_state()
        members: dict[str, int] = {}
        if s.controller.opened:
            members = await s.controller_call(lambda c: {n: len(c.member_revisions(n))
                                                         for n in c.networks()})  # fmt: skip
        joined = s.networks.memberships.networks
        routing = s.routing
        figures = NodeFigures(
            peers=s.peer_views(),
            interfaces=socket_interfaces(binder),
            counters=s.counters(),
            uplinks=binder["bound"],
            tunnels={network_id: shown_tunnel(routing, network_id)
                     for network_id in {*joined, *routing.plan.full_tunnel}},
            gateway_changes=routing.gateway_changes,
            revisions={network_id: j.config.revision if j.config else 0
                       for network_id, j in joined.items()},
            controller_members=members,
            answered=dict(self.server.answered) if self.server else {},
        )  # fmt: skip
        return Text(render_metrics(node_families(figures)), METRICS_CONTENT_TYPE)

    async def status(self, request: Request) -> dict:
        s = self.service
        bound = s.binder_state()["bound"]
        major, minor, revision = VERSION_NUMBERS
        return {
            "address": s.identity.address,
            "publicIdentity": s.identity.public_text(),
            "online": s.online(),
            "version": __version__,
            "versionMajor": major, "versionMinor": minor, "versionRev": revision,
            "versionBuild": 0,
            # No TCP relay fallback and no planet here: roots come from local.conf.
            "tcpFallbackActive": False,
            "planetWorldId": 0, "planetWorldTimestamp": 0,
            "clock": int(time.time() * 1000),
            # Which data path runs: the C extension, or the pure-Python one and why (native.py).
            "dataPath": native.DESCRIPTION,
            "counters": s.counters(),
            "portErrors": s.port_errors(),  # devices not made: why, and what to do
            "portMappings": s.port_map.mapper.status(),  # per uplink: how, or why not
            "config": {"settings": {
                "primaryPort": s.port,
                "listeningOn": [f"{b['address']}/{b['port']}" for b in bound],
                "homeDir": str(s.home),
                "allowTcpFallbackRelay": False,
                "portMappingEnabled": s.settings.port_mapping,
                "softwareUpdate": "disable",
                "relay": s.settings.relay,
                "allowExitNode": s.settings.allow_exit_node,
                "allowExitNodeLan": s.settings.allow_exit_node_lan,
                "captivePortalUrl": (s.settings.captive_portal.text
                                     if s.settings.captive_portal else ""),
                "fullTunnelFailClosed": s.settings.full_tunnel_fail_closed,
                "allowManagementFrom": list(s.settings.allow_management_from),
                "interfacePrefixBlacklist": list(s.settings.interface_prefix_blacklist),
                "tunOffload": s.settings.tun_offload,
                # Where the controller keeps its networks (a server's password never shown).
                "controllerStore": s.controller.where,
            }},
        }  # fmt: skip

    def _network_json(self, network_id: str) -> dict[str, Any]:
        s = self.service
        joined = s.networks.memberships.networks.get(network_id)
        static = s.networks.static_config(network_id)
        down = s.networks.down_reason(network_id)
        if joined is None and static is None and not down:
            raise ApiError(404, f"not a member of network {network_id}")
        config = static or (joined.config if joined else None)
        own = config.member(s.identity.address) if config else None
        tap = s.tap(network_id)
        port_error = s.port_error(network_id)
        status = "OK" if static else joined.status if joined else STATUS_FILE_ERROR
        if port_error:
            status = "PORT_ERROR"
        if down:
            status = STATUS_FILE_ERROR
        routing = network_document(s.routing, network_id)
        return {
            "id": network_id,
            "nwid": network_id,
            "name": config.name if config else "",
            "status": status,
            "statusDetail": down or self._status_detail(network_id, joined, port_error),
            "type": ("PRIVATE" if config.private else "PUBLIC") if config else "PRIVATE",
            "mtu": config.mtu if config else 0,
            "portDeviceName": tap.name if tap else tap_name(network_id),
            "portError": port_error,
            # A TUN device carries IP, not Ethernet: no MAC, no bridging, no broadcast.
            "bridge": False,
            "broadcastEnabled": False,
            "device": tap.stats() if tap else None,
            "assignedAddresses": [str(a) for a in own.addresses] if own else [],
            "routes": [
                {"target": str(r.target), "via": str(r.via) if r.via else None, "flags": 0,
                 "metric": r.metric}
                for r in (config.routes if config else ())
            ],
            "dns": {
                "domain": config.dns_domain if config else "",
                "servers": list(config.dns_servers) if config else [],
            },
            "netconfRevision": config.revision if config else 0,
            "source": "file" if static else "controller",
            "rejectedConfigs": joined.rejected_configs if joined else 0,
            "lastRejection": joined.last_rejection if joined else "",
            **routing,
            "fullTunnelReason": _full_tunnel_reason(config, routing),
        }

    def _status_detail(self, network_id: str, joined, port_error: int) -> str:
        """What a newcomer needs to know when the status alone does not say it."""
        if port_error:
            reason = self.service.port_errors().get(network_id) or os.strerror(port_error)
            return f"the device could not be created: {reason}"
        if joined is None:
            return ""
        if joined.status == STATUS_NOT_FOUND:
            return f"controller {controller_address(network_id)} has no network {network_id}"
        if joined.status == STATUS_ACCESS_DENIED:
            return (f"controller {controller_address(network_id)} has not authorized this "
                    f"node ({self.service.identity.address}) yet")  # fmt: skip
        return joined.waiting_hint(self.service.now())

    async def networks(self, request: Request) -> list:
        s = self.service
        await s.routing.refresh_counters()
        return [self._network_json(i) for i in s.networks.ids()]

    async def network(self, request: Request) -> dict:
        await self.service.routing.refresh_counters()
        return self._network_json(_network_id(request))

    async def join(self, request: Request) -> dict:
        """Join with an empty body; set flags ({"allowDefault": true, ...}) of a network this
        node is in. Flags for a network not joined are refused: a typo in a network id must
        not join a stranger's network with the full tunnel armed."""
        network_id = _network_id(request)
        body = _body(request)
        member = self.service.networks.is_member(network_id)
        if body:
            try:  # checked before anything changes: a bad request changes nothing
                self.service.routing.flags.of(network_id).changed(body)
            except FlagsError as exc:
                raise ApiError(400, str(exc)) from None
            if not member:
                raise ApiError(404, f"not a member of {network_id}: join it first (POST {{}} "
                                    f"or `oneservice-cli join {network_id}`), then set flags")
            try:
                self.service.set_network_flags(network_id, body)
            except FlagsError as exc:  # its flags file is damaged: not written over
                raise ApiError(409, str(exc)) from None
        elif not member:
            self.service.join(network_id)
        return self._network_json(network_id)

    async def leave(self, request: Request) -> dict:
        network_id = _network_id(request)
        if self.service.networks.static_config(network_id) is not None:
            raise ApiError(409, f"network {network_id} is defined by a file in networks.d: "
                                "remove the file and restart to leave it")  # fmt: skip
        if not await self.service.leave(network_id):
            raise ApiError(404, f"not a member of network {network_id}")
        return {"id": network_id, "left": True}

    def _peers_json(self) -> list[dict]:
        """The core's view of its peers in ZeroTier's shape (times in milliseconds since the
        epoch, 0 for never), with the interface each path leaves through."""
        s = self.service
        interfaces = socket_interfaces(s.binder_state())
        return [
            {
                "address": peer.address,
                "state": peer.state,
                "connected": peer.connected,
                "role": "ROOT" if peer.root else "LEAF",
                "latency": _whole_ms(peer.rtt),
                **UNKNOWN_VERSION,
                "isBonded": False,
                "tunneled": False,
                "paths": [
                    {
                        # zerotier-cli shows ip/port; a relay path has none: its root, port 0.
                        "address": (f"{path.endpoint[0]}/{path.endpoint[1]}" if path.endpoint
                                    else f"{path.via}/0"),
                        "localSocket": path.socket_id if path.socket_id is not None else -1,
                        "via": path.via,
                        "kind": path.kind,  # direct, lan, port-mapped, birthday or relayed
                        "interface": (f"via {path.via}" if path.via
                                      else interfaces.get(path.socket_id)),
                        "active": path.active,
                        "preferred": path.preferred,
                        "latency": _whole_ms(path.rtt),
                        "lastSend": _epoch_ms(path.last_sent),
                        "lastReceive": _epoch_ms(path.last_received),
                        # Paths are forgotten when they die rather than kept as expired.
                        "expired": False,
                        "localPort": s.port,
                        "trustedPathId": 0,
                    }
                    for path in peer.paths
                ],
            }
            for peer in s.peer_views()
        ]

    async def peers(self, request: Request) -> list:
        return self._peers_json()

    async def peer(self, request: Request) -> dict:
        address = request.params["address"]
        for entry in self._peers_json():
            if entry["address"] == address:
                return entry
        raise ApiError(404, f"no peer {address}")

    async def moons(self, request: Request) -> list:
        return []  # no moons: roots are listed in local.conf

    async def moon(self, request: Request) -> dict:
        raise ApiError(404, "moons are not supported: list roots in local.conf "
                            '("roots": [{"identity": ..., "endpoints": [...]}])')  # fmt: skip

    async def portal(self, request: Request) -> dict:
        return self.service.routing.portal.document()

    async def portal_open(self, request: Request) -> dict:
        """{"seconds": N}: a login window of N seconds without the full tunnel (0 closes it);
        without a body, DEFAULT_OPEN_S."""
        body = _body(request)
        seconds = body.get("seconds", DEFAULT_OPEN_S)
        if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                or not 0 <= seconds <= MAX_OPEN_S):  # fmt: skip
            raise ApiError(400, f"seconds must be a number from 0 to {MAX_OPEN_S}, got "
                                f"{json.dumps(seconds)}")  # fmt: skip
        self.service.open_portal(float(seconds))
        return self.service.routing.portal.document()

    async def leaktest(self, request: Request) -> dict:
        """Checks the full tunnel for leaks (routing/leaktest.py); a second or two."""
        network_id = _network_id(request) if "nwid" in request.params else None
        return await self.service.leaktest(network_id)

    async def routes(self, request: Request) -> dict:
        await self.service.routing.refresh_counters()
        return routes_document(self.service.routing)

    async def binder(self, request: Request) -> dict:
        state = self.service.binder_state()
        ranks = self.service.uplink_ranks()
        for bound in state["bound"]:
            bound["rank"] = ranks.get(bound["id"])  # lower carries the tunnel
        return state

    async def controller_status(self, request: Request) -> dict:
        return {"controller": True, "apiVersion": 4, "clock": int(time.time() * 1000),
                "address": self.service.identity.address}  # fmt: skip

    async def controller_networks(self, request: Request) -> list:
        if not self.service.controller.opened:
            return []
        return await self.service.controller_call(on_controller("networks"))

    async def _existing(self, function: Callable[..., T], network_id: str, *args: Any) -> T:
        """``function(controller, network_id, *args)`` on the controller's thread. Reads never
        create controller.db: a node that was only asked about a network does not become a
        controller."""
        if not self.service.controller.opened:
            raise ApiError(404, f"network {network_id} not found: this node controls no "
                                "networks yet")  # fmt: skip
        return await self.service.controller_call(function, network_id, *args)

    async def controller_network(self, request: Request) -> dict:
        return await self._existing(on_controller("network"), _network_id(request))

    async def controller_network_post(self, request: Request) -> dict:
        """Create (also as <controller address>______ for a random id) or update."""
        raw_id = request.params["nwid"]
        body = _body(request)
        if raw_id == self.service.identity.address + "______":
            return await self.service.controller_call(on_controller("create_network"), None, body,
                                                      create=True)  # fmt: skip
        network_id = _network_id(request)
        created, result = await self.service.controller_call(create_or_update, network_id,
                                                             body, create=True)  # fmt: skip
        if not created:
            self.service.push_config(network_id)
        return result

    async def controller_network_delete(self, request: Request) -> dict:
        """ZeroTier's answer: the deleted network."""
        network_id = _network_id(request)
        deleted, members = await self._existing(delete_network, network_id, time.time())
        self.service.push_config(network_id, also=members)
        return deleted

    async def controller_members(self, request: Request) -> dict:
        """ZeroTier's shape: {"<member address>": <member revision>}."""
        return await self._existing(on_controller("member_revisions"), _network_id(request))

    async def controller_member(self, request: Request) -> dict:
        return await self._existing(on_controller("member"), _network_id(request),
                                    request.params["address"])  # fmt: skip

    async def controller_member_post(self, request: Request) -> dict:
        network_id = _network_id(request)
        body = _body(request)
        result = await self._existing(on_controller("update_member"), network_id,
                                      request.params["address"], body)  # fmt: skip
        self.service.push_config(network_id)
        return result

    async def controller_member_delete(self, request: Request) -> dict:
        """ZeroTier's answer: the deleted member."""
        network_id = _network_id(request)
        address = request.params["address"]
        deleted = await self._existing(on_controller("delete_member"), network_id, address)
        self.service.push_config(network_id, also=[address])
        return deleted


def _whole_ms(seconds: float | None) -> int:
    return -1 if seconds is None else round(seconds * 1000)


def _epoch_ms(when: float | None) -> int:
    return 0 if when is None else int(when * 1000)


def _full_tunnel_reason(config, routing: dict) -> str:
    """Why the full tunnel is off although allowDefault is on."""
    if not routing.get("allowDefault") or routing.get("fullTunnel") != "off":
        return ""
    if config is None:
        return "no config from the controller yet"
    if not any(r.target.prefixlen == 0 for r in config.routes):
        return ("the network routes no default (0.0.0.0/0 or ::/0) via a member: ask its "
                "controller for one")  # fmt: skip
    reasons = [r["reason"] for r in routing.get("routeStatus", [])
               if r.get("target") in ("0.0.0.0/0", "::/0") and not r.get("installed")]
    return "; ".join(reasons)


def socket_interfaces(binder: dict) -> dict[int, str]:
    """The interface of each binder socket (spares too: a birthday path leaves by one)."""
    return {b["id"]: b["interface"] for b in (*binder["bound"], *binder["spares"])}
