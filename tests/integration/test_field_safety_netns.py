"""The full tunnel never breaks or leaks silently: tried as a new user would (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import (
    Node,
    api,
    capture,
    member,
    start_with_descriptors,
    write_home,
    write_local_conf,
)
from tests.integration.test_full_tunnel_netns import (
    CLIENT_WIFI,
    GW_UPLINK,
    SERVER,
    TunnelLab,
    assert_unchanged,
    full_tunnel,
    routing_state,
    stray_packets,
)
from tests.testbed import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration


def second_start(host, home, port: int) -> tuple[int, str]:
    process = host.python("-m", "oneservice", "--home", str(home), "--port", str(port),
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    code = process.wait(timeout=20)
    assert process.stderr is not None
    return code, process.stderr.read()


def test_a_second_start_changes_nothing_and_names_the_running_node(testbed, tmp_path):
    lab, network_id = full_tunnel(testbed, tmp_path)
    other_home = write_home(tmp_path / "other", Identity.generate(), [])
    attempts = [
        ("client", lab.homes["client"], 9993, "with home"),  # the same command run twice
        ("client", other_home, 9994, "manages this network namespace"),  # another home and port
        ("gw", lab.homes["gw"], 9993, "with home"),  # scripts/run-service run twice on the exit
    ]
    for name, home, port, reason in attempts:
        host = lab.hosts[name]
        before = routing_state(host)
        state_file = lab.homes["gw"] / "exit-node.state"
        saved = state_file.read_text()
        code, error = second_start(host, home, port)
        assert code == 1, error
        assert f"PID {lab.nodes[name].process.pid}" in error and reason in error, error
        assert "nothing was changed" in error
        assert_unchanged(before, routing_state(host), f"{name} after a second start")
        assert state_file.read_text() == saved, "the exit node's saved sysctls are kept"
        assert lab.nodes[name].process.poll() is None
    assert not any("left by an earlier run" in line for line in lab.nodes["client"].log)
    assert lab.network("client", network_id)["fullTunnel"] == "on"
    assert lab.whoami() == GW_UPLINK, "traffic still goes through the gateway"


def test_a_member_listed_at_this_nodes_own_address_gets_no_handshakes(testbed, tmp_path):
    """A member of an earlier install of this machine, with its old endpoint hint."""
    host = testbed.host("solo")
    testbed.link(host, "eth0", testbed.host("peer"), "eth0", ["192.0.2.10/24"],
                 ["192.0.2.1/24"])  # fmt: skip
    ours, old_install = Identity.generate(), Identity.generate()
    network = {"id": "8056c2e21c000007", "name": "lab", "members": [
        member(ours, ["10.147.17.1/24"], []),
        member(old_install, ["10.147.17.2/24"], ["192.0.2.10/9993", "192.0.2.10/9994"]),
    ]}  # fmt: skip
    home = write_home(tmp_path / "solo", ours, [network])
    # Sent to its own address, a datagram would loop back (lo) or leave on the pinned uplink.
    captures = {name: (tmp_path / f"{name}.pcap") for name in ("lo", "eth0")}
    tcpdumps = [capture(host, name, path) for name, path in captures.items()]
    node = Node(host, home)
    node.wait_log("oneservice started")
    time.sleep(3)
    for tcpdump in tcpdumps:
        tcpdump.terminate()
        tcpdump.wait(timeout=5)
    for name, path in captures.items():
        to_itself = host.run("tcpdump", "-r", str(path), "-n",
                             "udp and dst host 192.0.2.10").stdout  # fmt: skip
        assert to_itself == "", f"initiations to the node's own address on {name}:\n{to_itself}"
    code, peers = api(host, home, "GET", "/peer")
    assert code == 200
    [stale] = [p for p in peers if p["address"] == old_install.address]
    assert stale["paths"] == []


def test_drop_counters_by_reason_are_visible_while_running(testbed, tmp_path):
    host, peer = testbed.host("solo"), testbed.host("peer")
    testbed.link(host, "eth0", peer, "eth0", ["192.0.2.10/24"], ["192.0.2.1/24"])
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    node = Node(host, home)
    node.wait_log("oneservice started")
    peer.run("python3", "-c", "import socket\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "for _ in range(5): s.sendto(b'ab', ('192.0.2.10', 9993))\n"
             "for _ in range(3): s.sendto(bytes([1, 99, 0, 0]) + bytes(40), ('192.0.2.10', 9993))")

    def counters() -> dict:
        code, status = api(host, home, "GET", "/status")
        assert code == 200
        return status["counters"]

    wait_until(lambda: counters()["datagramsReceived"] >= 8, timeout=5, what="8 datagrams")
    drops = counters()["datagramDrops"]
    assert drops.get("truncated") == 5 and sum(drops.values()) == 8, drops
    assert counters()["datagramsAccepted"] == 0


def _tunnel_changes_after(node, network_id: str, mark: int) -> list[str]:
    """The full tunnel's state changes the client logged after log line ``mark``."""
    prefix = f"network {network_id}: full tunnel "
    return [line.split(prefix)[1] for line in node.log[mark:] if prefix in line]


@pytest.mark.parametrize("how", ["sigkill", "silent"])
def test_a_dead_gateway_withdraws_the_tunnel_once_without_flapping(testbed, tmp_path, how):
    lab, network_id = full_tunnel(testbed, tmp_path)
    client, gw = lab.nodes["client"], lab.hosts["gw"]
    pinger = lab.hosts["client"].spawn("ping", "-i", "0.1", "-W", "1", SERVER,
                                       stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    mark = len(client.log)
    if how == "sigkill":
        lab.nodes["gw"].process.kill()
    else:  # the process runs, but nothing of the tunnel gets in or out (a dead upstream)
        gw.run("nft", "add", "table", "inet", "silence")
        for chain, hook, port in (("in", "input", "dport"), ("out", "output", "sport")):
            gw.run("nft", "add", "chain", "inet", "silence", chain,
                   f"{{ type filter hook {hook} priority -10; policy accept; }}")  # fmt: skip
            gw.run("nft", "add", "rule", "inet", "silence", chain, "udp", port, "9993", "drop")
    killed = time.monotonic()
    wait_until(lambda: _tunnel_changes_after(client, network_id, mark), timeout=5,
               interval=0.02, what="the tunnel withdrawn")  # fmt: skip
    withdrawn_after = time.monotonic() - killed
    time.sleep(6)
    pinger.terminate()
    assert _tunnel_changes_after(client, network_id, mark) == ["withdrawn"], (
        "withdrawn once, then no flapping for 6 s"
    )
    # A loose bound, not a benchmark (0.59-0.79 s measured, docs/PERFORMANCE.md): the old
    # code withdrew in about a second too, then flapped; the single change is the point.
    assert withdrawn_after <= 1.5, f"withdrawn after {withdrawn_after:.2f} s"
    assert lab.network("client", network_id)["fullTunnel"] == "withdrawn"
    if how == "silent":  # it answers again: back on, once
        mark = len(client.log)
        gw.run("nft", "delete", "table", "inet", "silence")
        lab.wait_tunnel(network_id, "on", timeout=10)
        assert _tunnel_changes_after(client, network_id, mark) == ["on"]


def cli(lab, name: str, *argv: str):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return lab.hosts[name].run(sys.executable, "-m", "oneservice.cli", f"-D{lab.homes[name]}",
                               *argv, env=env, check=False)  # fmt: skip


def test_commands_that_would_arm_a_tunnel_by_mistake_say_why_not(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    lab.build_network()
    stranger = "0123456789abcdef"
    result = cli(lab, "client", "set", stranger, "allowDefault=1")
    assert result.returncode == 1
    assert result.stdout.startswith("404 set ") and "join it first" in result.stdout
    assert stranger not in cli(lab, "client", "listnetworks").stdout, "nothing joined"
    assert not (lab.homes["client"] / "networks.d" / f"{stranger}.local.conf").exists()

    plain = lab.create_network("ctrl", {"name": "plain", "routes": [{"target": "10.147.19.0/24"}],
                                        "ipAssignmentPools": [{"ipRangeStart": "10.147.19.10",
                                                               "ipRangeEnd": "10.147.19.20"}]})
    assert cli(lab, "client", "join", plain).stdout.strip() == "200 join OK"
    lab.authorize("ctrl", plain, "client")
    lab.wait_status("client", plain, "OK")
    result = cli(lab, "client", "set", plain, "allowDefault=1")
    assert result.returncode == 0, result.stdout
    network = json.loads(result.stdout)
    assert network["allowDefault"] is True and network["fullTunnel"] == "off"
    assert "routes no default" in network["fullTunnelReason"]


def strict_reverse_path_filtering(host) -> None:
    """RHEL's default: rp_filter=1 everywhere (all, default, every device there is)."""
    for device in ("all", "default", *host.run("ls", "/proc/sys/net/ipv4/conf").stdout.split()):
        host.run("sysctl", "-qw", f"net.ipv4.conf.{device}.rp_filter=1")


def rp_filter(host, device: str) -> str:
    return host.run("sysctl", "-n", f"net.ipv4.conf.{device}.rp_filter").stdout.strip()


def reverse_path_drops(host) -> int:
    line = host.run("nstat", "-az", "TcpExtIPReversePathFilter").stdout.splitlines()[-1]
    return int(line.split()[1])


def test_the_full_tunnel_works_under_strict_reverse_path_filtering(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    client = lab.hosts["client"]
    for name in ("client", "gw"):
        strict_reverse_path_filtering(lab.hosts[name])
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    assert lab.whoami() == GW_UPLINK, "the tunnel carries traffic under rp_filter=1"
    dropped = reverse_path_drops(client)
    assert lab.ping("client", SERVER)
    assert lab.whoami() == GW_UPLINK
    assert reverse_path_drops(client) == dropped, "no datagram failed the reverse-path check"
    assert [rp_filter(client, d) for d in ("all", "wifi", "cell")] == ["1", "2", "2"]
    assert lab.network("client", network_id)["fullTunnelWarning"] == ""

    # A crash leaves the uplinks loosened; the next start takes over and a clean stop (or
    # the tunnel going off) puts strict mode back.
    lab.nodes["client"].process.kill()
    lab.nodes["client"].process.wait(timeout=5)
    assert rp_filter(client, "wifi") == "2"
    lab.start("client")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.whoami() == GW_UPLINK
    lab.set_flags(network_id, allowDefault=False)
    wait_until(lambda: rp_filter(client, "wifi") == "1", timeout=5, what="strict mode back")
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: rp_filter(client, "cell") == "2", timeout=5, what="loosened again")
    assert lab.nodes["client"].stop() == 0
    assert [rp_filter(client, d) for d in ("all", "wifi", "cell")] == ["1", "1", "1"]
    assert not (lab.homes["client"] / "rp-filter.state").exists()


def uplink_bytes(host, device: str) -> int:
    [link] = json.loads(host.ip("-s", "-j", "link", "show", "dev", device).stdout)
    return link["stats64"]["rx"]["bytes"] + link["stats64"]["tx"]["bytes"]


def tunnel_share(lab, traffic) -> dict[str, float]:
    """How the tunnel's bytes split between the client's uplinks while ``traffic`` runs."""
    client = lab.hosts["client"]
    before = {d: uplink_bytes(client, d) for d in ("wifi", "cell")}
    traffic()
    moved = {d: uplink_bytes(client, d) - before[d] for d in before}
    total = sum(moved.values()) or 1
    return {d: moved[d] / total for d in moved}


def test_the_tunnel_rides_the_uplink_the_os_prefers(testbed, tmp_path):
    """wifi's default route has metric 100, cell's 200: the tunnel goes over wifi, whatever
    the round-trip times say, and comes back to it within a second of its return."""
    lab, _ = full_tunnel(testbed, tmp_path)
    client = lab.hosts["client"]

    def pings() -> None:
        client.run("ping", "-q", "-c", "100", "-i", "0.01", "-s", "1000", SERVER, check=False)

    def preferred_interface() -> str:
        _, peers = lab.api("client", "GET", "/peer")
        gateway = next(p for p in peers if p["address"] == lab.identities["gw"].address)
        return next((p["interface"] for p in gateway["paths"] if p["preferred"]), "")

    wait_until(lambda: preferred_interface() == "wifi", timeout=5, what="the tunnel on wifi")
    assert tunnel_share(lab, pings)["wifi"] > 0.9
    _, binder = lab.api("client", "GET", "/binder")
    ranks = {b["interface"]: b["rank"] for b in binder["bound"] if b["family"] == "IPv4"}
    assert ranks == {"wifi": 100, "cell": 200}

    client.ip("link", "set", "wifi", "down")
    wait_until(lambda: preferred_interface() == "cell", timeout=3, what="the tunnel on cell")
    assert lab.whoami() == GW_UPLINK
    client.ip("link", "set", "wifi", "up")
    client.ip("route", "replace", "default", "via", "10.0.1.1", "dev", "wifi", "metric", "100")
    back = time.monotonic()
    wait_until(lambda: preferred_interface() == "wifi", timeout=3, interval=0.05,
               what="back on wifi")  # fmt: skip
    assert time.monotonic() - back < 1.5
    assert tunnel_share(lab, pings)["wifi"] > 0.9

    # The user's word beats the routes: cell preferred from local.conf, applied on SIGHUP.
    root = {"identity": lab.identities["ctrl"].public_text(), "endpoints": ["192.0.2.10/9993"]}
    write_local_conf(lab.homes["client"],
                     {"settings": {"uplinkMetrics": {"cell": 50}}, "roots": [root]})
    lab.nodes["client"].process.send_signal(signal.SIGHUP)
    wait_until(lambda: preferred_interface() == "cell", timeout=3, what="cell by local.conf")
    assert tunnel_share(lab, pings)["cell"] > 0.9


def test_the_kill_switch_outlives_the_process_and_is_lifted_only_when_asked(testbed, tmp_path):
    lab = TunnelLab(testbed, tmp_path)
    client = lab.hosts["client"]
    root = {"identity": lab.identities["ctrl"].public_text(), "endpoints": ["192.0.2.10/9993"]}
    write_local_conf(lab.homes["client"],
                     {"settings": {"fullTunnelFailClosed": True}, "roots": [root]})
    network_id = lab.build_network()
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    assert lab.whoami() == GW_UPLINK
    wait_until(lambda: lab.api("client", "GET", "/routes")[1]["killSwitch"]["armed"],
               timeout=5, what="the kill switch armed")  # fmt: skip
    assert cli(lab, "client", "killswitch").stdout.strip() == "200 killswitch ARMED"
    refused = cli(lab, "client", "killswitch", "off")
    assert refused.returncode == 1 and "the node is running" in refused.stderr

    # SIGKILL: the routes go with the device, the block stays in the kernel.
    lab.nodes["client"].process.kill()
    lab.nodes["client"].process.wait(timeout=5)
    pcaps = {uplink: tmp_path / f"dead-{uplink}.pcap" for uplink in ("wifi", "cell")}
    tcpdumps = [capture(client, uplink, path, outbound=True) for uplink, path in pcaps.items()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # an application keeps trying for 10 s
        assert lab.whoami(timeout=1) is None, "blocked, not leaked"
        client.run("ping", "-c", "1", "-W", "1", SERVER, check=False)
        client.run("ping", "-6", "-c", "1", "-W", "1", "2001:db8:100::10", check=False)
    for tcpdump in tcpdumps:
        tcpdump.terminate()
        tcpdump.wait(timeout=5)
    for uplink, path in pcaps.items():
        assert stray_packets(client, path) == [], f"nothing in the clear on {uplink}"
    status = cli(lab, "client", "killswitch")
    assert status.stdout.strip() == "200 killswitch ARMED (no node is running)"

    # The next start takes it over without a gap, and the tunnel comes back.
    lab.start("client")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.whoami() == GW_UPLINK
    assert "oneservice-killswitch" in client.run("nft", "list", "tables").stdout

    # allowDefault=0 lifts it (the machine's own connection again), =1 arms it again.
    lab.set_flags(network_id, allowDefault=False)
    wait_until(lambda: lab.whoami(timeout=2) == CLIENT_WIFI, timeout=10, what="direct again")
    lab.set_flags(network_id, allowDefault=True)
    lab.wait_tunnel(network_id, "on")
    wait_until(lambda: "oneservice-killswitch" in client.run("nft", "list", "tables").stdout,
               timeout=5, what="armed again")  # fmt: skip

    # After a crash, the user may lift it by hand while no node runs.
    lab.nodes["client"].process.kill()
    lab.nodes["client"].process.wait(timeout=5)
    assert lab.whoami(timeout=2) is None
    lifted = cli(lab, "client", "killswitch", "off")
    assert lifted.returncode == 0 and "lifted" in lifted.stdout, lifted.stderr
    assert lab.whoami() == CLIENT_WIFI, "the machine's own connection, as asked"

    # A clean stop removes it too.
    lab.start("client")
    lab.wait_tunnel(network_id, "on", timeout=20)
    assert lab.nodes["client"].stop() == 0
    assert "oneservice-killswitch" not in client.run("nft", "list", "tables").stdout
    assert lab.whoami() == CLIENT_WIFI


def test_a_download_crosses_a_smaller_mtu_behind_the_gateway_without_icmp(testbed, tmp_path):
    """The server's side of the internet carries 1280 bytes and drops bigger packets without
    a word (a PMTU black hole): the gateway, which knows that path's MTU, clamps the MSS of
    the connections it forwards, so the download still completes."""
    lab, _ = full_tunnel(testbed, tmp_path)
    # The black hole: bigger packets from the server die on the router's side of its link
    # (sent one by one: a segmentation-offloaded burst would pass the veth whole).
    lab.server.run("ethtool", "-K", "eth0", "tso", "off", "gso", "off")
    lab.inet.ip("link", "set", "r-server", "mtu", "1280")
    # What the gateway knows of the path to the server (a PMTU route, as learned or set).
    lab.hosts["gw"].ip("route", "add", "198.51.100.0/24", "via", "203.0.113.1", "mtu", "1280")
    try:
        result = lab.hosts["client"].run("iperf3", "-c", SERVER, "-R", "-n", "1M", "-J",
                                         "--connect-timeout", "3000", check=False,
                                         timeout=30)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the 1 MB download stalled for 30 s: a PMTU black hole")
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
    received = json.loads(result.stdout)["end"]["sum_received"]["bytes"]
    assert received >= 1024 * 1024


def test_a_local_user_holding_a_thousand_connections_starves_nothing(testbed, tmp_path):
    host, peer = testbed.host("solo"), testbed.host("peer")
    testbed.link(host, "eth0", peer, "eth0", ["192.0.2.10/24"], ["192.0.2.1/24"])
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    node = start_with_descriptors(host, home)
    hog = host.python("tests/integration/hold_connections.py", "9993", "1000",
                      stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert hog.stdout is not None and hog.stdout.readline().startswith("holding 1000")
    started = time.monotonic()
    code, _ = api(host, home, "GET", "/status")
    assert code == 200 and time.monotonic() - started < 1.0, "a legitimate request answered"
    testbed.link(host, "eth1", testbed.host("other"), "eth0", ["198.51.100.10/24"],
                 ["198.51.100.1/24"])  # fmt: skip
    appeared = time.monotonic()

    def bound() -> bool:
        _, binder = api(host, home, "GET", "/binder")
        return any(b["interface"] == "eth1" for b in binder["bound"])

    wait_until(bound, timeout=3, interval=0.05, what="the new uplink bound")
    assert time.monotonic() - appeared < 1.0
    assert node.process.poll() is None


def test_a_burst_of_a_thousand_requests_is_all_answered(testbed, tmp_path):
    """A monitoring system and scripts at once: every request waits its turn (in the listen
    backlog) and is answered; none is reset or refused. The node runs with 1024 descriptors."""
    host = testbed.host("solo")
    home = write_home(tmp_path / "solo", Identity.generate(), [])
    node = start_with_descriptors(host, home)
    token = (home / "authtoken.secret").read_text().strip()
    result = host.python("tests/integration/burst_requests.py", "9993", token, "1000",
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    out, _ = result.communicate(timeout=120)
    summary = json.loads(out)
    print(f"\n1000 concurrent GET /status: {summary}")
    assert summary["answered"] == {"200": 1000}, summary
    assert node.process.poll() is None


def test_a_stranger_learns_nothing_about_members_from_a_node_that_knows_them(testbed, tmp_path):
    """The stranger lists the gateway (a member, not a root) as its root and asks who the
    client is, by joining a network whose controller address is the client's. A member meets
    strangers slowly (node/admission.py: one new identity per 5 s), and the client may have
    used that allowance when it met the gateway before its config named it, so the stranger
    may wait up to 5 s for its session."""
    lab = TunnelLab(testbed, tmp_path)
    network_id = lab.build_network()
    stranger = lab.hosts["stranger"] = testbed.host("stranger")
    testbed.link(stranger, "eth0", lab.inet, "r-stranger", ["10.0.3.10/24"], ["10.0.3.1/24"])
    stranger.ip("route", "add", "default", "via", "10.0.3.1")
    identity = lab.identities["stranger"] = Identity.generate()
    lab.homes["stranger"] = write_home(tmp_path / "stranger", identity, [])
    gw_root = {"identity": lab.identities["gw"].public_text(), "endpoints": ["203.0.113.10/9993"]}
    write_local_conf(lab.homes["stranger"], {"roots": [gw_root]})
    lab.start("stranger")
    wanted = lab.identities["client"].address + "000001"
    assert lab.api("stranger", "POST", f"/network/{wanted}", {})[0] == 200

    def refused() -> int:
        _, status = lab.api("gw", "GET", "/status")
        return status["counters"]["packetDrops"].get("whois_refused", 0)

    wait_until(lambda: refused() >= 1, timeout=12, what="the gateway refusing the look-up")
    time.sleep(1)
    _, peers = lab.api("stranger", "GET", "/peer")
    assert lab.identities["client"].address not in {p["address"] for p in peers}
    assert lab.network("client", network_id)["status"] == "OK"


SPOOF = """
import socket, struct, sys
source, destination = sys.argv[1], sys.argv[2]
payload = b"impersonated"
udp = struct.pack("!HHHH", 4000, 9, 8 + len(payload), 0) + payload
header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(source), socket.inet_aton(destination))
total = sum(struct.unpack("!10H", header))
while total >> 16:
    total = (total & 0xFFFF) + (total >> 16)
header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(5):
    raw.sendto(header + udp, (destination, 0))
"""


def test_the_gateway_cannot_send_as_another_address_of_the_network(testbed, tmp_path):
    """The exit node may send from the internet (it is the default's gateway), not from the
    network's own subnet: a packet it forges from 10.147.17.50 never reaches the client."""
    lab, network_id = full_tunnel(testbed, tmp_path)
    client, gw = lab.hosts["client"], lab.hosts["gw"]
    tap = lab.network("client", network_id)["portDeviceName"]
    pcap = tmp_path / "client-tap.pcap"
    tcpdump = capture(client, tap, pcap)
    gw.run("python3", "-c", SPOOF, "10.147.17.50", "10.147.17.10")
    gw.run("python3", "-c", SPOOF, SERVER, "10.147.17.10")  # from the internet: allowed
    time.sleep(0.5)
    tcpdump.terminate()
    tcpdump.wait(timeout=5)
    seen = client.run("tcpdump", "-r", str(pcap), "-n", "udp port 9").stdout
    assert "10.147.17.50" not in seen, f"a forged member address reached the client:\n{seen}"
    assert SERVER in seen, "the capture worked: the gateway's own kind of traffic arrived"
    _, status = lab.api("client", "GET", "/status")
    assert status["counters"]["packetDrops"].get("source_not_allowed", 0) >= 5
