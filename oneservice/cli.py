"""oneservice-cli: drive a running node through its local API, like zerotier-cli.

    oneservice-cli [-D<home>] [-p<port>] [-T<token>] [-j] <command> [arguments]

The plain lines of `info`, `listnetworks` and `listpeers` match zerotier-cli's, so scripts
written for it keep working; the other commands print aligned tables; -j prints the API's
JSON. Controller commands create networks, add routes and gateways and authorize members.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .settings import DEFAULT_PRIMARY_PORT, PORT_FILE, TOKEN_FILE, default_home


class CliError(Exception):
    """What went wrong, said so that the user knows what to do."""


# --- talking to the node ---------------------------------------------------------------------


class Client:
    def __init__(self, home: Path, port: int | None, token: str | None) -> None:
        self.home = home
        self.port = port if port is not None else _saved_port(home)
        self.token = token if token is not None else _read_token(home)

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"X-ZT1-Auth": self.token, "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]
            except (ValueError, KeyError, TypeError):
                message = exc.reason
            raise CliError(f"{exc.code} {message}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise CliError(
                    f"service not running on port {self.port}: start it with "
                    "`python -m oneservice` (or `systemctl start oneservice`)"
                ) from None
            raise CliError(f"cannot reach the service on port {self.port}: {exc.reason}") from None
        except TimeoutError:
            raise CliError(f"the service on port {self.port} did not answer in 10 s") from None


def _saved_port(home: Path) -> int:
    try:
        return int((home / PORT_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return DEFAULT_PRIMARY_PORT


def _read_token(home: Path) -> str:
    path = home / TOKEN_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except PermissionError:
        raise CliError(f"permission denied reading {path}: run as root or pass -T") from None
    except FileNotFoundError:
        raise CliError(
            f"{path} not found: is the service's home {home}? pass -D<home> or -T<token>"
        ) from None


# --- output ----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell."""
    cells = [[str(c) for c in headers], *[["-" if c in (None, "") else str(c) for c in row]
                                           for row in rows]]  # fmt: skip
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def info_line(status: dict) -> str:
    state = "ONLINE" if status.get("online") else "OFFLINE"
    return f"200 info {status['address']} {status['version']} {state}"


def network_lines(networks: list[dict]) -> str:
    lines = ["200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"]
    for n in networks:
        addresses = ",".join(n.get("assignedAddresses", [])) or "-"
        lines.append(f"200 listnetworks {n['id']} {n.get('name') or '-'} - {n['status']} "
                     f"{n['type']} {n['portDeviceName']} {addresses}")  # fmt: skip
    return "\n".join(lines)


def peer_lines(peers: list[dict]) -> str:
    lines = ["200 listpeers <ztaddr> <path> <latency> <version> <role>"]
    for p in peers:
        preferred = next((path for path in p["paths"] if path["preferred"]), None)
        where = preferred["address"] if preferred else "-"
        lines.append(f"200 listpeers {p['address']} {where} {p['latency']} - {p['role']}")
    return "\n".join(lines)


def peer_table(peers: list[dict]) -> str:
    rows = []
    for p in peers:
        preferred = next((path for path in p["paths"] if path["preferred"]), None)
        rows.append([p["address"], p["role"], "yes" if p["connected"] else "no",
                     preferred["address"] if preferred else None,
                     preferred["interface"] if preferred else None,
                     p["latency"] if p["latency"] >= 0 else None,
                     sum(1 for path in p["paths"] if path["active"])])  # fmt: skip
    return table(["ADDRESS", "ROLE", "CONNECTED", "PATH", "INTERFACE", "LATENCY_MS", "ACTIVE"],
                 rows)  # fmt: skip


def interface_table(binder: dict) -> str:
    rows = [[b["interface"], b["family"], "bound", b["address"]] for b in binder["bound"]]
    rows += [[s["interface"], s.get("family") or None, "skipped", s["reason"]]
             for s in binder["skipped"]]  # fmt: skip
    return table(["INTERFACE", "FAMILY", "STATE", "ADDRESS / REASON"], rows)


def route_table(routes: dict) -> str:
    rows = [[r["nwid"], r["target"], r["via"], "yes" if r["installed"] else "no", r["reason"]]
            for r in routes["routes"]]  # fmt: skip
    text = table(["NETWORK", "TARGET", "VIA", "INSTALLED", "REASON"], rows)
    for error in routes.get("errors", []):
        text += f"\nerror: {error}"
    return text


# --- commands --------------------------------------------------------------------------------


def flag_value(text: str) -> Any:
    """`allowManaged=10.0.0.0/8,192.168.0.0/16` is a list; everything else goes as written
    (the node accepts 1/0/true/false and says what is wrong otherwise)."""
    return text.split(",") if "/" in text else text


# Read-only commands: the API path and how to print its answer without -j.
VIEWS = {
    "info": ("/status", info_line),
    "listnetworks": ("/network", network_lines),
    "listpeers": ("/peer", peer_lines),
    "peers": ("/peer", peer_table),
    "interfaces": ("/binder", interface_table),
    "routes": ("/routes", route_table),
}


def run(args: argparse.Namespace, client: Client) -> str:
    c, command, rest = client, args.command, args.arguments
    if command in VIEWS:
        path, show = VIEWS[command]
        answer = c.call("GET", path)
        return json.dumps(answer, indent=2) if args.json else show(answer)
    if command == "join":
        nwid = _one(rest, "join <network id>")
        network = c.call("POST", f"/network/{nwid}", {})
        return json.dumps(network, indent=2) if args.json else f"200 join OK ({network['status']})"
    if command == "leave":
        nwid = _one(rest, "leave <network id>")
        c.call("DELETE", f"/network/{nwid}")
        return "200 leave OK"
    if command == "set":
        if len(rest) != 2 or "=" not in rest[1]:
            raise CliError("usage: set <network id> <flag>=<value>, e.g. allowDefault=1")
        key, _, value = rest[1].partition("=")
        network = c.call("POST", f"/network/{rest[0]}", {key: flag_value(value)})
        return json.dumps(network, indent=2) if args.json else f"200 set {key}={network[key]}"
    if command == "get":
        if len(rest) != 2:
            raise CliError("usage: get <network id> <field>")
        network = c.call("GET", f"/network/{rest[0]}")
        if rest[1] not in network:
            raise CliError(f"network {rest[0]} has no field {rest[1]!r}; "
                           f"known: {', '.join(sorted(network))}")  # fmt: skip
        return json.dumps(network[rest[1]])
    return run_controller(args, client)


def run_controller(args: argparse.Namespace, c: Client) -> str:
    command, rest = args.command, args.arguments
    if command == "network-create":
        address = c.call("GET", "/status")["address"]
        body: dict[str, Any] = {"name": rest[0] if rest else ""}
        if args.subnet:
            body["routes"] = [{"target": args.subnet}]
        if args.pool:
            start, _, end = args.pool.partition("-")
            body["ipAssignmentPools"] = [{"ipRangeStart": start, "ipRangeEnd": end}]
        network = c.call("POST", f"/controller/network/{address}______", body)
        return json.dumps(network, indent=2) if args.json else network["id"]
    if command == "network-route":
        if len(rest) not in (2, 3):
            raise CliError("usage: network-route <network id> <target CIDR> [<via address>]")
        network = c.call("GET", f"/controller/network/{rest[0]}")
        route = {"target": rest[1], **({"via": rest[2]} if len(rest) == 3 else {})}
        routes = [r for r in network["routes"] if r["target"] != rest[1]] + [route]
        network = c.call("POST", f"/controller/network/{rest[0]}", {"routes": routes})
        return json.dumps(network, indent=2) if args.json else f"200 routes {network['routes']}"
    if command == "network-show":
        return json.dumps(c.call("GET", f"/controller/network/{_one(rest, 'network-show <id>')}"),
                          indent=2)  # fmt: skip
    if command == "members":
        members = c.call("GET", f"/controller/network/{_one(rest, 'members <network id>')}/member")
        if args.json:
            return json.dumps(members, indent=2)
        return table(["ADDRESS", "AUTHORIZED", "NAME"],
                     [[m["address"], m["authorized"], m["name"]] for m in members])  # fmt: skip
    if command in ("authorize", "deauthorize"):
        if len(rest) != 2:
            raise CliError(f"usage: {command} <network id> <member address>")
        body = {"authorized": command == "authorize"}
        if args.ip:
            body["ipAssignments"] = args.ip
        member = c.call("POST", f"/controller/network/{rest[0]}/member/{rest[1]}", body)
        return (
            json.dumps(member, indent=2)
            if args.json
            else (f"200 {command} {rest[1]} {','.join(member.get('ipAssignments', [])) or '-'}")
        )
    raise CliError(f"unknown command {command!r}; see --help")


def _one(rest: list[str], usage: str) -> str:
    if len(rest) != 1:
        raise CliError(f"usage: {usage}")
    return rest[0]


COMMANDS = """commands:
  info                          address, version, online
  listnetworks                  joined networks (zerotier-cli lines)
  listpeers | peers             peers (zerotier-cli lines | a table)
  join <nwid> | leave <nwid>
  set <nwid> <flag>=<value>     allowManaged, allowGlobal, allowDefault, allowDNS, allowLanAccess
  get <nwid> <field>            any field of the network, e.g. status or fullTunnel
  interfaces                    bound and skipped interfaces, with reasons
  routes                        every managed route and why it is or is not installed
controller (networks whose id starts with this node's address):
  network-create [name] [--subnet CIDR] [--pool START-END]
  network-route <nwid> <target> [via]   add a route; a via makes that member a gateway
  network-show <nwid>
  members <nwid>
  authorize <nwid> <address> [--ip IP]... | deauthorize <nwid> <address>
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="oneservice-cli", description="Drive a running oneservice node.",
        epilog=COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("-D", dest="home", type=Path, default=default_home(),
                        help="the node's home directory (default: %(default)s)")  # fmt: skip
    parser.add_argument("-p", dest="port", type=int, help="API port (default: from the home)")
    parser.add_argument("-T", dest="token", help="API token (default: <home>/authtoken.secret)")
    parser.add_argument("-j", dest="json", action="store_true", help="print JSON")
    parser.add_argument("--subnet", help="network-create: the network's own subnet route")
    parser.add_argument("--pool", help="network-create: address pool START-END")
    parser.add_argument("--ip", action="append", help="authorize: assign this address")
    parser.add_argument("--version", action="version", version=f"oneservice {__version__}")
    parser.add_argument("command")
    parser.add_argument("arguments", nargs="*")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args, Client(args.home, args.port, args.token)))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
