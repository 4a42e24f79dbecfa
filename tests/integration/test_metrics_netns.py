"""GET /metrics scraped by a real Prometheus (Debian's), started by the test in a member's
namespace, and read back through Prometheus's own HTTP API; promtool checks the format."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse

import pytest

from tests.integration.test_controller_netns import Lab, members_in_touch
from tests.testbed import wait_until

pytestmark = pytest.mark.integration

PROMETHEUS = "127.0.0.1:9090"


def metrics_text(lab: Lab, name: str, token: str) -> tuple[int, str]:
    result = lab.hosts[name].run("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-H",
                                 f"Authorization: Bearer {token}",
                                 "http://127.0.0.1:9993/metrics")  # fmt: skip
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def query(lab: Lab, expression: str) -> list[dict]:
    url = f"http://{PROMETHEUS}/api/v1/query?query={urllib.parse.quote(expression)}"
    result = lab.hosts["client"].run("curl", "-s", url, check=False)
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        return []
    return answer.get("data", {}).get("result", []) if answer.get("status") == "success" else []


def value(lab: Lab, expression: str) -> float | None:
    found = query(lab, expression)
    return float(found[0]["value"][1]) if found else None


@pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                    reason="needs Debian's prometheus (apt-get install prometheus)")
def test_prometheus_scrapes_the_node_and_reads_its_figures_back(testbed, tmp_path):
    lab = Lab(testbed, tmp_path)
    gw_ip = members_in_touch(lab)
    network_id = next(iter(lab.api("client", "GET", "/network")[1]))["id"]
    gw = lab.identities["gw"].address
    home = lab.homes["client"]
    metrics_token = (home / "metricstoken.secret").read_text().strip()
    assert (home / "metricstoken.secret").stat().st_mode & 0o777 == 0o600

    # The metrics token opens GET /metrics and nothing else; the API token opens it too.
    code, text = metrics_text(lab, "client", metrics_token)
    assert code == 200 and "# TYPE oneservice_peers gauge" in text
    api_token = (home / "authtoken.secret").read_text().strip()
    assert metrics_text(lab, "client", api_token)[0] == 200
    assert metrics_text(lab, "client", "wrong")[0] == 401
    status = lab.hosts["client"].run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                     "-H", f"X-ZT1-Auth: {metrics_token}",
                                     "http://127.0.0.1:9993/status").stdout  # fmt: skip
    assert status == "401"
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=30)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr

    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": "oneservice", "metrics_path": "/metrics",
            "authorization": {"type": "Bearer",
                              "credentials_file": str(home / "metricstoken.secret")},
            "static_configs": [{"targets": ["127.0.0.1:9993"]}],
        }],
    }))  # fmt: skip
    lab.hosts["client"].spawn(
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={PROMETHEUS}", "--log.level=warn",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert lab.ping("client", gw_ip)  # traffic to count
    wait_until(lambda: value(lab, 'up{job="oneservice"}') == 1, timeout=30, interval=0.5,
               what="Prometheus scraping the node")  # fmt: skip

    peers = lab.api("client", "GET", "/peer")[1]
    wait_until(lambda: value(lab, "sum(oneservice_peers)") == len(peers), timeout=10,
               interval=0.5, what="the peers counted")  # fmt: skip
    connected = sum(1 for p in peers if p["state"] == "connected")
    assert value(lab, 'oneservice_peers{state="connected"}') == connected
    assert value(lab, 'sum(oneservice_paths{kind="direct",interface="eth0"})') >= 1
    assert value(lab, f'oneservice_peer_sent_bytes_total{{peer="{gw}"}}') > 0
    assert value(lab, f'oneservice_peer_received_datagrams_total{{peer="{gw}"}}') > 0
    assert value(lab, 'oneservice_uplink_sent_bytes_total{interface="eth0"}') > 0
    revision = lab.api("client", "GET", f"/network/{network_id}")[1]["netconfRevision"]
    wait_until(lambda: value(lab, f'oneservice_network_config_revision{{network="{network_id}"}}')
               == revision, timeout=10, interval=0.5, what="the config revision")  # fmt: skip
    assert value(lab, f'oneservice_full_tunnel{{network="{network_id}",state="off"}}') == 1
    assert value(lab, 'oneservice_handshakes_total{result="completed"}') >= 2
    assert value(lab, 'oneservice_api_requests_total{status="200"}') > 0
    assert value(lab, 'oneservice_api_requests_total{status="401"}') >= 2
    # The controller counts its members per network.
    ctrl_token = (lab.homes["ctrl"] / "metricstoken.secret").read_text().strip()
    _, ctrl_text = metrics_text(lab, "ctrl", ctrl_token)
    assert f'oneservice_controller_members{{network="{network_id}"}} 2' in ctrl_text
