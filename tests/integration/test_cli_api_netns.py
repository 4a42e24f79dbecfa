"""The local API, the CLI and the service-manager hooks, against real nodes in namespaces."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import Node, api, write_home, write_local_conf
from tests.integration.test_full_tunnel_netns import GW_UPLINK, GW_VIRTUAL, TunnelLab
from tests.testbed import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration


def solo(testbed, tmp_path, settings: dict | None = None, env: dict | None = None):
    host = testbed.host("solo")
    testbed.link(host, "eth0", testbed.host("peer"), "eth0", ["192.0.2.10/24"],
                 ["192.0.2.1/24"])  # fmt: skip
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    write_local_conf(home, {"settings": settings or {}})
    node = Node(host, home, env=env)
    node.wait_log("oneservice started")
    return host, home, node


def test_ready_reload_and_stopping_are_notified_to_the_service_manager(testbed, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    listener.bind(str(path))
    listener.settimeout(15)
    try:
        host, home, node = solo(testbed, tmp_path, env={"NOTIFY_SOCKET": str(path)})
        ready = listener.recv(4096).decode()
        assert ready.startswith("READY=1"), ready
        # READY means the API answers.
        assert api(host, home, "GET", "/status")[0] == 200

        # SIGHUP re-reads local.conf; a broken one changes nothing and the node keeps running.
        (home / "local.conf").write_text('{"settings": {"relay": "yes"}}')
        node.process.send_signal(signal.SIGHUP)
        assert listener.recv(4096) == b"RELOADING=1"
        assert listener.recv(4096) == b"READY=1"
        node.wait_log("keeping the running settings")
        write_local_conf(home, {"settings": {"relay": True}})
        node.process.send_signal(signal.SIGHUP)
        assert [listener.recv(4096), listener.recv(4096)] == [b"RELOADING=1", b"READY=1"]
        node.wait_log("reloaded")

        assert node.stop() == 0
        assert listener.recv(4096) == b"STOPPING=1"
    finally:
        listener.close()


BAD_REQUESTS = [
    ("GET", "/network/xyz", None, 400, "16 lowercase hex"),
    ("GET", "/network/0123456789abcdef", None, 404, "not a member"),
    ("DELETE", "/network/0123456789abcdef", None, 404, "not a member"),
    ("POST", "/network/0123456789abcdef", "[1, 2", 400, "not valid JSON"),
    ("POST", "/network/0123456789abcdef", "[1, 2]", 400, "must be a JSON object"),
    ("POST", "/network/0123456789abcdef", {"allowDefault": "maybe"}, 400, "allowDefault"),
    ("POST", "/network/0123456789abcdef", {"allowEverything": True}, 400, "unknown flag"),
    ("GET", "/peer/0000000000", None, 404, "no peer"),
    ("GET", "/controller/network/0123456789abcdef", None, 404, "not found"),
    ("POST", "/controller/network/0123456789abcdef", {}, 403, "belongs to controller"),
    ("GET", "/nothing/here", None, 404, ""),
]


def test_every_malformed_request_gets_a_4xx_with_a_reason(testbed, tmp_path):
    host, home, node = solo(testbed, tmp_path)
    token = (home / "authtoken.secret").read_text().strip()
    assert api(host, home, "GET", "/status", token="wrong")[0] == 401
    for method, path, body, status, reason in BAD_REQUESTS:
        argv = ["curl", "-s", "-X", method, "-H", f"X-ZT1-Auth: {token}", "-w", "\n%{http_code}"]
        if body is not None:
            argv += ["-d", body if isinstance(body, str) else json.dumps(body)]
        result = host.run(*argv, f"http://127.0.0.1:9993{path}")
        text, _, code = result.stdout.rpartition("\n")
        assert int(code) == status, (method, path, text)
        assert reason in text, (method, path, text)
    address = Identity.parse((home / "identity.public").read_text()).address
    code, network = api(host, home, "POST", f"/controller/network/{address}______",
                        {"name": "x", "mtu": 99})  # fmt: skip
    assert code == 400 and "mtu" in network["error"]
    assert node.process.poll() is None, "nothing a request carries stops the node"


def test_management_from_other_hosts_needs_the_setting(testbed, tmp_path):
    _, home, _ = solo(testbed, tmp_path, settings={"allowManagementFrom": ["192.0.2.0/25"]})
    token = (home / "authtoken.secret").read_text().strip()
    peer = testbed.hosts[-1]
    url = "http://192.0.2.10:9993/status"
    result = peer.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                      f"X-ZT1-Auth: {token}", url)  # fmt: skip
    assert result.stdout == "200", "192.0.2.1 is inside 192.0.2.0/25"
    peer.ip("addr", "add", "192.0.2.200/24", "dev", "eth0")
    result = peer.run("curl", "-s", "--interface", "192.0.2.200", "-o", "/dev/null", "-w",
                      "%{http_code}", "-H", f"X-ZT1-Auth: {token}", url)  # fmt: skip
    assert result.stdout == "403"


def cli(lab: TunnelLab, name: str, *argv: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = lab.hosts[name].run(sys.executable, "-m", "oneservice.cli", f"-D{lab.homes[name]}",
                                 *argv, env=env, check=False)  # fmt: skip
    assert result.returncode == 0, f"oneservice-cli {' '.join(argv)}: {result.stderr}"
    return result.stdout.strip()


def test_full_tunnel_driven_through_the_cli(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    for name in ("ctrl", "gw", "client"):
        lab.start(name)
    address = {name: identity.address for name, identity in lab.identities.items()}
    assert cli(lab, "client", "info").startswith(f"200 info {address['client']} ")
    nwid = cli(lab, "ctrl", "network-create", "exit", "--subnet", "10.147.17.0/24", "--pool",
               "10.147.17.10-10.147.17.99")  # fmt: skip
    cli(lab, "ctrl", "network-route", nwid, "0.0.0.0/0", GW_VIRTUAL)
    assert cli(lab, "gw", "join", nwid).startswith("200 join OK")
    assert cli(lab, "client", "join", nwid).startswith("200 join OK")
    cli(lab, "ctrl", "authorize", nwid, address["gw"], "--ip", GW_VIRTUAL)
    assert cli(lab, "ctrl", "authorize", nwid, address["client"]).endswith("10.147.17.10")
    wait_until(lambda: cli(lab, "client", "get", nwid, "status") == "OK", timeout=15,
               interval=0.3, what="the client configured")  # fmt: skip
    networks = cli(lab, "client", "listnetworks").splitlines()
    assert networks[1].startswith(f"200 listnetworks {nwid} exit - OK PRIVATE onet")

    # As zerotier-cli: set prints the network as the node answers it, get prints raw values.
    assert json.loads(cli(lab, "client", "set", nwid, "allowDefault=1"))["allowDefault"] is True
    assert cli(lab, "client", "get", nwid, "allowDefault") == "1"
    assert cli(lab, "client", "get", nwid, "ip4") == "10.147.17.10"
    wait_until(lambda: cli(lab, "client", "get", nwid, "fullTunnel") == "on", timeout=15,
               interval=0.3, what="full tunnel on")  # fmt: skip
    assert lab.whoami() == GW_UPLINK
    routes = cli(lab, "client", "routes")
    assert "0.0.0.0/0" in routes and "full tunnel via member" in routes
    assert address["gw"] in cli(lab, "client", "peers")
    assert "wifi" in cli(lab, "client", "interfaces")

    assert cli(lab, "client", "leave", nwid) == "200 leave OK"
    wait_until(lambda: lab.our_routes() == "", what="routes gone after leave")
    assert cli(lab, "client", "listnetworks").count("\n") == 0
