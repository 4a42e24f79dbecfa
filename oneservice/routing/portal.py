"""Captive portals: when the full tunnel's gateway cannot be reached from a network that has
just come up, is a hotel's or a train's login page in the way?

Only with `settings.captivePortalUrl`: an http:// URL whose host is an address (the node
resolves no names), which answers 204 No Content when the way to the internet is free (as
Android's generate_204 does). None is built in; without one nothing is probed. The probe goes
through a socket pinned to the physical interface (SO_BINDTODEVICE), so neither the tunnel's
routes nor its kill switch stand in its way (the kill switch lets exactly this address and
port through). Any other answer (a redirect, a login page) is a portal; no answer says
nothing.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..settings import ProbeUrl

PROBE_TIMEOUT_S = 3.0
# A login window (`oneservice-cli portal open`) lasts this long unless asked otherwise.
DEFAULT_OPEN_S = 300
MAX_OPEN_S = 1800


@dataclass(frozen=True)
class ProbeResult:
    status: int | None  # None: no answer
    location: str = ""


def probe(url: ProbeUrl, device: str) -> ProbeResult:
    """Blocking: one HTTP GET through ``device`` only."""
    family = socket.AF_INET6 if url.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(PROBE_TIMEOUT_S)
            connection.connect((url.host, url.port))
            host = f"[{url.host}]" if url.version == 6 else url.host
            connection.sendall(f"GET {url.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close"
                               "\r\nUser-Agent: oneservice captive portal probe\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return ProbeResult(None)
    return read_head(head)


def read_head(head: bytes) -> ProbeResult:
    """The status and Location of an HTTP response head (None: not one)."""
    lines = head.split(b"\r\n")
    fields = lines[0].split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        return ProbeResult(None)
    location = ""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"location":
            location = value.strip().decode("latin-1")[:200]
    return ProbeResult(int(fields[1]), location)


def portal_detail(result: ProbeResult) -> str | None:
    """What the answer says of a portal (None: no portal seen, or no answer)."""
    if result.status is None or result.status == 204:
        return None
    where = f" to {result.location}" if result.location else ""
    return f"the probe got HTTP {result.status}{where} instead of 204"
