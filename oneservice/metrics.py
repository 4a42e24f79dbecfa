"""GET /metrics: the node's figures in Prometheus's text exposition format (version 0.0.4).

The format is written here once (families with HELP and TYPE lines, label values escaped)
rather than with a client library: the node keeps its own counters, and what is exposed is a
snapshot of them at scrape time. ``node_families`` is pure: the API hands it what it read of
the node. docs/API.md lists the families.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .records import record

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every full-tunnel state a network can show (GET /network fullTunnel): one series each.
TUNNEL_STATES = ("on", "held", "withdrawn", "overridden", "off")


@dataclass
class Family:
    name: str
    kind: str  # counter or gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


def render(families: Iterable[Family]) -> str:
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            shown = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{family.name}{{{shown}}} {_number(value)}" if shown
                         else f"{family.name} {_number(value)}")  # fmt: skip
    return "\n".join(lines) + "\n"


@record
class NodeFigures:
    """What the API read of the node for one scrape."""

    peers: list[Any]  # node/events.py PeerView
    interfaces: Mapping[int, str]  # binder socket id -> interface name
    counters: Mapping[str, Any]  # GET /status counters
    uplinks: list[Mapping[str, Any]]  # GET /binder "bound"
    tunnels: Mapping[str, str]  # network id -> full tunnel as shown
    gateway_changes: int
    revisions: Mapping[str, int]  # joined network id -> config revision
    controller_members: Mapping[str, int]  # network id -> members (this node's controller)
    answered: Mapping[int, int]  # API requests answered, by HTTP status


def node_families(f: NodeFigures) -> list[Family]:
    peers = Family("oneservice_peers", "gauge", "Peers by state (node/lifecycle.py).")
    for state, count in sorted(Counter(p.state for p in f.peers).items()):
        peers.add(count, state=state)
    paths = Family("oneservice_paths", "gauge",
                   "Paths to peers by kind (direct, lan, relayed) and our interface.")  # fmt: skip
    path_counts = Counter((path.kind, _interface(path.socket_id, f.interfaces))
                          for p in f.peers for path in p.paths)  # fmt: skip
    for (kind, interface), count in sorted(path_counts.items()):
        paths.add(count, kind=kind, interface=interface)
    per_peer = [
        Family("oneservice_peer_sent_datagrams_total", "counter", "Datagrams sent to a peer."),
        Family("oneservice_peer_sent_bytes_total", "counter", "Bytes sent to a peer."),
        Family("oneservice_peer_received_datagrams_total", "counter",
               "Datagrams authenticated from a peer."),
        Family("oneservice_peer_received_bytes_total", "counter",
               "Bytes of the datagrams read from a peer."),
    ]  # fmt: skip
    for p in f.peers:
        for family, value in zip(per_peer, (p.datagrams_sent, p.bytes_sent,
                                            p.datagrams_received, p.bytes_received),
                                 strict=True):  # fmt: skip
            family.add(value, peer=p.address)
    per_uplink = [
        Family("oneservice_uplink_sent_datagrams_total", "counter",
               "Datagrams sent on an uplink's socket."),
        Family("oneservice_uplink_sent_bytes_total", "counter", "Bytes sent on an uplink."),
        Family("oneservice_uplink_received_datagrams_total", "counter",
               "Datagrams received on an uplink's socket."),
        Family("oneservice_uplink_received_bytes_total", "counter",
               "Bytes received on an uplink."),
    ]  # fmt: skip
    for uplink in f.uplinks:
        for family, key in zip(per_uplink, ("datagramsSent", "bytesSent", "datagramsReceived",
                                            "bytesReceived"), strict=True):  # fmt: skip
            family.add(uplink.get(key, 0), interface=uplink["interface"],
                       family=uplink["family"])  # fmt: skip
    c = f.counters
    accepted = Family("oneservice_datagrams_accepted_total", "counter",
                      "Datagrams received and authenticated.")  # fmt: skip
    accepted.add(c.get("datagramsAccepted", 0))
    datagram_drops = Family("oneservice_datagram_drops_total", "counter",
                            "Datagrams received and dropped, by reason (PROTOCOL.md).")
    for reason, count in c.get("datagramDrops", {}).items():
        datagram_drops.add(count, reason=reason)
    packet_drops = Family("oneservice_packet_drops_total", "counter",
                          "IP packets and control messages dropped, by reason (PROTOCOL.md).")
    for reason, count in c.get("packetDrops", {}).items():
        packet_drops.add(count, reason=reason)
    handshakes = Family("oneservice_handshakes_total", "counter",
                        "Handshakes: initiated by us (retries included), completed.")  # fmt: skip
    for result in ("initiated", "completed"):
        handshakes.add(c.get("handshakes", {}).get(result, 0), result=result)
    handovers = Family("oneservice_handovers_total", "counter",
                       "A peer's traffic moved from one working path to another.")  # fmt: skip
    handovers.add(c.get("handovers", 0))
    silence = Family("oneservice_last_handover_silence_seconds", "gauge",
                     "How long the path left at the last handover had been silent.")  # fmt: skip
    silence.add(c.get("lastHandoverSilenceSeconds", 0.0))
    tunnels = Family("oneservice_full_tunnel", "gauge",
                     "A network's full tunnel: 1 for the state it is in.")  # fmt: skip
    for network_id, shown in sorted(f.tunnels.items()):
        for state in TUNNEL_STATES:
            tunnels.add(1 if shown == state else 0, network=network_id, state=state)
    gateways = Family("oneservice_full_tunnel_gateway_changes_total", "counter",
                      "Changes of the members full tunnels go through.")  # fmt: skip
    gateways.add(f.gateway_changes)
    revisions = Family("oneservice_network_config_revision", "gauge",
                       "The revision of each joined network's config (0: none yet).")  # fmt: skip
    for network_id, revision in sorted(f.revisions.items()):
        revisions.add(revision, network=network_id)
    members = Family("oneservice_controller_members", "gauge",
                     "Members of each network of this node's controller.")  # fmt: skip
    for network_id, count in sorted(f.controller_members.items()):
        members.add(count, network=network_id)
    requests = Family("oneservice_api_requests_total", "counter",
                      "Local API requests answered, by HTTP status.")  # fmt: skip
    for status, count in sorted(f.answered.items()):
        requests.add(count, status=str(status))
    return [peers, paths, *per_peer, *per_uplink, accepted, datagram_drops, packet_drops,
            handshakes, handovers, silence, tunnels, gateways, revisions, members, requests]


def _interface(socket_id: int | None, interfaces: Mapping[int, str]) -> str:
    """The interface a path leaves by; "relay" for a path through a root."""
    return "relay" if socket_id is None else interfaces.get(socket_id, "")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
