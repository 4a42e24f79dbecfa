"""oneservice-cli: drive a running node through its local API, like zerotier-cli.

    oneservice-cli [-D<home>] [-p<port>] [-T<token>] [-j] <command> [arguments]

The commands zerotier-cli has (info, listnetworks, listpeers, peers, listmoons, join, leave,
set, get) print what it prints, so scripts written for it keep working; -j prints JSON as it
does. The other commands print aligned tables. Controller commands create networks, add
routes and gateways and authorize members.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .settings import DEFAULT_PRIMARY_PORT, PORT_FILE, TOKEN_FILE, default_home


class ChecksFailed(Exception):
    """A command whose checks did not all pass: its output is printed, and it exits 1."""

    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.output = output


class CliError(Exception):
    """What went wrong, said so that the user knows what to do."""


class ApiAnswer(Exception):
    """The node answered with an error status; printed as zerotier-cli prints it."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


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
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiAnswer(exc.code, _one_line(exc.read())) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError):
                raise CliError(
                    f"service not running on port {self.port}: start it with "
                    "`python -m oneservice` (or `systemctl start oneservice`)"
                ) from None
            raise CliError(f"cannot reach the service on port {self.port}: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise CliError(f"the service on port {self.port} did not answer: {exc}") from None
        try:
            return json.loads(text or b"null")
        except ValueError:
            raise CliError(f"invalid JSON response from port {self.port} to {path}") from None


def _one_line(body: bytes) -> str:
    """An error body as one line of text (compact JSON when it is JSON)."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return body.decode("utf-8", "replace").strip().replace("\n", " ")


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
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def json_dump(document: Any) -> str:
    """As zerotier-cli's -j prints: keys sorted, one space per level."""
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False)


def json_string(value: Any, default: str = "-") -> str:
    """A JSON value as zerotier-cli prints one: strings raw, booleans 1/0, numbers whole;
    lists and objects (which zerotier-cli cannot print) as compact JSON."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return default


def _objects(answer: Any) -> list[dict]:
    return [item for item in answer if isinstance(item, dict)] if isinstance(answer, list) else []


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value if isinstance(value, str) else json_string(value)


def info_line(status: dict) -> str:
    state = ("TUNNELED" if status.get("tcpFallbackActive")
             else "ONLINE" if status.get("online") else "OFFLINE")  # fmt: skip
    return (f"200 info {json_string(status.get('address'))} {json_string(status.get('version'))} "
            f"{state}")  # fmt: skip


def network_lines(networks: list[dict]) -> str:
    lines = ["200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"]
    for n in _objects(networks):
        addresses = ",".join(a for a in n.get("assignedAddresses", []) if isinstance(a, str))
        fields = [json_string(n.get(key)) for key in
                  ("nwid", "name", "mac", "status", "type", "portDeviceName")]  # fmt: skip
        lines.append(f"200 listnetworks {' '.join(fields)} {addresses or '-'}")
    return "\n".join(lines)


def _preferred_path(peer: dict) -> dict | None:
    paths = peer.get("paths")
    return next((p for p in _objects(paths) if p.get("preferred")), None)


def _with_kinds(peers: list[dict]) -> str:
    """" <kind>" where the node says what each path is (direct, lan, relayed): a last column,
    so that zerotier-cli's columns stay in place; "" for a ZeroTier node (it does not say)."""
    return " <kind>" if any("kind" in path for p in _objects(peers)
                            for path in _objects(p.get("paths"))) else ""  # fmt: skip


def _path_kind(path: dict | None) -> str:
    kind = path.get("kind") if path is not None else None
    return f" {json_string(kind) if kind else '-'}"


def _since_ms(path: dict, key: str, now_ms: int) -> int:
    when = path.get(key)
    return now_ms - int(when) if isinstance(when, int | float) else -1


def _peer_version(peer: dict) -> str:
    major = peer.get("versionMajor", -1)
    if not isinstance(major, int) or major < 0:
        return "-"
    return f"{major}.{peer.get('versionMinor', 0)}.{peer.get('versionRev', 0)}"


def _latency(peer: dict) -> int:
    latency = peer.get("latency", 0)
    return int(latency) if isinstance(latency, int | float) else 0


def peer_lines(peers: list[dict], now_ms: int) -> str:
    kinds = _with_kinds(peers)
    lines = ["200 listpeers <ztaddr> <path> <latency> <version> <role>" + kinds]
    for p in _objects(peers):
        path = _preferred_path(p)
        where = "-"
        if path is not None:
            where = (f"{json_string(path.get('address'))};{_since_ms(path, 'lastSend', now_ms)};"
                     f"{_since_ms(path, 'lastReceive', now_ms)}")  # fmt: skip
        lines.append(f"200 listpeers {json_string(p.get('address'))} {where} {_latency(p)} "
                     f"{_peer_version(p)} {json_string(p.get('role'))}"
                     f"{_path_kind(path) if kinds else ''}")  # fmt: skip
    return "\n".join(lines)


def peer_table(peers: list[dict], now_ms: int) -> str:
    """zerotier-cli's `peers`: a relay path (through one of our roots) shows as RELAY."""
    kinds = _with_kinds(peers)
    lines = ["200 peers", "<ztaddr>   <ver>  <role> <lat> <link> <lastTX> <lastRX> <path>" + kinds]
    for p in _objects(peers):
        path = _preferred_path(p)
        link = "RELAY"
        if path is not None and not path.get("via"):
            link = (f"DIRECT {_since_ms(path, 'lastSend', now_ms):<8} "
                    f"{_since_ms(path, 'lastReceive', now_ms):<8} "
                    f"{json_string(path.get('address'))}")  # fmt: skip
        lines.append(f"{json_string(p.get('address'))} {_peer_version(p):<6} "
                     f"{json_string(p.get('role')):<6} {_latency(p):>5} {link}"
                     f"{_path_kind(path) if kinds else ''}")  # fmt: skip
    return "\n".join(lines)


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

# Flags that are true or false; zerotier-cli sends them as JSON booleans, and so do we.
# The flags of routing/flags.py (not imported: the CLI stays light; a test keeps them equal).
BOOLEAN_FLAGS = ("allowManaged", "allowGlobal", "allowDefault", "allowDNS", "allowLanAccess",
                 "fullTunnelQuarters")  # fmt: skip
PORT_FLAGS = ("fullTunnelOnly", "fullTunnelExcept")
TRUE_WORDS, FALSE_WORDS = ("1", "true", "t", "yes", "on"), ("0", "false", "f", "no", "off")


def flag_value(key: str, text: str) -> Any:
    """`allowDefault=1` is JSON true (zerotier-one ignores the string "1");
    `allowManaged=10.0.0.0/8,192.168.0.0/16` is a list of CIDRs, `fullTunnelOnly=tcp/80,udp/53`
a list of ports."""
    if key == "allowManaged" and "/" in text:
        return text.split(",")
    if key in PORT_FLAGS:  # fullTunnelOnly=tcp/80,udp/53; empty: none
        return [part for part in text.split(",") if part]
    if key in BOOLEAN_FLAGS:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise CliError(f"{key} takes 1 or 0 (true/false), got {json.dumps(text)}")
    raise CliError(f"unknown flag {json.dumps(key)}; known: "
                   f"{', '.join((*BOOLEAN_FLAGS, *PORT_FLAGS))}")


# zerotier-cli's `get` pseudo-fields: the assigned addresses without their prefix length.
ADDRESS_FIELDS = {
    "ip": lambda a: True,
    "ip4": lambda a: "." in a,
    "ip6": lambda a: ":" in a,
    "ip6plane": lambda a: a.startswith("fc"),
    "ip6prefix": lambda a: a.startswith("fc"),
}


def get_value(network: dict, field: str) -> str:
    if field in ADDRESS_FIELDS:
        chosen = [a.split("/")[0] for a in network.get("assignedAddresses", [])
                  if isinstance(a, str) and ADDRESS_FIELDS[field](a)]  # fmt: skip
        if field == "ip6prefix":
            chosen = [a[:24] for a in chosen]
        return "\n".join(chosen)
    if field not in network:
        raise CliError(f"error, unknown property name {json.dumps(field)}; known: "
                       f"{', '.join(sorted(network))}, ip, ip4, ip6")  # fmt: skip
    return json_string(network[field])


def portal_lines(answer: dict) -> str:
    lines = [f"captive portal on {uplink}: {detail}"
             for uplink, detail in sorted(answer["detected"].items())]
    if answer["loginWindowSecondsLeft"]:
        lines.append(f"login window open: direct traffic allowed for "
                     f"{answer['loginWindowSecondsLeft']} s more, then the full tunnel comes "
                     "back")  # fmt: skip
    if not answer["probeUrl"]:
        lines.append("no probe: settings.captivePortalUrl is not set in local.conf")
    return "\n".join(lines or ["no captive portal seen"])


def leaktest_lines(answer: dict) -> str:
    """One line per check ("PASS routes: ..."), then the verdict."""
    lines = [f"{c['result']} {c['check']}: {c['detail']}" for c in answer["checks"]]
    network = answer.get("network") or "-"
    lines.append(f"{answer['result']}: leak test of network {network}")
    return "\n".join(lines)


def _now_ms() -> int:
    return int(time.time() * 1000)


# Read-only commands: the API path and how to print its answer without -j.
VIEWS = {
    "info": ("/status", info_line),
    "status": ("/status", info_line),
    "listnetworks": ("/network", network_lines),
    "listpeers": ("/peer", lambda answer: peer_lines(answer, _now_ms())),
    "peers": ("/peer", lambda answer: peer_table(answer, _now_ms())),
    "listmoons": ("/moon", json_dump),
    "interfaces": ("/binder", interface_table),
    "routes": ("/routes", route_table),
}


def run(args: argparse.Namespace, client: Client) -> str:
    c, command, rest = client, args.command, args.arguments
    if command in VIEWS:
        path, show = VIEWS[command]
        answer = c.call("GET", path)
        return json_dump(answer) if args.json else show(answer)
    if command == "join":
        network = c.call("POST", f"/network/{_network_argument(rest, 'join <network id>')}", {})
        return json_dump(network) if args.json else "200 join OK"
    if command == "leave":
        answer = c.call("DELETE", f"/network/{_network_argument(rest, 'leave <network id>')}")
        return json_dump(answer) if args.json else "200 leave OK"
    if command == "portal":
        action = rest[0] if rest else "status"
        if action not in ("status", "open", "close") or len(rest) > (2 if action == "open"
                                                                        else 1):  # fmt: skip
            raise CliError("usage: portal [status | open [<seconds>] | close]")
        if action == "status":
            answer = c.call("GET", "/portal")
        else:
            body = {"seconds": 0} if action == "close" else {}
            if action == "open" and len(rest) == 2:
                if not rest[1].isdigit():
                    raise CliError(f"portal open takes a number of seconds, got "
                                   f"{json.dumps(rest[1])}")  # fmt: skip
                body["seconds"] = int(rest[1])
            answer = c.call("POST", "/portal", body)
        return json_dump(answer) if args.json else portal_lines(answer)
    if command == "leaktest":
        if len(rest) > 1:
            raise CliError("usage: leaktest [<network id>]")
        answer = c.call("POST", "/leaktest" + "".join(f"/{n}" for n in rest), {})
        output = json_dump(answer) if args.json else leaktest_lines(answer)
        if answer["result"] != "PASS":
            raise ChecksFailed(output)
        return output
    if command == "set":
        if len(rest) != 2 or "=" not in rest[1]:
            raise CliError("usage: set <network id> <flag>=<value>, e.g. allowDefault=1")
        key, _, value = rest[1].partition("=")
        network = c.call("POST", f"/network/{rest[0]}", {key: flag_value(key, value)})
        return json_dump(network)  # zerotier-cli prints the network as the node answers it
    if command == "get":
        if len(rest) != 2:
            raise CliError("usage: get <network id> <field>")
        try:
            network = c.call("GET", f"/network/{rest[0]}")
        except ApiAnswer as exc:
            if exc.status == 404:
                raise CliError("unknown network ID, check that you are a member of the "
                               "network") from None  # fmt: skip
            raise
        return get_value(network, rest[1])
    return run_controller(args, client)


def kill_switch(args: argparse.Namespace) -> str:
    """`killswitch [status|off]`, also while no node runs: that is when it matters most (the
    block outlives the node; a node that runs keeps it armed and lifts it on a clean stop)."""
    from .routing import killswitch

    action = _one(args.arguments or ["status"], "killswitch [status|off]")
    if action not in ("status", "off"):
        raise CliError("usage: killswitch [status|off]")
    running = True
    try:
        routes = Client(args.home, args.port, args.token).call("GET", "/routes")
    except CliError:
        running, routes = False, {}
    if running and action == "off":
        raise CliError("the node is running and keeps its kill switch while a fail-closed full "
                       "tunnel is on: lift it with `set <nwid> allowDefault=0`, `leave <nwid>`, "
                       "or stop the node")  # fmt: skip
    if running:
        armed = routes.get("killSwitch", {}).get("armed", False)
        return f"200 killswitch {'ARMED' if armed else 'OFF'}"
    if action == "off":
        try:
            killswitch.lift()
        except killswitch.NftError as exc:
            raise CliError(f"cannot lift the kill switch: {exc} (run as root)") from None
        return "200 killswitch OFF (lifted; no node is running)"
    armed = killswitch.table_exists("inet", killswitch.TABLE_NAME)
    return f"200 killswitch {'ARMED' if armed else 'OFF'} (no node is running)"


def _network_argument(rest: list[str], usage: str) -> str:
    network_id = _one(rest, usage)
    if len(network_id) != 16:
        raise CliError(f"invalid network id {json.dumps(network_id)}: 16 hex digits")
    return network_id


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
        return json_dump(network) if args.json else network["id"]
    if command == "network-route":
        if len(rest) not in (2, 3):
            raise CliError("usage: network-route <network id> <target CIDR> [<via address>]")
        network = c.call("GET", f"/controller/network/{rest[0]}")
        route = {"target": rest[1], **({"via": rest[2]} if len(rest) == 3 else {})}
        routes = [r for r in network["routes"] if r["target"] != rest[1]] + [route]
        network = c.call("POST", f"/controller/network/{rest[0]}", {"routes": routes})
        if args.json:
            return json_dump(network)
        return "\n".join(["200 network-route OK"] + [
            f"{r['target']} via {r['via']}" if r.get("via") else r["target"]
            for r in network["routes"]])  # fmt: skip
    if command == "network-show":
        return json_dump(c.call("GET", f"/controller/network/{_one(rest, 'network-show <id>')}"))
    if command == "members":
        nwid = _one(rest, "members <network id>")
        revisions = c.call("GET", f"/controller/network/{nwid}/member")
        members = [c.call("GET", f"/controller/network/{nwid}/member/{address}")
                   for address in (revisions if isinstance(revisions, dict) else {})]  # fmt: skip
        if args.json:
            return json_dump(members)
        return table(["ADDRESS", "AUTHORIZED", "NAME", "IPS"],
                     [[m.get("address"), m.get("authorized"), m.get("name"),
                       ",".join(m.get("ipAssignments") or [])] for m in members])  # fmt: skip
    if command in ("authorize", "deauthorize"):
        if len(rest) != 2:
            raise CliError(f"usage: {command} <network id> <member address>")
        body = {"authorized": command == "authorize"}
        if args.ip:
            body["ipAssignments"] = args.ip
        member = c.call("POST", f"/controller/network/{rest[0]}/member/{rest[1]}", body)
        return (
            json_dump(member)
            if args.json
            else (f"200 {command} {rest[1]} {','.join(member.get('ipAssignments', [])) or '-'}")
        )
    raise CliError(f"unknown command {json.dumps(command)}; see --help")


def _one(rest: list[str], usage: str) -> str:
    if len(rest) != 1:
        raise CliError(f"usage: {usage}")
    return rest[0]


COMMANDS = """commands (the first ones answer as zerotier-cli does):
  info | status                 address, version, online
  listnetworks                  joined networks
  listpeers | peers             peers (lines | zerotier-cli's table)
  listmoons                     [] (no moons: roots are listed in local.conf)
  join <nwid> | leave <nwid>
  set <nwid> <flag>=<1|0>       allowManaged, allowGlobal, allowDefault, allowDNS, allowLanAccess,
                                fullTunnelQuarters; fullTunnelOnly|fullTunnelExcept=tcp/80,...
  get <nwid> <field>            a field raw (status, allowDefault, fullTunnel, ...), or ip/ip4/ip6
  interfaces                    bound and skipped interfaces, with reasons
  routes                        every managed route and why it is or is not installed
  killswitch [status|off]       the fail-closed block in the kernel; off lifts it while no
                                node runs (after a crash)
  portal [open [<s>]|close]     captive portals seen; open: direct traffic for <s> seconds
                                (default 300) to log in, then the full tunnel comes back
  leaktest [<nwid>]             check the full tunnel for leaks (routes, DNS, the gateway,
                                what leaves the uplinks): PASS/FAIL each, exit 1 on a FAIL
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
        if args.command == "killswitch":  # works without a running node (and its token)
            print(kill_switch(args))
            return 0
        print(run(args, Client(args.home, args.port, args.token)))
    except ChecksFailed as exc:
        print(exc.output)
        return 1
    except ApiAnswer as exc:
        print(f"{exc.status} {args.command} {exc.body}")  # as zerotier-cli prints it
        return 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"error: the node's answer to {args.command} lacks what this command reads "
              f"({type(exc).__name__}: {exc}); -j shows it whole", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
