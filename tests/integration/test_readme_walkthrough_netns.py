"""README.md's "Your first full tunnel", run as written (issue 30): its command blocks are
taken from the README and run, each on the machine it names, and what each prints is checked
against the output shown under it. A change that breaks the walkthrough breaks this test.

    server 198.51.100.10 (HTTP "whoami")
        |
      inet (router) ---- controller 192.0.2.10
        |   \\---------- exit 203.0.113.10
        |
      home router (WAN 10.0.9.10, masquerading) -- laptop 10.0.1.10

Each machine runs the README's commands as root in this checkout, with its own
``/var/lib/oneservice`` (a directory of the test bound over it in the machine's mount
namespace), so the default home and every path in the README are used as they are.

How the README marks its blocks: ``<!-- walkthrough <machines> [start|until] -->`` before
a ``sh`` block; an optional ``text`` block right after it is what the commands print. In that
text, ``...`` alone on a line stands for any lines, ``...`` within a line for anything, and
``<words>`` for a value: the first time it is printed it is learnt, and later commands get it
in place of the placeholder (as a reader copies it). ``start`` runs the block in the
background, its last command being the node (exec'd: its PID is the node's), until the
node's log shows the block's text, or the README's last such text; ``until`` runs the block
again until it prints its text, as a reader would wait. ``every-terminal`` blocks run first
in every shell.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.natlab import router_rules
from tests.testbed import REPO_ROOT, Host, Testbed, run

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
HOME = Path("/var/lib/oneservice")  # the README's (and the node's default) home
SERVER, EXIT_UPLINK, CONTROLLER = "198.51.100.10", "203.0.113.10", "192.0.2.10"
RESOLVER = "198.51.100.53"  # the laptop's resolver: on the internet, reached through the tunnel
GIVEN = {"controller ip": CONTROLLER}  # what the reader brings
START_TIMEOUT_S = 60.0
UNTIL_TIMEOUT_S = 30.0
MARK = re.compile(r"<!-- walkthrough ([\w -]+) -->\n```sh\n(.*?)```\n(?:```text\n(.*?)```\n)?",
                  re.S)  # fmt: skip
MACHINES = ("controller", "exit", "laptop", "every-terminal")
FLAGS = ("start", "until")
PLACEHOLDER = re.compile(r"<([a-z][a-z' ]*)>")


@dataclass
class Step:
    machines: tuple[str, ...]
    flags: tuple[str, ...]
    commands: str
    prints: str | None


def walkthrough_steps(text: str) -> list[Step]:
    steps = []
    for found in MARK.finditer(text):
        words = found[1].split()
        unknown = [w for w in words if w not in MACHINES + FLAGS]
        assert not unknown, f"README: unknown words in a walkthrough mark: {unknown}"
        steps.append(Step(tuple(w for w in words if w in MACHINES),
                          tuple(w for w in words if w in FLAGS), found[2], found[3]))
    return steps


def output_pattern(prints: str, known: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A regular expression for a text block, and which of its groups learn which
    placeholder."""
    learnt: dict[str, str] = {}
    parts = []
    for line in prints.splitlines():
        if line == "...":
            parts.append(r"(?:.*\n)*?")
            continue
        regex, position = "", 0
        for found in PLACEHOLDER.finditer(line):
            regex += re.escape(line[position:found.start()]).replace(r"\.\.\.", ".*")
            name = found[1]
            if name in known:
                regex += re.escape(known[name])
            elif name in learnt.values():
                regex += f"(?P={next(g for g, n in learnt.items() if n == name)})"
            else:
                group = f"g{len(learnt)}"
                learnt[group] = name
                regex += rf"(?P<{group}>[^\s,;]+)"
            position = found.end()
        regex += re.escape(line[position:]).replace(r"\.\.\.", ".*")
        parts.append(regex + r"\n")
    return "".join(parts), learnt


def fill(commands: str, known: dict[str, str]) -> str:
    def value(found: re.Match) -> str:
        if found[1] not in known:
            raise AssertionError(f"the walkthrough uses <{found[1]}> before printing it")
        return known[found[1]]

    return PLACEHOLDER.sub(value, commands)


def in_machine(host: Host, home: Path, script: str) -> list[str]:
    """``script`` as root in this checkout on ``host``, with ``home`` as its
    /var/lib/oneservice (a mount of this command's own namespace: the real one is not
    touched)."""
    inner = f"mount --bind {shlex.quote(str(home))} {HOME} && cd {shlex.quote(str(REPO_ROOT))}"
    return host.argv("bash", "-c", f'{inner} && exec bash -eo pipefail -c "$1"', "-", script)


class Walkthrough:
    def __init__(self, bed: Testbed, tmp_path: Path) -> None:
        self.bed, self.tmp_path = bed, tmp_path
        inet = bed.host("inet", forwarding=True)
        server = bed.host("server")
        bed.link(server, "eth0", inet, "r-server", [f"{SERVER}/24"], ["198.51.100.1/24"])
        server.ip("route", "add", "default", "via", "198.51.100.1")
        server.python("tests/integration/whoami_server.py", "8080", stdout=subprocess.PIPE)
        self.machines: dict[str, Host] = {}
        for name, address in (("controller", CONTROLLER), ("exit", EXIT_UPLINK)):
            host = self.machines[name] = bed.host(name)
            net = address.rsplit(".", 1)[0]
            bed.link(host, "eth0", inet, f"r-{name}", [f"{address}/24"], [f"{net}.1/24"])
            host.ip("route", "add", "default", "via", f"{net}.1")
        home_router = bed.host("home", forwarding=True)
        bed.link(home_router, "wan", inet, "r-home", ["10.0.9.10/24"], ["10.0.9.1/24"])
        home_router.ip("route", "add", "default", "via", "10.0.9.1")
        home_router.run("nft", "-f", "-", input=router_rules())
        laptop = self.machines["laptop"] = bed.host("laptop")
        bed.link(laptop, "wifi", home_router, "lan", ["10.0.1.10/24"], ["10.0.1.1/24"])
        laptop.ip("route", "add", "default", "via", "10.0.1.1")
        self.homes = {name: tmp_path / name for name in self.machines}
        for home in self.homes.values():
            home.mkdir(mode=0o700)
        self.logs: dict[str, Path] = {}
        self.nodes: list[subprocess.Popen] = []

    def start(self, machine: str, script: str, prints: str, known: dict[str, str]) -> None:
        """The node, left running (the testbed ends it by its PID: every exec keeps it)."""
        log = self.logs[machine] = self.tmp_path / f"{machine}.log"
        with open(log, "w") as stream:
            argv = in_machine(self.machines[machine], self.homes[machine], script)
            process = subprocess.Popen(argv, stdout=stream, stderr=stream)
            self.bed.processes.append(process)
        self.nodes.append(process)
        pattern, learnt = output_pattern(prints, known)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            found = re.search(pattern, log.read_text())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{machine}: `{script.strip()}` did not print what the "
                                     f"README shows:\n{log.read_text()}")  # fmt: skip
            time.sleep(0.1)
        known.update({learnt[g]: found[g] for g in learnt})

    def run(self, machine: str, script: str, prints: str | None, known: dict[str, str],
            until: bool) -> None:  # fmt: skip
        argv = in_machine(self.machines[machine], self.homes[machine], script)
        deadline = time.monotonic() + UNTIL_TIMEOUT_S
        while True:
            result = run(argv, check=False, timeout=60)
            found = None
            if result.returncode == 0 and prints is not None:
                pattern, learnt = output_pattern(prints, known)
                found = re.fullmatch(pattern, result.stdout)
            done = result.returncode == 0 and (prints is None or found is not None)
            if done or not until or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert done, (f"{machine}: `{script.strip()}` exited {result.returncode} and printed "
                      f"(the README shows {prints!r}):\n{result.stdout}{result.stderr}")
        if found is not None:
            known.update({learnt[g]: found[g] for g in learnt})


@contextlib.contextmanager
def shared_paths(laptop: Host):
    """The mount point of the homes, and the laptop's resolv.conf (``ip netns exec`` binds
    /etc/netns/<namespace>/resolv.conf over /etc/resolv.conf): made for the test, removed
    after it."""
    made_home = not HOME.exists()
    HOME.mkdir(parents=True, exist_ok=True)
    netns_etc = Path("/etc/netns") / laptop.namespace
    netns_etc.mkdir(parents=True)
    (netns_etc / "resolv.conf").write_text(f"nameserver {RESOLVER}\n")
    try:
        yield
    finally:
        (netns_etc / "resolv.conf").unlink()
        netns_etc.rmdir()
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # (only if nothing else is in it)
        if made_home:
            HOME.rmdir()


def test_the_readme_walkthrough_gives_the_laptop_a_full_tunnel_through_the_exit_node(
        testbed, tmp_path):  # fmt: skip
    steps = walkthrough_steps(README.read_text())
    assert {m for s in steps for m in s.machines} == set(MACHINES), steps
    started = [m for s in steps if "start" in s.flags for m in s.machines]
    assert sorted(started) == ["controller", "exit", "laptop"], "each machine starts its node"
    # The README's first command sets the project up: done here outside the namespaces, where
    # pip may reach its index (a no-op when it is current, as in CI after scripts/run-tests).
    run([str(REPO_ROOT / "scripts" / "run-service"), "--version"], timeout=900)
    lab = Walkthrough(testbed, tmp_path)
    every_terminal = "".join(s.commands for s in steps if "every-terminal" in s.machines)
    known = dict(GIVEN)
    started = ""
    with shared_paths(lab.machines["laptop"]):
        for step in steps:
            script = fill(step.commands, known)
            for machine in step.machines:
                if machine == "every-terminal":
                    continue
                if "start" in step.flags:
                    started = step.prints or started  # shown once for all the nodes
                    *setup, node = script.rstrip("\n").split("\n")
                    lab.start(machine, "\n".join([*setup, f"exec {node}"]), started, known)
                else:
                    lab.run(machine, every_terminal + script, step.prints, known,
                            until="until" in step.flags)  # fmt: skip
        # The walkthrough's promise, checked from outside it: the laptop's traffic leaves
        # from the exit node, and the leak test named that address.
        laptop = lab.machines["laptop"]
        result = laptop.run("curl", "-s", "-m", "3", f"http://{SERVER}:8080/", timeout=10)
        assert result.stdout == EXIT_UPLINK, result.stdout
        assert known["exit node's public address"] == EXIT_UPLINK, known
        # Every node is still running (a walkthrough that crashed one would not be a pass).
        for process in lab.nodes:
            assert process.poll() is None, "a node ended during the walkthrough"
