"""Finding a router's UPnP description by asking the router itself (pure): an SSDP M-SEARCH
sent to the default gateway alone, not to the multicast group, so nothing else on the LAN is
asked; an answer counts only if its description lies on that gateway."""

from __future__ import annotations

from urllib.parse import urlsplit

SSDP_PORT = 1900
SEARCH_TARGET = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
MAX_ANSWER_BYTES = 2048


def m_search(gateway: str) -> bytes:
    return (f"M-SEARCH * HTTP/1.1\r\nHOST: {gateway}:{SSDP_PORT}\r\n"
            f'MAN: "ssdp:discover"\r\nMX: 1\r\nST: {SEARCH_TARGET}\r\n\r\n').encode()  # fmt: skip


def description_url(answer: bytes, gateway: str) -> str | None:
    """The LOCATION of an answer whose URL is plain HTTP on the gateway itself (None: not
    such an answer; a device that points elsewhere is not followed)."""
    if len(answer) > MAX_ANSWER_BYTES:
        return None
    lines = answer.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200"):
        return None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "location":
            url = value.strip()
            try:
                parts = urlsplit(url)
                port = parts.port
            except ValueError:
                return None
            if parts.scheme == "http" and parts.hostname == gateway and port:
                return url
            return None
    return None
