"""Prometheus's text format as oneservice/metrics.py writes it."""

from __future__ import annotations

from oneservice.metrics import Family, NodeFigures, node_families, render
from oneservice.node.events import PathView, PeerView


def test_labels_and_help_are_escaped_and_numbers_written_as_prometheus_reads_them():
    family = Family("oneservice_x_total", "counter", "a help\\nline")
    family.add(3, reason='quote " back \\ new\nline')
    family.add(float("inf"), reason="inf")
    family.add(0.25)
    assert render([family]) == (
        "# HELP oneservice_x_total a help\\\\nline\n"
        "# TYPE oneservice_x_total counter\n"
        'oneservice_x_total{reason="quote \\" back \\\\ new\\nline"} 3\n'
        'oneservice_x_total{reason="inf"} +Inf\n'
        "oneservice_x_total 0.25\n"
    )


def test_every_full_tunnel_state_is_a_series_and_only_the_current_one_is_1():
    path = PathView(("192.0.2.2", 9993), 1, None, "direct", True, True, 0.001, None, None)
    relay = PathView(None, None, "3f00000001", "relayed", True, False, 0.01, None, None)
    peer = PeerView("a1b2c3d4e5", "connected", True, False, 0.001, (path, relay), 5, 700, 4, 600)
    figures = NodeFigures(
        peers=[peer], interfaces={1: "eth0"}, counters={"packetDrops": {"no_route": 2}},
        uplinks=[], tunnels={"8056c2e21c000001": "withdrawn"}, gateway_changes=1,
        revisions={"8056c2e21c000001": 7}, controller_members={}, answered={200: 3},
    )  # fmt: skip
    text = render(node_families(figures))
    assert 'oneservice_full_tunnel{network="8056c2e21c000001",state="withdrawn"} 1' in text
    assert 'oneservice_full_tunnel{network="8056c2e21c000001",state="on"} 0' in text
    assert 'oneservice_paths{kind="direct",interface="eth0"} 1' in text
    assert 'oneservice_paths{kind="relayed",interface="relay"} 1' in text
    assert 'oneservice_peer_sent_bytes_total{peer="a1b2c3d4e5"} 700' in text
    assert 'oneservice_packet_drops_total{reason="no_route"} 2' in text
    assert 'oneservice_api_requests_total{status="200"} 3' in text
