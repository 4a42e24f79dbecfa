"""The local JSON API, shaped like ZeroTier's service API (docs/API.md).

HTTP on loopback (127.0.0.1 and ::1) at the primary port. Every request needs the token from
`authtoken.secret`, as header `X-ZT1-Auth` or `Authorization: Bearer`. Bad requests get a 4xx
with {"error": "..."}; nothing a request carries can crash the service.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import __version__
from .controller.controller import ControllerError
from .network.config import is_network_id
from .routing.flags import FlagsError
from .settings import PORT_FILE, TOKEN_FILE
from .tap import tap_name

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024


def load_or_create_token(home) -> str:
    path = home / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token)
    return token


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def start_api(service: Service) -> web.AppRunner:
    token = load_or_create_token(service.home)

    @web.middleware
    async def guard(request: web.Request, handler):
        if not _management_allowed(request.remote, service.settings.allow_management_from):
            return _error(403, f"{request.remote} may not manage this node: only loopback and "
                               "settings.allowManagementFrom may")  # fmt: skip
        supplied = request.headers.get("X-ZT1-Auth", "")
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            supplied = supplied or bearer[7:]
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            return _error(401, f"missing or wrong token: send the contents of {TOKEN_FILE} as "
                               "header X-ZT1-Auth or Authorization: Bearer")  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except ApiError as exc:
            return _error(exc.status, str(exc))
        except ControllerError as exc:
            return _error(exc.status, str(exc))
        except Exception:
            log.exception("API %s %s failed", request.method, request.path)
            return _error(500, "internal error (logged by the service)")

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    routes = Routes(service)
    app.add_routes([
        web.get("/status", routes.status),
        web.get("/network", routes.networks),
        web.get("/network/{nwid}", routes.network),
        web.post("/network/{nwid}", routes.join),
        web.delete("/network/{nwid}", routes.leave),
        web.get("/peer", routes.peers),
        web.get("/peer/{address}", routes.peer),
        web.get("/binder", routes.binder),
        web.get("/routes", routes.routes),
        web.get("/controller", routes.controller_status),
        web.get("/controller/network", routes.controller_networks),
        web.get("/controller/network/{nwid}", routes.controller_network),
        web.post("/controller/network/{nwid}", routes.controller_network_post),
        web.delete("/controller/network/{nwid}", routes.controller_network_delete),
        web.get("/controller/network/{nwid}/member", routes.controller_members),
        web.get("/controller/network/{nwid}/member/{address}", routes.controller_member),
        web.post("/controller/network/{nwid}/member/{address}", routes.controller_member_post),
        web.delete("/controller/network/{nwid}/member/{address}",
                   routes.controller_member_delete),
    ])  # fmt: skip
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = service.binder.port
    bound = []
    # Loopback only, unless the user named other networks (the guard then checks each client).
    hosts = ("0.0.0.0", "::") if service.settings.allow_management_from else ("127.0.0.1", "::1")
    for host in hosts:
        try:
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            bound.append(host)
        except OSError as exc:
            log.warning("local API not on %s port %d: %s", host, port, exc.strerror or exc)
    if not bound:
        await runner.cleanup()
        raise OSError(f"local API could not listen on 127.0.0.1 or ::1 port {port}")
    (service.home / PORT_FILE).write_text(f"{port}\n", encoding="ascii")
    log.info("local API on %s port %d", " and ".join(bound), port)
    return runner


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


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def _network_id(request: web.Request) -> str:
    network_id = request.match_info["nwid"]
    if not is_network_id(network_id):
        raise ApiError(400, f"network id must be 16 lowercase hex digits, got {network_id!r}")
    return network_id


class Routes:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def status(self, request: web.Request) -> web.Response:
        s = self.service
        bound = s.binder.state()["bound"]
        return web.json_response({
            "address": s.identity.address,
            "publicIdentity": s.identity.public_text(),
            "online": any(p.current is not None for p in s.core.peers.values()),
            "version": __version__,
            "clock": int(time.time() * 1000),
            "config": {"settings": {
                "primaryPort": s.binder.port,
                "listeningOn": [f"{b['address']}/{b['port']}" for b in bound],
            }},
        })  # fmt: skip

    def _network_json(self, network_id: str) -> dict[str, Any]:
        s = self.service
        joined = s.memberships.networks.get(network_id)
        static = next((n for n in s.static_networks if n.id == network_id), None)
        if joined is None and static is None:
            raise ApiError(404, f"not a member of network {network_id}")
        config = static or (joined.config if joined else None)
        own = config.member(s.identity.address) if config else None
        tap = s.taps.get(network_id)
        return {
            "id": network_id,
            "nwid": network_id,
            "name": config.name if config else "",
            "status": "OK" if static else joined.status,
            "type": ("PRIVATE" if config.private else "PUBLIC") if config else "PRIVATE",
            "mtu": config.mtu if config else 0,
            "portDeviceName": tap.name if tap else tap_name(network_id),
            "device": tap.stats() if tap else None,
            "assignedAddresses": [str(a) for a in own.addresses] if own else [],
            "routes": [
                {"target": str(r.target), "via": str(r.via) if r.via else None}
                for r in (config.routes if config else ())
            ],
            "netconfRevision": config.revision if config else 0,
            "source": "file" if static else "controller",
            "rejectedConfigs": joined.rejected_configs if joined else 0,
            "lastRejection": joined.last_rejection if joined else "",
            **s.routing.network_document(network_id),
        }

    async def networks(self, request: web.Request) -> web.Response:
        s = self.service
        ids = [n.id for n in s.static_networks] + list(s.memberships.networks)
        return web.json_response([self._network_json(i) for i in dict.fromkeys(ids)])

    async def network(self, request: web.Request) -> web.Response:
        return web.json_response(self._network_json(_network_id(request)))

    async def join(self, request: web.Request) -> web.Response:
        """Join (if not yet a member) and set flags: {"allowDefault": true, ...}."""
        network_id = _network_id(request)
        body = await _body(request)
        static = any(n.id == network_id for n in self.service.static_networks)
        if body:
            try:  # checked before joining: a bad request changes nothing
                self.service.routing.flags_for(network_id).changed(body)
            except FlagsError as exc:
                raise ApiError(400, str(exc)) from None
        if not static and network_id not in self.service.memberships.networks:
            self.service.join(network_id)
        if body:
            self.service.set_network_flags(network_id, body)
        return web.json_response(self._network_json(network_id))

    async def leave(self, request: web.Request) -> web.Response:
        network_id = _network_id(request)
        if any(n.id == network_id for n in self.service.static_networks):
            raise ApiError(409, f"network {network_id} is defined by a file in networks.d: "
                                "remove the file and restart to leave it")  # fmt: skip
        if not await self.service.leave(network_id):
            raise ApiError(404, f"not a member of network {network_id}")
        return web.json_response({"id": network_id, "left": True})

    def _peers_json(self) -> list[dict]:
        """The core's view of its peers, with the interface each path leaves through."""
        interfaces = {b["id"]: b["interface"] for b in self.service.binder.state()["bound"]}
        peers = self.service.core.peer_state(self.service.loop.time())
        for peer in peers:
            for path in peer["paths"]:
                path["interface"] = (
                    f"via {path['via']}" if path["via"] else interfaces.get(path["localSocket"])
                )
        return peers

    async def peers(self, request: web.Request) -> web.Response:
        return web.json_response(self._peers_json())

    async def peer(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        for entry in self._peers_json():
            if entry["address"] == address:
                return web.json_response(entry)
        raise ApiError(404, f"no peer {address}")

    async def routes(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.routing.document())

    async def binder(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.binder.state())

    async def controller_status(self, request: web.Request) -> web.Response:
        return web.json_response({"controller": True, "apiVersion": 1,
                                  "address": self.service.identity.address})  # fmt: skip

    async def controller_networks(self, request: web.Request) -> web.Response:
        controller = self.service.controller
        return web.json_response(controller.networks() if controller else [])

    async def controller_network(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        return web.json_response(controller.network(_network_id(request)))

    async def controller_network_post(self, request: web.Request) -> web.Response:
        """Create (also as <controller address>______ for a random id) or update."""
        controller = self.service.ensure_controller()
        raw_id = request.match_info["nwid"]
        body = await _body(request)
        if raw_id == self.service.identity.address + "______":
            return web.json_response(controller.create_network(None, body))
        network_id = _network_id(request)
        if network_id not in controller.networks():
            return web.json_response(controller.create_network(network_id, body))
        result = controller.update_network(network_id, body)
        self.service.push_config(network_id)
        return web.json_response(result)

    async def controller_network_delete(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        network_id = _network_id(request)
        members = controller.online_members(network_id, time.time())
        controller.delete_network(network_id)
        self.service.push_config(network_id, also=members)
        return web.json_response({"id": network_id, "deleted": True})

    async def controller_members(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        members = controller.members(_network_id(request))
        return web.json_response(members)

    async def controller_member(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        return web.json_response(
            controller.member(_network_id(request), request.match_info["address"])
        )

    async def controller_member_post(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        network_id = _network_id(request)
        body = await _body(request)
        result = controller.update_member(network_id, request.match_info["address"], body)
        self.service.push_config(network_id)
        return web.json_response(result)

    async def controller_member_delete(self, request: web.Request) -> web.Response:
        controller = self.service.ensure_controller()
        network_id = _network_id(request)
        address = request.match_info["address"]
        controller.delete_member(network_id, address)
        self.service.push_config(network_id, also=[address])
        return web.json_response({"deleted": True})
