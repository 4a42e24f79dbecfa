"""The control plane without I/O: config requests and answers on a fake clock, and a join
through a relaying root with real cores in the simulator."""

from __future__ import annotations

import pytest

from oneservice.control import MAX_WAITING_QUESTIONS, ControlPlane, answer_question
from oneservice.controller.controller import Controller
from oneservice.controller.store import SQLiteStore
from oneservice.messages import ConfigAnswer, ConfigRequest
from oneservice.network.membership import CONFIG_RETRY_S, Memberships, checked_config
from oneservice.node.events import ControlReceived
from tests.unit.corenet import Sim, identity

WALL = 1.7e9
POOL = {"ipAssignmentPools": [{"ipRangeStart": "10.147.17.10", "ipRangeEnd": "10.147.17.99"}],
        "routes": [{"target": "10.147.17.0/24"}]}  # fmt: skip


class Node:
    """A core in the simulator with the control plane the service would give it."""

    def __init__(self, sim: Sim, name: str, n: int, ip: str, home, relay: bool = False) -> None:
        self.sim, self.identity = sim, identity(n)
        self.core = sim.add_node(name, n, relay=relay)
        sim.add_socket(name, 1, (ip, 9993))
        self.memberships = Memberships(home)
        self.controller: Controller | None = None
        self.control = ControlPlane(self.identity, self.memberships, self.core.peer_endpoints,
                                    lambda: [f"{ip}/9993"],
                                    lambda: self.controller is not None)  # fmt: skip

    def pump(self) -> None:
        """What the service does with the core's events and the control plane's outputs."""
        now, control = self.sim.now, self.control
        while (event := self.core.next_event()) is not None:
            if isinstance(event, ControlReceived):
                sender = self.core.peers[event.address].identity
                control.receive(event.address, event.message, sender, now, WALL + now)
        control.handle_timer(now, WALL + now)
        answer_all(control, self.controller, now)
        while control.checks:
            message, sender = control.checks.pop(0)
            verdict = checked_config(message, sender, message.network_id)
            control.config_checked(message, sender, verdict)
        for address, message in control.outbox:
            self.core.send_control(address, message, now)
        control.outbox.clear()
        if control.networks_changed:
            control.networks_changed = False
            configs = [j.config for j in self.memberships.networks.values() if j.config]
            self.core.set_networks(configs, now)


def answer_all(control: ControlPlane, controller: Controller | None, now: float) -> None:
    """What the service's controller thread does with the control plane's questions."""
    for question in control.take_questions():
        control.replied(answer_question(controller, question), now, WALL + now, True)


def run(sim: Sim, nodes: list[Node], seconds: float) -> None:
    end = sim.now + seconds
    while sim.now < end:
        for node in nodes:
            node.pump()
        sim.step(0.01)


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "controller.db")
    yield store
    store.close()


def test_a_join_is_asked_for_at_once_then_again_only_when_due(tmp_path):
    member = ControlPlane(identity(11), Memberships(tmp_path), lambda a, now: [], lambda: [])
    network_id = identity(10).address + "000001"
    member.join(network_id, 100.0, WALL)
    assert member.outbox == [(identity(10).address, ConfigRequest(network_id, -1))]
    member.outbox.clear()
    due = member.next_timer()
    assert due == 100.0 + CONFIG_RETRY_S
    member.handle_timer(due - 0.01, WALL)
    assert member.outbox == [], "nothing before it is due"
    member.handle_timer(due, WALL)
    assert [type(m) for _, m in member.outbox] == [ConfigRequest], "asked again when due"


def test_a_controller_answers_and_the_member_takes_the_config(tmp_path, store):
    controller_node = ControlPlane(identity(10), Memberships(tmp_path / "c"), lambda a, now: [],
                                   lambda: [], lambda: True)  # fmt: skip
    controller = Controller(identity(10), store)
    network_id = controller.create_network(None, {"private": False, **POOL})["id"]
    member = ControlPlane(identity(11), Memberships(tmp_path / "m"),
                          lambda a, now: [], lambda: [])  # fmt: skip
    member.join(network_id, 100.0, WALL)
    [(controller_address, request)] = member.outbox
    assert controller_address == identity(10).address
    controller_node.receive(identity(11).address, request, identity(11).public(), 100.0, WALL)
    answer_all(controller_node, controller, 100.0)
    # The answer, and (the member being new: a new revision) a push of it to who is online.
    assert {to for to, _ in controller_node.outbox} == {identity(11).address}
    answer = controller_node.outbox[-1][1]
    assert isinstance(answer, ConfigAnswer) and answer.error is None
    member.receive(identity(10).address, answer, identity(10).public(), 100.1, WALL)
    [(message, sender)] = member.checks
    member.config_checked(message, sender, checked_config(message, sender, network_id))
    assert member.networks_changed
    assert member.memberships.networks[network_id].status == "OK"


def test_a_member_reachable_only_through_a_relaying_root_joins_through_the_controller(
    tmp_path, store
):
    """The controller (a member of its own network) hears the member over the root's relay
    only: no relay path may reach the controller as an endpoint, and both get configs."""
    sim = Sim()
    Node(sim, "r", 3, "203.0.113.1", tmp_path / "r", relay=True)
    ctrl = Node(sim, "c", 10, "198.51.100.1", tmp_path / "c")
    member = Node(sim, "m", 11, "192.0.2.2", tmp_path / "m")
    sim.blocked.add(frozenset({("198.51.100.1", 9993), ("192.0.2.2", 9993)}))
    for node in (ctrl, member):
        node.core.set_roots([(identity(3).public(), [("203.0.113.1", 9993)])], sim.now)
    controller = Controller(identity(10), store)
    ctrl.controller = controller
    handed: list[list[str]] = []  # what the controller's core says about the member

    def endpoints_of(address: str, now: float) -> list[str]:
        handed.append(ctrl.core.peer_endpoints(address, now))
        return handed[-1]

    ctrl.control._endpoints_of = endpoints_of
    network_id = controller.create_network(None, {"private": False, **POOL})["id"]
    ctrl.control.join(network_id, sim.now, WALL + sim.now)
    member.control.join(network_id, sim.now, WALL + sim.now)
    run(sim, [ctrl, member], 10)

    for node in (ctrl, member):
        joined = node.memberships.networks[network_id]
        assert joined.status == "OK", (node.identity.address, joined.last_rejection)
    seen = ctrl.core.peers[member.identity.address]
    assert seen.preferred is not None and seen.preferred.via == identity(3).address
    assert handed and not any(identity(3).address in e for each in handed for e in each), (
        f"a relay path handed to the controller as an endpoint: {handed}"
    )
    assert controller.member(network_id, member.identity.address)["endpoints"] == []
    config = controller.config_document(network_id)
    assert len(config["members"]) == 2


def test_requests_beyond_what_the_controller_thread_can_hold_are_dropped_and_counted(
    tmp_path, store
):
    controller = Controller(identity(10), store)
    plane = ControlPlane(identity(10), Memberships(tmp_path), lambda a, now: [], lambda: [],
                         lambda: True)  # fmt: skip
    network_id = controller.create_network(None, {"private": False, **POOL})["id"]
    for _ in range(MAX_WAITING_QUESTIONS + 44):
        plane.receive(identity(11).address, ConfigRequest(network_id, -1),
                      identity(11).public(), 100.0, WALL)  # fmt: skip
    assert (len(plane.questions), plane.busy_drops) == (MAX_WAITING_QUESTIONS, 44)
    taken = plane.take_questions()
    plane.receive(identity(11).address, ConfigRequest(network_id, -1), identity(11).public(),
                  100.0, WALL)  # fmt: skip
    assert plane.busy_drops == 45, "still full while the thread works on them"
    for question in taken:
        plane.replied(answer_question(controller, question), 100.0, WALL, True)
    assert plane.questions_in_flight == 0 and len(plane.outbox) >= MAX_WAITING_QUESTIONS
    plane.receive(identity(11).address, ConfigRequest(network_id, -1), identity(11).public(),
                  100.0, WALL)  # fmt: skip
    assert len(plane.questions) == 1, "answered again once the thread caught up"
