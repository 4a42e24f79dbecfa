"""Members behind real Linux NAT routers, in namespaces.

    m1 10.0.1.10 --+
                   nat1 (LAN 10.0.1.1, WAN 198.51.100.10) --+
    m3 10.0.1.11 --+   (m3: only when asked for)            inet -- ctrl 192.0.2.10
    m2 10.0.2.10 -- nat2 (LAN 10.0.2.1, WAN 203.0.113.10) --+       (root, controller)
                     (or WAN 192.0.3.10 running miniupnpd: port_mapping)   |
                                                                            +- root2 192.0.2.130
                                                   (second_root: there, or 10.0.1.20 on nat1's LAN)

Each NAT router masquerades its LAN behind its WAN address (conntrack: one mapping per
inside address and port, kept for every destination, as home routers do) and drops anything
unsolicited from the WAN, as OpenWrt's default firewall does (port forwards, which a router's
port mapping makes, pass). A router can be readdressed as a
PPPoE redial does it: a new public address, the old one's conntrack entries gone. The private
LANs are not routed on the internet side.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

from oneservice.identity import Identity
from tests.integration.nodes import NodeLab, write_home, write_local_conf
from tests.testbed import Host, Testbed, wait_until

ROUTER_RULES = """
table ip nat_lab {{
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;{port_block}
    oifname "wan" masquerade{options}
  }}
}}
table inet wan_filter {{
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct status dnat accept
    iifname "lan" accept
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state new drop
  }}
}}
"""
M2_VIRTUAL = "10.147.17.1"
# miniupnpd maps nothing on a WAN address of a reserved block (documentation ones included),
# so a router that maps has this one: it exists only inside the lab (the egress guards admit
# it, tests/testbed.py), nothing here routes it anywhere else.
MAPPING_WAN = "192.0.3"
# The tables and chains miniupnpd's nftables backend writes its mappings into; and the
# router's SSDP announcements (multicast) kept in the router, before its egress guard: nodes
# ask their gateway itself.
MINIUPNPD_TABLES = """
table inet filter {
  chain output {
    type filter hook output priority -350; policy accept;
    ip daddr 239.255.255.250 udp dport 1900 drop
  }
  chain miniupnpd {
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
}
"""
MINIUPNPD_CONF = """ext_ifname=wan
listening_ip=lan
port=0
enable_natpmp={natpmp}
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3e7a5c8e-1d4b-4f7e-9c1a-0123456789ab
allow 1024-65535 10.0.2.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def router_rules(hard: bool = False, port_block: str = "") -> str:
    """A NAT router's nft rules: masquerade (``hard``: a new random port per destination)
    and the WAN filter. With ``port_block`` ("first-last") UDP gets a port from that block:
    per destination if hard, else one for every destination, as the first one got (conntrack
    reuses a source's mapping): a NAT that maps one port for all, but not the member's own."""
    options = " random,fully-random" if hard else ""
    block = (f'\n    oifname "wan" meta l4proto udp masquerade to :{port_block}{options}'
             if port_block else "")  # fmt: skip
    return ROUTER_RULES.format(options=options, port_block=block)


FLUSH_CONNTRACK = "from pyroute2 import Conntrack; Conntrack().flush()"


class NatLab(NodeLab):
    def __init__(self, bed: Testbed, tmp_path, hard: tuple[str, ...] = (),
                 with_m3: bool = False, exit_node: bool = False,
                 port_mapping: str = "", settings: dict | None = None,
                 port_block: str = "", cone_block: str = "",
                 second_root: str = "") -> None:  # fmt: skip
        """``hard``: the routers that map each destination to a new port (random,
        fully-random), as carrier-grade NATs do, from ``port_block`` ("first-last") for UDP
        if given (a carrier's block of ports per subscriber), else from all; ``cone_block``:
        the other routers map a member's port to one port from this block for every
        destination (not the member's own port); ``second_root``: a second root (a relay),
        root2, on the internet ("internet": 192.0.2.130, the members' second root) or on
        nat1's LAN ("lan": 10.0.1.20, a second root of the members there); ``with_m3``: a
        second member on nat1's LAN; ``exit_node``: m2 forwards for the network
        (allowExitNode); ``port_mapping``: nat2 runs Debian's miniupnpd, answering "pcp" (PCP
        and NAT-PMP, and UPnP) or "upnp" only;
        ``settings``: more local.conf settings per member."""
        super().__init__()
        self.bed = bed
        self.inet = bed.host("inet", forwarding=True)
        self.routers: dict[str, Host] = {}
        self.wan: dict[str, str] = {}  # router -> its public address now
        self.members = ("m1", "m2", "m3") if with_m3 else ("m1", "m2")
        self.roots = ("ctrl", "root2") if second_root else ("ctrl",)
        self.identities = {name: Identity.generate() for name in (*self.roots, *self.members)}
        ctrl = self.hosts["ctrl"] = bed.host("ctrl")
        bed.link(ctrl, "eth0", self.inet, "i-ctrl", ["192.0.2.10/24"], ["192.0.2.1/24"])
        ctrl.ip("route", "add", "default", "via", "192.0.2.1")
        if second_root == "internet":  # (a /25 of its own: more specific than ctrl's /24)
            root2 = self.hosts["root2"] = bed.host("root2")
            bed.link(root2, "eth0", self.inet, "i-root2", ["192.0.2.130/25"],
                     ["192.0.2.129/25"])  # fmt: skip
            root2.ip("route", "add", "default", "via", "192.0.2.129")
        nat2_public = MAPPING_WAN if port_mapping else "203.0.113"
        for n, (router, public) in enumerate((("nat1", "198.51.100"), ("nat2", nat2_public)), 1):
            nat = self.routers[router] = bed.host(router, forwarding=True)
            bed.link(nat, "wan", self.inet, f"i-{router}", [f"{public}.10/24"], [f"{public}.1/24"])
            nat.ip("route", "add", "default", "via", f"{public}.1")
            self.wan[router] = f"{public}.10"
            nat.ip("link", "add", "lan", "type", "bridge")
            nat.ip("addr", "add", f"10.0.{n}.1/24", "dev", "lan")
            nat.ip("link", "set", "lan", "up")
            on_lan = [(f"m{n}", f"10.0.{n}.10")]
            if n == 1 and with_m3:
                on_lan.append(("m3", "10.0.1.11"))
            if n == 1 and second_root == "lan":
                on_lan.append(("root2", "10.0.1.20"))
            for name, address in on_lan:
                member = self.hosts[name] = bed.host(name)
                bed.link(member, "eth0", nat, f"lan-{name}", [f"{address}/24"])
                nat.ip("link", "set", f"lan-{name}", "master", "lan")
                member.ip("route", "add", "default", "via", f"10.0.{n}.1")
            block = port_block if router in hard else cone_block
            nat.run("nft", "-f", "-", input=router_rules(router in hard, block))
        if port_mapping:
            self.miniupnpd = start_miniupnpd(self.routers["nat2"], tmp_path,
                                             natpmp=port_mapping == "pcp")  # fmt: skip
        root_endpoints = {"ctrl": "192.0.2.10/9993", "root2": "192.0.2.130/9993"
                          if second_root == "internet" else "10.0.1.20/9993"}  # fmt: skip
        on_nat2 = ("m2",)
        for name in (*self.roots, *self.members):
            home = self.homes[name] = write_home(tmp_path / name, self.identities[name], [])
            if name in self.roots:
                write_local_conf(home, {"settings": {"relay": True}})
            else:
                write_local_conf(home, {
                    "settings": {"allowExitNode": exit_node and name == "m2",
                                 **(settings or {}).get(name, {})},
                    "roots": [{"identity": self.identities[root].public_text(),
                               "endpoints": [root_endpoints[root]]} for root in self.roots
                              if not (root == "root2" and second_root == "lan"
                                      and name in on_nat2)],
                })  # fmt: skip
            self.start(name)

    def serve_whoami(self) -> None:
        """A server on the internet side (192.0.2.1:8080) that answers with the address it
        sees: whoami() asks it."""
        self.inet.python("tests/integration/whoami_server.py", "8080", stdout=subprocess.DEVNULL)

    def whoami(self, name: str = "m1") -> str | None:
        """Where the internet sees ``name`` (serve_whoami); None if the server is not reached."""
        result = self.hosts[name].run("curl", "-s", "-m", "3", "http://192.0.2.1:8080/",
                                      check=False, timeout=10)  # fmt: skip
        return result.stdout if result.returncode == 0 else None

    def readdress(self, router: str, new_public: str) -> None:
        """A redial: the WAN address changes and the router forgets every mapping."""
        nat, old = self.routers[router], self.wan[router]
        nat.ip("addr", "del", f"{old}/24", "dev", "wan")
        nat.ip("addr", "add", f"{new_public}/24", "dev", "wan")
        nat.ip("route", "replace", "default", "via", new_public.rsplit(".", 1)[0] + ".1")
        nat.python("-c", FLUSH_CONNTRACK).wait(timeout=10)
        self.wan[router] = new_public

    def join_both(self, default_via_m2: bool = False) -> tuple[str, dict[str, str]]:
        """The members in a new network, authorized: its id and each member's address in
        it. ``default_via_m2``: the network routes 0.0.0.0/0 via m2 (10.147.17.1)."""
        routes = [{"target": "10.147.17.0/24"}]
        if default_via_m2:
            routes.append({"target": "0.0.0.0/0", "via": M2_VIRTUAL})
        network_id = self.create_network("ctrl", {
            "name": "nat", "routes": routes,
            "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10",
                                   "ipRangeEnd": "10.147.17.200"}],
        })  # fmt: skip
        for name in self.members:
            self.api(name, "POST", f"/network/{network_id}", {})
            fixed = {"ipAssignments": [M2_VIRTUAL]} if name == "m2" and default_via_m2 else {}
            self.authorize("ctrl", network_id, name, **fixed)
        addresses = {}
        for name in self.members:
            self.wait_status(name, network_id, "OK", timeout=30)
            _, network = self.api(name, "GET", f"/network/{network_id}")
            addresses[name] = network["assignedAddresses"][0].split("/")[0]
        return network_id, addresses

    def preferred(self, name: str, other: str) -> dict:
        """The path ``name`` sends to ``other`` on now ({} if none)."""
        address = self.identities[other].address
        paths = (self.api(name, "GET", f"/peer/{address}")[1] or {}).get("paths", [])
        return next((p for p in paths if p.get("preferred")), {})

    def direct(self, name: str, other: str) -> bool:
        path = self.preferred(name, other)
        roots = tuple(self.identities[root].address for root in self.roots)
        return bool(path) and not path["address"].startswith(roots)

    def wait_direct(self, timeout: float, m1_public: str = "") -> float:
        """Seconds until both members send to each other directly (m2 to ``m1_public``, if
        given: where m1's router is now)."""
        started = time.monotonic()

        def direct() -> bool:
            to_m1 = self.preferred("m2", "m1").get("address", "")
            return (self.direct("m1", "m2") and self.direct("m2", "m1")
                    and to_m1.startswith(m1_public))  # fmt: skip

        wait_until(direct, timeout, interval=0.1, what="m1 and m2 direct")
        return time.monotonic() - started


def start_miniupnpd(router: Host, tmp_path, natpmp: bool) -> Path:
    """Debian's miniupnpd on ``router``, in the foreground (the testbed ends it by its PID),
    once it listens; its log is the returned file."""
    router.run("nft", "-f", "-", input=MINIUPNPD_TABLES)
    conf, log = tmp_path / "miniupnpd.conf", tmp_path / "miniupnpd.log"
    conf.write_text(MINIUPNPD_CONF.format(natpmp="yes" if natpmp else "no"))
    with open(log, "w") as stream:
        router.spawn("miniupnpd", "-d", "-f", str(conf), "-P", str(tmp_path / "miniupnpd.pid"),
                     stdout=stream, stderr=subprocess.STDOUT)  # fmt: skip
    wait_until(lambda: "HTTP listening on port" in log.read_text(), timeout=10,
               what="miniupnpd listening")
    return log


class Pinger:
    """A ping every 50 ms from one host, with the time of each reply: the longest silence."""

    def __init__(self, host: Host, target: str) -> None:
        self.process = host.spawn("ping", "-D", "-n", "-i", "0.05", "-W", "1", target,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.replies: list[float] = []

    def stop(self) -> list[float]:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        for line in out.splitlines():
            if line.startswith("[") and "bytes from" in line:
                self.replies.append(float(line[1:line.index("]")]))
        return self.replies


def longest_silence(replies: list[float], since: float) -> float:
    """The longest time without a reply after ``since`` (wall clock)."""
    after = [t for t in replies if t >= since - 1.0]
    gaps = [b - a for a, b in itertools.pairwise(after)]
    return max(gaps, default=float("inf"))

