"""The order in which the routing manager changes the kernel: under strict reverse-path
filtering the uplinks are loosened before the full tunnel's halves go in, and made strict
again only after they are gone (in between, the gateway's answers would be dropped and its
path declared dead: a tunnel that withdraws itself right after coming up)."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address, ip_interface, ip_network

from oneservice.network.config import Member, NetworkConfig, Route
from oneservice.routing.manager import KernelAppliers, RoutingInputs, RoutingManager
from oneservice.routing.planner import Refusal
from oneservice.settings import Settings
from tests.unit.corenet import identity

CLIENT, GATEWAY = identity(1), identity(2)
NETWORK = NetworkConfig("8056c2e21c000001", "lab", (
    Member(CLIENT.public(), (ip_interface("10.147.17.2/24"),)),
    Member(GATEWAY.public(), (ip_interface("10.147.17.1/24"),)),
), routes=(Route(ip_network("10.147.17.0/24")),
           Route(ip_network("0.0.0.0/0"), ip_address("10.147.17.1"))))  # fmt: skip


class Recorder:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def apply(self, *args):  # kernel routes (routes, rules), rp_filter (uplinks), exit node
        if len(args) == 2 and isinstance(args[0], frozenset):
            halves = any(r.target == "0.0.0.0/1" for r in args[0])
            self.calls.append("routes with halves" if halves else "routes without halves")
        elif len(args) == 1:
            self.calls.append("loosen" if args[0] else "restore")
        return []

    def route_devices(self, addresses):
        return {}


def test_uplinks_are_loosened_before_the_halves_and_restored_after_them(tmp_path):
    calls: list[str] = []

    async def run() -> None:
        recorder = Recorder(calls)
        manager = RoutingManager(tmp_path, Settings, CLIENT.address, appliers=KernelAppliers(
            routes=recorder, exit=recorder, rp_filter=recorder))  # fmt: skip
        manager.flags.set(NETWORK.id, {"allowDefault": True})
        for live in ({GATEWAY.address}, set()):
            manager.update(RoutingInputs([(NETWORK, "onet1")], frozenset(live), frozenset(),
                                         (), ("wifi",)))  # fmt: skip
            await manager.settled()

    asyncio.run(run())
    order = [c for c in calls if c in ("loosen", "restore") or c.startswith("routes")]
    assert order == ["loosen", "routes with halves", "routes without halves", "restore"]


def test_a_gateway_that_came_back_is_looked_at_again_when_it_may_take_the_tunnel_back(tmp_path):
    """Fail-back happens after FAILBACK_S with nothing else going on: the manager says when,
    so the service's one timer wakes then (before, it woke only if something else changed)."""
    from oneservice.routing.planner import FAILBACK_S

    async def run() -> None:
        manager = RoutingManager(tmp_path, Settings, CLIENT.address, appliers=KernelAppliers())
        assert manager.next_due() == float("inf")
        now = asyncio.get_running_loop().time()
        manager.update(RoutingInputs([(NETWORK, "onet1")], frozenset({GATEWAY.address}),
                                     frozenset(), (), ("wifi",)))  # fmt: skip
        assert now <= manager.next_due() - FAILBACK_S <= now + 0.5
        await manager.settled()

    asyncio.run(run())


class KillSwitchRecorder:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def apply(self, switch) -> None:
        self.calls.append("arm" if switch else "lift")


def test_a_plan_made_before_the_networks_were_applied_leaves_a_crash_s_kill_switch_alone(
    tmp_path,
):
    """At start a kill switch left by a crash stays until the networks are applied (then it
    is taken over). A plan from inputs made before then must not lift it, even if the
    networks were applied while that plan was being carried out: the block would go, and
    traffic leak, until the next plan armed it again (seen in the field-safety test)."""
    calls: list[str] = []

    async def run() -> None:
        settings = Settings(full_tunnel_fail_closed=True)
        recorder = Recorder(calls)
        appliers = KernelAppliers(routes=recorder, exit=recorder, rp_filter=recorder,
                                  kill_switch=KillSwitchRecorder(calls))  # fmt: skip
        manager = RoutingManager(tmp_path, lambda: settings, CLIENT.address, appliers=appliers)
        manager.flags.set(NETWORK.id, {"allowDefault": True})
        # Inputs from before the networks (the binder's first events at start) ...
        manager.update(RoutingInputs([], frozenset(), frozenset(), (), ("wifi",)))
        await asyncio.sleep(0)  # its plan is on its way into the kernel
        # ... and the networks applied while that plan goes into the kernel.
        manager.update(RoutingInputs([(NETWORK, "onet1")], frozenset({GATEWAY.address}),
                                     frozenset(), (), ("wifi",), networks_known=True))  # fmt: skip
        await manager.settled()

    asyncio.run(run())
    assert [c for c in calls if c in ("arm", "lift")] == ["arm"]


class RefusingHalves(Recorder):
    """A kernel that refuses the full tunnel's IPv4 halves while ``refusing`` holds."""

    refusing = True

    def apply(self, *args):
        super().apply(*args)
        if len(args) == 2 and isinstance(args[0], frozenset) and self.refusing:
            return [Refusal(r, f"add route {r.target}: Operation not permitted")
                    for r in args[0] if r.target in ("0.0.0.0/1", "128.0.0.0/1")]  # fmt: skip
        return []


def test_a_route_the_kernel_refused_is_not_shown_as_installed_nor_the_tunnel_as_on(tmp_path):
    """The plan the API shows is what the kernel has (issue 26, item 5)."""
    from oneservice.routing.documents import network_document, routes_document

    async def run() -> list[tuple[str, dict, list]]:
        kernel = RefusingHalves([])
        manager = RoutingManager(tmp_path, Settings, CLIENT.address, appliers=KernelAppliers(
            routes=kernel, exit=kernel, rp_filter=kernel))  # fmt: skip
        manager.flags.set(NETWORK.id, {"allowDefault": True})
        seen = []
        for refusing in (True, False):
            kernel.refusing = refusing
            manager.update(RoutingInputs([(NETWORK, "onet1")], frozenset({GATEWAY.address}),
                                         frozenset(), (), ("wifi",)), force=True)  # fmt: skip
            await manager.settled()
            shown = network_document(manager, NETWORK.id)
            default = next(s for s in shown["routeStatus"] if s["target"] == "0.0.0.0/0")
            kernel_targets = [r["target"] for r in routes_document(manager)["kernel"]]
            seen.append((shown["fullTunnel"], default, kernel_targets))
        return seen

    (refused_state, refused, refused_kernel), (state, accepted, kernel) = asyncio.run(run())
    assert refused_state == "off" and not refused["installed"]
    assert "the kernel refused it" in refused["reason"] and "not permitted" in refused["reason"]
    assert "0.0.0.0/1" not in refused_kernel and "::/1" in refused_kernel, "the rest stays"
    assert state == "on" and accepted["installed"] and "0.0.0.0/1" in kernel
