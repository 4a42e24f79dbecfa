"""zerotier-cli's own requests (no Host header, its exact bytes and shapes) against real nodes."""

from __future__ import annotations

import base64
import json

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import Node, api, write_home
from tests.integration.test_full_tunnel_netns import GW_UPLINK, TunnelLab
from tests.testbed import wait_until
from tests.unit.test_httpserver import with_host, zerotier_cli_requests

pytestmark = pytest.mark.integration

CAPTURED_NWID = "8056c2e21c000001"  # the network id in the captured requests
# Fields that change from one answer to the next whatever the request looked like.
VOLATILE = ("clock", "statusDetail")


def raw(host, request: bytes, port: int = 9993) -> tuple[int, object]:
    """One request sent byte for byte from inside the host, as zerotier-cli sends it."""
    result = host.run("python3", "tests/integration/raw_http.py", str(port),
                      base64.b64encode(request).decode())  # fmt: skip
    answer = json.loads(result.stdout)
    return answer["status"], answer["body"]


def steady(document):
    if isinstance(document, dict):
        return {k: steady(v) for k, v in document.items() if k not in VOLATILE}
    if isinstance(document, list):
        return [steady(v) for v in document]
    return document


def zerotier_cli(method: str, path: str, body: bytes | None = None) -> bytes:
    """A request in zerotier-cli's shape: its headers in its order, no Host."""
    lines = [f"{method} {path} HTTP/1.1"]
    if body is not None:
        lines += [f"Content-Length: {len(body)}", "Content-Type: application/json"]
    lines.append("X-ZT1-Auth: secrettoken")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def use_zerotier_cli_token(home) -> None:
    token = home / "authtoken.secret"
    token.write_text("secrettoken")
    token.chmod(0o600)


def test_captured_requests_get_the_answers_they_get_with_a_host_header(testbed, tmp_path):
    host = testbed.host("solo")
    testbed.link(host, "eth0", testbed.host("peer"), "eth0", ["192.0.2.10/24"],
                 ["192.0.2.1/24"])  # fmt: skip
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    use_zerotier_cli_token(home)
    node = Node(host, home)
    node.wait_log("oneservice started")
    # zerotier-cli -D<home> finds the port where it looks for it.
    assert (home / "zerotier-one.port").read_text().strip() == "9993"

    requests = zerotier_cli_requests()
    bare = [raw(host, request) for _, request in requests]
    hosted = [raw(host, with_host(request)) for _, request in requests]
    assert [(s, steady(b)) for s, b in bare] == [(s, steady(b)) for s, b in hosted]
    statuses = dict(zip([name for name, _ in requests], [s for s, _ in bare], strict=True))
    assert statuses == {
        "zerotier-cli info": 200,
        # Flags for a network not joined: refused, nothing joined, nothing armed.
        "zerotier-cli set <nwid> allowDefault=1": 404,
        "zerotier-cli join <nwid>": 200,
        "zerotier-cli leave <nwid>": 200,
        "zerotier-cli listpeers": 200,
    }
    status = bare[0][1]
    assert status["tcpFallbackActive"] is False and status["online"] is False
    assert [status[k] for k in ("versionMajor", "versionMinor", "versionRev")] == [0, 1, 0]
    assert "join it first" in bare[1][1]["error"]
    assert not (home / "networks.d" / f"{CAPTURED_NWID}.conf").exists()

    # Every error is JSON, unknown paths and methods included; moons are an empty list.
    assert raw(host, zerotier_cli("GET", "/moon")) == (200, [])
    code, body = raw(host, zerotier_cli("GET", "/no/such/thing"))
    assert code == 404 and "no such path" in body["error"]
    code, body = raw(host, zerotier_cli("PUT", "/status", b"{}"))
    assert code == 405 and "allowed: GET" in body["error"]
    code, body = raw(host, zerotier_cli("GET", "/status").replace(b"secrettoken", b"guess"))
    assert code == 401 and "token" in body["error"]

    # A join whose controller cannot be reached says so within 5 s, in status and log.
    assert raw(host, zerotier_cli("POST", f"/network/{CAPTURED_NWID}", b"{}"))[0] == 200

    def detail() -> str:
        return raw(host, zerotier_cli("GET", f"/network/{CAPTURED_NWID}"))[1]["statusDetail"]

    wait_until(lambda: "no answer from controller 8056c2e21c" in detail(), timeout=6.5,
               interval=0.25, what="the join's status to explain the wait")  # fmt: skip
    assert "roots" in detail()
    node.wait_log("network 8056c2e21c000001: no answer from controller 8056c2e21c", timeout=2)
    assert node.process.poll() is None


def test_zerotier_cli_drives_join_full_tunnel_get_listpeers_and_leave(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    for name in ("ctrl", "gw", "client"):
        use_zerotier_cli_token(lab.homes[name])
    lab.build_network()  # the gateway is a member; the client joins below
    client = lab.hosts["client"]
    network_id = lab.create_network("ctrl", {
        "name": "exit2", "routes": [{"target": "10.147.18.0/24"},
                                    {"target": "0.0.0.0/0", "via": "10.147.18.1"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.18.10", "ipRangeEnd": "10.147.18.99"}],
    })  # fmt: skip
    code, body = api(lab.hosts["gw"], lab.homes["gw"], "POST", f"/network/{network_id}", {})
    assert code == 200, body
    lab.authorize("ctrl", network_id, "gw", ipAssignments=["10.147.18.1"])

    # zerotier-cli join <nwid>
    code, body = raw(client, zerotier_cli("POST", f"/network/{network_id}", b"{}"))
    assert code == 200 and body["status"] == "REQUESTING_CONFIGURATION"
    lab.authorize("ctrl", network_id, "client")

    # zerotier-cli get <nwid> status reads GET /network and picks the network by id.
    def network() -> dict:
        code, networks = raw(client, zerotier_cli("GET", "/network"))
        assert code == 200
        return next(n for n in networks if n["id"] == network_id)

    wait_until(lambda: network()["status"] == "OK", timeout=15, interval=0.3,
               what="the client configured")  # fmt: skip
    for field in ("nwid", "name", "status", "type", "portDeviceName", "assignedAddresses",
                  "allowDefault", "dns", "bridge", "broadcastEnabled", "portError"):  # fmt: skip
        assert field in network(), field
    assert all({"flags", "metric"} <= set(r) for r in network()["routes"])

    # zerotier-cli set <nwid> allowDefault=1 sends a JSON boolean.
    code, body = raw(client, zerotier_cli("POST", f"/network/{network_id}",
                                          b'{"allowDefault":true}'))  # fmt: skip
    assert code == 200 and body["allowDefault"] is True
    wait_until(lambda: network()["fullTunnel"] == "on", timeout=15, interval=0.3,
               what="full tunnel on")  # fmt: skip
    assert lab.whoami() == GW_UPLINK

    # zerotier-cli listpeers / peers read these without defaults.
    code, peers = raw(client, zerotier_cli("GET", "/peer"))
    assert code == 200
    gateway = next(p for p in peers if p["address"] == lab.identities["gw"].address)
    assert isinstance(gateway["latency"], int) and gateway["tunneled"] is False
    assert gateway["versionMajor"] == -1 and gateway["isBonded"] is False
    [path] = [p for p in gateway["paths"] if p["preferred"]]
    assert isinstance(path["lastSend"], int) and isinstance(path["lastReceive"], int)
    assert {"expired", "localPort", "trustedPathId"} <= set(path)

    # zerotier-cli leave <nwid>: the routes go with the network.
    code, _ = raw(client, zerotier_cli("DELETE", f"/network/{network_id}"))
    assert code == 200
    wait_until(lambda: "10.147.18.1" not in lab.our_routes(), what="routes gone after leave")


def test_a_network_the_controller_does_not_have_is_not_found_at_once(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    for name in ("ctrl", "client"):
        lab.start(name)
    missing = lab.identities["ctrl"].address + "abcdef"
    code, _ = lab.api("client", "POST", f"/network/{missing}", {})
    assert code == 200
    lab.wait_status("client", missing, "NOT_FOUND", timeout=3)
    detail = lab.network("client", missing)["statusDetail"]
    assert detail == f"controller {lab.identities['ctrl'].address} has no network {missing}"
