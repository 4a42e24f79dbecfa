"""Test-side handle for binder_driver.py running in a namespace."""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from pathlib import Path

from tests.testbed import Host, wait_until

DRIVER = Path(__file__).with_name("binder_driver.py")


class BinderDriver:
    def __init__(self, host: Host, *args: str) -> None:
        self.host = host
        self.process = host.python(
            str(DRIVER), *args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pid = self.process.pid
        self.replies: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.datagrams: list[dict] = []
        self.first_line: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()
        first = self.first_line.get(timeout=20)
        if "ready" not in first:
            raise AssertionError(f"binder driver did not start: {first}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        started = False
        for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message or "error" in message:
                started = True
                self.first_line.put(message)
            elif "id" in message:
                self.replies.put(message)
            elif "datagram" in message:
                self.datagrams.append(message)
            else:
                self.events.append(message)
        if not started:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            self.first_line.put({"exited": self.process.wait(), "stderr": stderr})

    def request(self, **request) -> dict:
        request["id"] = next(self._ids)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self.replies.get(timeout=10)
        assert reply["id"] == request["id"], (reply, request)
        return reply

    def state(self) -> dict:
        return self.request(cmd="state")["state"]

    def bound(self) -> dict[tuple[str, str], dict]:
        """(interface, family) -> bound socket entry."""
        return {(b["interface"], b["family"]): b for b in self.state()["bound"]}

    def skipped(self) -> dict[str, list[str]]:
        reasons: dict[str, list[str]] = {}
        for entry in self.state()["skipped"]:
            reasons.setdefault(entry["interface"], []).append(entry["reason"])
        return reasons

    def wait_bound(self, condition, what: str, timeout: float = 5.0) -> dict:
        return wait_until(
            lambda: (lambda b: b if condition(b) else None)(self.bound()), timeout, what=what
        )

    def send(self, socket_id: int, host: str, port: int, data: str) -> bool:
        return self.request(cmd="send", socket=socket_id, host=host, port=port, data=data)["sent"]

    def open_fds(self) -> int:
        """Descriptors held at rest: the smallest count over half a second, since a re-read of
        the interfaces briefly holds a netlink socket of its own."""
        samples = []
        for _ in range(10):
            samples.append(len(list(Path(f"/proc/{self.pid}/fd").iterdir())))
            time.sleep(0.05)
        return min(samples)


SINK = Path(__file__).with_name("udp_sink.py")


class UdpSink:
    """A UDP listener in a namespace; ``received`` fills with {"data", "from"} dicts."""

    def __init__(self, host: Host, address: str, port: int) -> None:
        self.process = host.python(str(SINK), address, str(port), stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        first = json.loads(self.process.stdout.readline() or "{}")
        if "listening" not in first:
            raise AssertionError(f"udp sink on {address}:{port} did not start")
        self.received: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.received.append(json.loads(line))


def send_udp(host: Host, address: str, port: int, data: str) -> str:
    """Send one datagram from an ordinary (unpinned) socket in ``host``; returns "" on
    success or the OS error text (e.g. a route into a dead TUN)."""
    code = (
        "import socket,sys\n"
        "a,p,d=sys.argv[1],int(sys.argv[2]),sys.argv[3]\n"
        "s=socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET,socket.SOCK_DGRAM)\n"
        "try:\n s.sendto(d.encode(),(a,p))\nexcept OSError as e:\n print(e)\n"
    )
    return host.run("python3", "-c", code, address, str(port), data).stdout.strip()
