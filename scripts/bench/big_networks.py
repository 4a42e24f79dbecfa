"""Networks of 1,000 and 10,000 members (issue 14, item 5): the figures go to PERFORMANCE.md.

    sudo python3 scripts/bench/big_networks.py [--members 1000,10000] [--changes 10]

The controller and the joining member are real nodes, in two namespaces of their own (an
egress guard on each, as in the tests); the many other members are listed in the controller's
database (real identities, generated once and cached: identities.py) and never speak, so
they cost the controller what members cost it, not what sessions do. They have no endpoints
(nothing would answer on one). In networks this big the joining member reaches them only on
demand (node/core.py, EAGER_NETWORK_MEMBERS): before, it sent each an initiation every
second, through the controller's relay, which starved the member at 10,000 and made the
controller's figures per change mostly that relaying. For each size:

- join: the member's POST /network until its status is OK, and the whole config's size;
- per membership change (a member authorized through the API): controller CPU (all threads,
  schedstat) and bytes the controller sent (an nft counter on its uplink), with the one real
  member online to push to; and the same change timed in-process without the node around it;
- per roaming member: one of the listed members asking from a new endpoint (in-process: what
  the controller does with that request, and the bytes of its answer); no push follows;
- the controller's RSS after all that.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vpns
from identities import cached_identities

from oneservice.controller.controller import Controller
from oneservice.controller.store import SQLiteStore
from oneservice.identity import Identity
from oneservice.messages import encode
from tests.integration.nodes import NodeLab, write_home, write_local_conf
from tests.testbed import Testbed, wait_until

EGRESS_COUNTER = """
table inet ost_bench_egress {
  counter sent { }
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "eth0" udp sport 9993 counter name sent
  }
}
"""


def sent_bytes(host) -> int:
    listed = json.loads(host.run("nft", "-j", "list", "counter", "inet", "ost_bench_egress",
                                 "sent").stdout)  # fmt: skip
    return next(item["counter"]["bytes"] for item in listed["nftables"] if "counter" in item)


def prepare(home: Path, controller_identity: Identity, member: Identity,
            others: list[Identity], waiting: list[Identity]) -> str:  # fmt: skip
    """The network with ``others`` listed (each joined once, long ago), ``waiting`` asked to
    join and not yet authorized (each authorization is a change), and ``member`` authorized
    ahead; written before the controller starts."""
    controller = Controller(controller_identity, SQLiteStore(home / "controller.db"))
    network_id = controller.create_network(changes={
        "name": "big", "routes": [{"target": "10.0.0.0/8"}],
        "ipAssignmentPools": [{"ipRangeStart": "10.1.0.1", "ipRangeEnd": "10.250.255.254"}],
    })["id"]  # fmt: skip
    store = controller.store
    for n, identity in enumerate(others):
        # What a member that joined and was authorized looks like in the store.
        document = {"authorized": True, "name": "", "revision": 2, "creationTime": 0,
                    "lastAuthorizedTime": 0, "endpoints": [],
                    "ipAssignments": [f"10.{1 + n // 62500}.{n // 250 % 250}.{1 + n % 250}"]}
        store.put_member(network_id, identity.address, identity.public_text(), document, 0.0)
    for identity in waiting:  # asked to join; not authorized yet
        controller.handle_request(network_id, identity, [], 0.0)
    controller.update_member(network_id, member.address, {"authorized": True})
    store.close()
    return network_id


def in_process(home: Path, controller_identity: Identity, network_id: str,
               newcomers: list[Identity], roamer: Identity) -> dict:  # fmt: skip
    """The controller's own work per change and per roaming member, without the node."""
    controller = Controller(controller_identity, SQLiteStore(home / "controller.db"))
    controller.config_message(network_id)  # the current revision, built once
    have = controller.revision(network_id)
    cpu, sizes = [], []
    for identity in newcomers:
        started = time.process_time()
        controller.update_member(network_id, identity.address, {"authorized": True})
        answer = controller.answer(network_id, have)  # what an online member is pushed
        cpu.append(time.process_time() - started)
        sizes.append(len(encode(answer)))
        have = controller.revision(network_id)
    whole = len(encode(controller.config_message(network_id)))
    started = time.process_time()
    reply = controller.handle_request(network_id, roamer, ["198.51.100.99/9993"], time.time(),
                                      have)  # fmt: skip
    roam_cpu = time.process_time() - started
    roam = {"cpuMs": round(roam_cpu * 1000, 2), "answerBytes": len(encode(reply)),
            "newRevision": controller.revision(network_id) != have}  # fmt: skip
    controller.store.close()
    return {"changeCpuMs": round(1000 * sorted(cpu)[len(cpu) // 2], 2),
            "changeAnswerBytes": sorted(sizes)[len(sizes) // 2], "wholeConfigBytes": whole,
            "roam": roam}  # fmt: skip


def one_size(count: int, changes: int) -> dict:
    identities = cached_identities(count + 2 * changes + 1)
    others, newcomers = identities[:count], identities[count:count + changes]
    spare = identities[count + changes:count + 2 * changes]
    bed = Testbed()
    lab = NodeLab()
    try:
        with tempfile.TemporaryDirectory() as work:
            ctrl_id, member_id = Identity.generate(), Identity.generate()
            lab.identities = {"ctrl": ctrl_id, "member": member_id}
            ctrl, member = bed.host("ctrl"), bed.host("member")
            lab.hosts = {"ctrl": ctrl, "member": member}
            bed.link(ctrl, "eth0", member, "eth0", ["192.0.2.10/24"], ["192.0.2.20/24"])
            ctrl.run("nft", "-f", "-", input=EGRESS_COUNTER)
            lab.homes = {"ctrl": write_home(Path(work) / "ctrl", ctrl_id, []),
                         "member": write_home(Path(work) / "member", member_id, [])}
            network_id = prepare(lab.homes["ctrl"], ctrl_id, member_id, others,
                                 newcomers + spare)  # fmt: skip
            write_local_conf(lab.homes["ctrl"], {"settings": {"relay": True}})
            write_local_conf(lab.homes["member"], {"roots": [{
                "identity": ctrl_id.public_text(), "endpoints": ["192.0.2.10/9993"]}]})
            lab.start("ctrl")
            lab.start("member")
            started = time.monotonic()
            assert lab.api("member", "POST", f"/network/{network_id}", {})[0] == 200
            lab.wait_status("member", network_id, "OK", timeout=120)
            join_s = time.monotonic() - started
            pid = lab.nodes["ctrl"].process.pid
            cpu, sent = [], []
            for identity in newcomers:
                _, before = lab.api("member", "GET", f"/network/{network_id}")
                cpu_before, bytes_before = vpns.run_time_seconds(pid), sent_bytes(ctrl)
                code, body = lab.api("ctrl", "POST", f"/controller/network/{network_id}/member/"
                                     f"{identity.address}", {"authorized": True})  # fmt: skip
                assert code == 200, body
                wait_until(lambda before=before: lab.api("member", "GET",
                           f"/network/{network_id}")[1]["netconfRevision"]
                           > before["netconfRevision"], timeout=30, interval=0.02,
                           what="the member to get the change")  # fmt: skip
                time.sleep(0.2)  # what the change causes is over
                cpu.append(vpns.run_time_seconds(pid) - cpu_before)
                sent.append(sent_bytes(ctrl) - bytes_before)
            rss_mib = vpns.rss_kib(pid) / 1024
            lab.nodes["ctrl"].stop()
            lab.nodes["member"].stop()
            inside = in_process(lab.homes["ctrl"], ctrl_id, network_id, spare, others[0])
    finally:
        bed.cleanup()
    return {"members": count, "joinS": round(join_s, 2),
            "changeCpuMs": round(1000 * sorted(cpu)[len(cpu) // 2], 1),
            "changeBytesSent": sorted(sent)[len(sent) // 2],
            "controllerRssMiB": round(rss_mib, 1), "inProcess": inside}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="1000,10000")
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    for count in (int(n) for n in args.members.split(",")):
        print(json.dumps(one_size(count, args.changes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
