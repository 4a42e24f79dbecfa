"""PCP (RFC 6887) MAP and NAT-PMP (RFC 6886) for UDP over IPv4, as bytes (pure). A router's
answer is checked against what was asked: a wrong opcode, nonce, port or size is an error,
never a mapping."""

from __future__ import annotations

import ipaddress
import struct

from ..records import record

SERVER_PORT = 5351  # both protocols, at the default gateway
UDP = 17
PCP_VERSION, PCP_MAP = 2, 1
NATPMP_VERSION, NATPMP_ADDRESS, NATPMP_MAP_UDP = 0, 0, 1
RESPONSE_BIT = 0x80
PCP_NONCE_BYTES = 12
# Result codes, named for the log and GET /status.
PCP_RESULTS = {1: "unsupported version", 2: "not authorized", 3: "malformed request",
               4: "unsupported opcode", 5: "unsupported option", 6: "malformed option",
               7: "network failure", 8: "no resources", 9: "unsupported protocol",
               10: "user exceeded quota", 11: "cannot provide external",
               12: "address mismatch", 13: "excessive remote peers"}  # fmt: skip
NATPMP_RESULTS = {1: "unsupported version", 2: "not authorized", 3: "network failure",
                  4: "out of resources", 5: "unsupported opcode"}  # fmt: skip


class PortMapError(Exception):
    """The router refused, or answered something that is not an answer to us."""


@record
class Mapped:
    external_ip: str
    external_port: int
    lifetime: int  # seconds


def checked_external(address: str) -> str:
    """The external address a router gave, if one a peer could send to."""
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local:
        raise PortMapError(f"the router gave {address} as our external address")
    return str(ip)


def _v4_mapped(address: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{address}").packed


def pcp_map_request(client_ip: str, internal_port: int, lifetime: int, nonce: bytes,
                    suggested_port: int = 0) -> bytes:  # fmt: skip
    """A MAP request for UDP to ``internal_port`` (lifetime 0 deletes the mapping that
    ``nonce`` made)."""
    if len(nonce) != PCP_NONCE_BYTES:
        raise ValueError("a PCP nonce is 12 bytes")
    header = struct.pack("!BBHI16s", PCP_VERSION, PCP_MAP, 0, lifetime, _v4_mapped(client_ip))
    body = struct.pack("!12sB3xHH16s", nonce, UDP, internal_port, suggested_port,
                       _v4_mapped("0.0.0.0"))  # fmt: skip
    return header + body


def parse_pcp_map_response(data: bytes, nonce: bytes, internal_port: int) -> Mapped:
    if len(data) < 60:
        raise PortMapError(f"PCP: {len(data)} bytes, not a MAP response")
    version, opcode, result, lifetime = struct.unpack_from("!BBxBI", data)
    if version != PCP_VERSION or opcode != RESPONSE_BIT | PCP_MAP:
        raise PortMapError(f"PCP: version {version} opcode {opcode}, not a MAP response")
    if result:
        raise PortMapError(f"PCP: {PCP_RESULTS.get(result, f'result {result}')}")
    got_nonce, protocol, port, external_port, external = struct.unpack_from("!12sB3xHH16s",
                                                                             data, 24)
    if got_nonce != nonce or protocol != UDP or port != internal_port:
        raise PortMapError("PCP: an answer to another request")
    address = ipaddress.IPv6Address(external).ipv4_mapped
    if address is None or not external_port or not lifetime:
        raise PortMapError("PCP: no IPv4 address, port or lifetime in the answer")
    return Mapped(checked_external(str(address)), external_port, lifetime)


def natpmp_address_request() -> bytes:
    return struct.pack("!BB", NATPMP_VERSION, NATPMP_ADDRESS)


def parse_natpmp_address(data: bytes) -> str:
    _natpmp_head(data, 12, NATPMP_ADDRESS)
    return checked_external(str(ipaddress.IPv4Address(data[8:12])))


def natpmp_map_request(internal_port: int, lifetime: int, suggested_port: int = 0) -> bytes:
    """A UDP mapping to ``internal_port`` (lifetime 0 deletes it)."""
    return struct.pack("!BBHHHI", NATPMP_VERSION, NATPMP_MAP_UDP, 0, internal_port,
                       suggested_port, lifetime)  # fmt: skip


def parse_natpmp_map(data: bytes, internal_port: int) -> tuple[int, int]:
    """(external port, lifetime)."""
    _natpmp_head(data, 16, NATPMP_MAP_UDP)
    port, external_port, lifetime = struct.unpack_from("!HHI", data, 8)
    if port != internal_port:
        raise PortMapError("NAT-PMP: an answer for another port")
    if not external_port or not lifetime:
        raise PortMapError("NAT-PMP: no port or lifetime in the answer")
    return external_port, lifetime


def _natpmp_head(data: bytes, size: int, opcode: int) -> None:
    if len(data) < size:
        raise PortMapError(f"NAT-PMP: {len(data)} bytes, not an answer")
    version, got, result = struct.unpack_from("!BBH", data)
    if version != NATPMP_VERSION or got != RESPONSE_BIT | opcode:
        raise PortMapError(f"NAT-PMP: version {version} opcode {got}, not the answer")
    if result:
        raise PortMapError(f"NAT-PMP: {NATPMP_RESULTS.get(result, f'result {result}')}")
