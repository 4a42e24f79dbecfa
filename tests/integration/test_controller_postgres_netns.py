"""Two controller processes on one PostgreSQL database and one controller identity: either
answers, a change made through one reaches members through both, and with one killed the
members keep getting changes from the other (issue 14, item 4)."""

from __future__ import annotations

import time

import pytest

from oneservice.identity import Identity
from tests.integration.nodes import NodeLab, write_home, write_local_conf
from tests.testbed import Testbed, wait_until

pytestmark = pytest.mark.integration

SITES = {"ctrl1": "192.0.2", "ctrl2": "198.51.100", "member": "203.0.113"}


class Lab(NodeLab):
    """ctrl1 192.0.2.10 and ctrl2 198.51.100.10 share one identity and one database (a Unix
    socket: it crosses network namespaces); the member 203.0.113.10 lists both as the
    controller's endpoints. All behind one router."""

    def __init__(self, bed: Testbed, tmp_path, conninfo: str) -> None:
        super().__init__()
        router = bed.host("router", forwarding=True)
        controller = Identity.generate()
        self.identities = {"ctrl1": controller, "ctrl2": controller,
                           "member": Identity.generate()}  # fmt: skip
        for name, net in SITES.items():
            host = self.hosts[name] = bed.host(name)
            bed.link(host, "eth0", router, f"r-{name}", [f"{net}.10/24"], [f"{net}.1/24"])
            host.ip("route", "add", "default", "via", f"{net}.1")
            home = self.homes[name] = write_home(tmp_path / name, self.identities[name], [])
            if name.startswith("ctrl"):
                write_local_conf(home, {"settings": {"relay": True,
                                                     "controllerDatabase": conninfo}})
            else:
                write_local_conf(home, {"roots": [{
                    "identity": controller.public_text(),
                    "endpoints": ["192.0.2.10/9993", "198.51.100.10/9993"],
                }]})  # fmt: skip
            self.start(name)

    def serving(self) -> str | None:
        """The controller process the member's traffic to the controller goes to now (None:
        no path works at this moment)."""
        code, peer = self.api("member", "GET", f"/peer/{self.identities['ctrl1'].address}")
        assert code == 200, peer
        preferred = [p for p in peer["paths"] if p["preferred"]]
        if not preferred:
            return None
        return "ctrl1" if preferred[0]["address"].startswith("192.0.2.") else "ctrl2"

    def rename_and_wait(self, through: str, network_id: str, name: str) -> float:
        """Rename the network through one controller; how long until the member has it."""
        started = time.monotonic()
        code, body = self.api(through, "POST", f"/controller/network/{network_id}",
                              {"name": name})  # fmt: skip
        assert code == 200, body

        def arrived() -> bool:
            code, network = self.api("member", "GET", f"/network/{network_id}")
            return code == 200 and network["name"] == name and network["status"] == "OK"

        wait_until(arrived, timeout=10, interval=0.05, what=f"the member to see {name!r}")
        return time.monotonic() - started


def test_two_controllers_on_one_database_and_one_killed(testbed, tmp_path, postgres):
    lab = Lab(testbed, tmp_path, postgres)
    _, status = lab.api("ctrl1", "GET", "/status")
    assert status["config"]["settings"]["controllerStore"].startswith("PostgreSQL (host /")
    network_id = lab.create_network("ctrl1", {
        "name": "lab", "routes": [{"target": "10.147.17.0/24"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.200"}],
    })  # fmt: skip
    # Either answers for the other: the network made through ctrl1, authorized through ctrl2.
    lab.authorize("ctrl2", network_id, "member")
    assert lab.api("member", "POST", f"/network/{network_id}", {})[0] == 200
    lab.wait_status("member", network_id, "OK")

    serving = wait_until(lab.serving, timeout=5, interval=0.05, what="a path to the controller")
    standby = "ctrl2" if serving == "ctrl1" else "ctrl1"
    took = lab.rename_and_wait(standby, network_id, "changed through the standby")
    print(f"change through {standby} (member on {serving}): at the member after {took:.2f} s")
    assert took <= 2.0

    lab.nodes[serving].process.kill()  # no goodbye: as a crash or a pulled cable
    lab.nodes[serving].process.wait(timeout=5)
    took = lab.rename_and_wait(standby, network_id, "after the other died")
    print(f"{serving} killed; change through {standby}: at the member after {took:.2f} s")
    assert took <= 2.0
    # Its own traffic to the controller follows, whichever session it sent on: at once when
    # the survivor's handshake reaches it, else once its idle probe (every 20 s) finds the
    # dead path and a new handshake the survivor.
    wait_until(lambda: lab.serving() == standby, timeout=30, interval=0.1,
               what="the member's traffic to the controller to move to the survivor")
    _, peer = lab.api("member", "GET", f"/peer/{lab.identities['ctrl1'].address}")
    assert peer["state"] in ("connected", "rekeying"), peer
    _, network = lab.api("member", "GET", f"/network/{network_id}")
    assert network["rejectedConfigs"] == 0
