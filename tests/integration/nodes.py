"""Real `python -m oneservice` nodes in test namespaces, with homes the test writes."""

from __future__ import annotations

import json
import resource
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

from oneservice.identity import Identity
from tests.testbed import Host, wait_until

NETWORK_ID = "8056c2e21c000001"


def write_home(home: Path, identity: Identity, networks: list[dict]) -> Path:
    (home / "networks.d").mkdir(parents=True, exist_ok=True)
    secret = home / "identity.secret"
    secret.write_text(identity.secret_text() + "\n")
    secret.chmod(0o600)
    for network in networks:
        (home / "networks.d" / f"{network['id']}.json").write_text(json.dumps(network))
    return home


def member(identity: Identity, addresses: list[str], endpoints: list[str]) -> dict:
    return {"identity": identity.public_text(), "addresses": addresses, "endpoints": endpoints}


class Node:
    """A running node; ``log`` fills with its stderr lines."""

    # Nodes of the test now running: their logs are attached to its report if it fails.
    started: ClassVar[list[Node]] = []

    def __init__(self, host: Host, home: Path, port: int = 9993, env: dict | None = None) -> None:
        Node.started.append(self)
        self.host = host
        self.home = home
        self.process = host.python(
            "-m", "oneservice", "--home", str(home), "--port", str(port),
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.log: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))

    def wait_log(self, text: str, timeout: float = 15.0) -> str:
        def found():
            if self.process.poll() is not None and not any(text in line for line in self.log):
                raise AssertionError(
                    f"node exited {self.process.returncode} before logging {text!r}:\n"
                    + "\n".join(self.log)
                )
            return next((line for line in self.log if text in line), None)

        return wait_until(found, timeout, interval=0.05, what=f"{text!r} in the node's log")

    def stop(self) -> int:
        from tests.testbed import stop_process

        code = stop_process(self.process)
        wait_until(lambda: any("oneservice stopped" in l for l in self.log) or code != 0,  # noqa: E741
                   timeout=5, what="the stop message")  # fmt: skip
        return code


def start_with_descriptors(host: Host, home: Path, limit: int = 1024) -> Node:
    """A node run with ``limit`` file descriptors, the common default for a service (children
    inherit the limit), started."""
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limits[1]))
    try:
        node = Node(host, home)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    node.wait_log("oneservice started")
    return node


def write_local_conf(home: Path, document: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "local.conf").write_text(json.dumps(document))


def api(host: Host, home: Path, method: str, path: str, body: dict | None = None,
        token: str | None = None, port: int = 9993) -> tuple[int, object]:  # fmt: skip
    """Call a node's local API from inside its namespace with curl; (status, JSON body)."""
    if token is None:
        token = (home / "authtoken.secret").read_text().strip()
    argv = ["curl", "-s", "-X", method, "-H", f"X-ZT1-Auth: {token}", "-w", "\n%{http_code}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    result = host.run(*argv, f"http://127.0.0.1:{port}{path}")
    text, _, status = result.stdout.rpartition("\n")
    try:
        payload = json.loads(text) if text else None
    except json.JSONDecodeError:
        payload = text
    return int(status), payload


def capture(host: Host, interface: str, path, outbound: bool = False) -> subprocess.Popen:
    """tcpdump into ``path`` (only what the host sends, with ``outbound``); ready on return."""
    direction = ["-Q", "out"] if outbound else []
    # --immediate-mode: without it libpcap hands packets over in blocks (up to 1 s late), and
    # a capture stopped sooner than that writes nothing, which would make "nothing leaked"
    # pass vacuously.
    process = host.spawn("tcpdump", "-i", interface, *direction, "--immediate-mode", "-U", "-n",
                         "-w", str(path), stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert process.stderr is not None
    assert "listening on" in process.stderr.readline()
    return process


class NodeLab:
    """Named hosts with a node each; subclasses build the topology and fill ``hosts``,
    ``homes`` and ``identities``."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.homes: dict[str, Path] = {}
        self.identities: dict[str, Identity] = {}
        self.nodes: dict[str, Node] = {}

    def start(self, name: str, env: dict | None = None) -> Node:
        node = self.nodes[name] = Node(self.hosts[name], self.homes[name], env=env)
        node.wait_log("oneservice started")
        return node

    def api(self, name: str, method: str, path: str, body: dict | None = None):
        return api(self.hosts[name], self.homes[name], method, path, body)

    def status(self, name: str, network_id: str) -> str:
        code, body = self.api(name, "GET", f"/network/{network_id}")
        return body["status"] if code == 200 else f"HTTP {code}"

    def wait_status(self, name: str, network_id: str, wanted: str, timeout: float = 15) -> None:
        wait_until(lambda: self.status(name, network_id) == wanted, timeout,
                   interval=0.2, what=f"{name} to reach {wanted}")  # fmt: skip

    def ping(self, name: str, target: str) -> bool:
        result = self.hosts[name].run("ping", "-c", "2", "-i", "0.2", "-W", "1", target,
                                      check=False)  # fmt: skip
        return result.returncode == 0

    def create_network(self, controller: str, settings: dict) -> str:
        address = self.identities[controller].address
        code, network = self.api(controller, "POST", f"/controller/network/{address}______",
                                 settings)  # fmt: skip
        assert code == 200, network
        return network["id"]

    def authorize(self, controller: str, network_id: str, name: str, **fields) -> None:
        address = self.identities[name].address
        code, body = self.api(controller, "POST",
                              f"/controller/network/{network_id}/member/{address}",
                              {"authorized": True, **fields})  # fmt: skip
        assert code == 200, body
