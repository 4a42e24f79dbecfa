"""The control plane (sans-I/O): network config requests and answers, and pushes to members.

Like the node core, it does no I/O and reads no clock: the service hands it the control
messages the core received and the time; it hands back the messages to send (``outbox``),
the configs to check off the event loop (``checks``: the signature and the parse of every
member, network/membership.checked_config), the requests for this node's controller
(``questions``: answered with ``answer_question`` on the controller's thread, as their SQL
may block, then handed back to ``replied``), and whether the joined networks changed
(``networks_changed``: the service then rebuilds devices and routes). Messages for this node
itself (a controller that is a member of its own network) go round inside, never on the wire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .identity import Identity
from .messages import ConfigAnswer, ConfigDelta, ConfigRequest
from .network.membership import Memberships, Verdict
from .network.signed import STATUS_NOT_FOUND, controller_address
from .records import record

if TYPE_CHECKING:
    from .controller.controller import Controller

ControlMessage = ConfigRequest | ConfigAnswer | ConfigDelta
# A member the core may not know yet, with the endpoints the controller has for it.
Contact = tuple[Identity, list[tuple[str, int]]]

log = logging.getLogger("oneservice")
# Requests waiting for the controller's thread at most: more (a flood, a database that went
# slow) are dropped and counted; their members ask again at their next retry.
MAX_WAITING_QUESTIONS = 256


@record
class ConfigQuestion:
    """A member's config request for this node's controller, with what the loop knows."""

    address: str
    request: ConfigRequest
    sender: Identity
    endpoints: list[str]  # where the member is reachable as our core sees it ("ip/port")
    wall: float


@dataclass
class ControllerReply:
    """What the controller's thread hands back: messages to send, and contacts to give the
    core first (members to be sent to that the core may not know)."""

    messages: list[tuple[str, ControlMessage]] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)


def answer_question(controller: Controller, question: ConfigQuestion) -> ControllerReply:
    """The answer to a member's request (on the controller's thread: it queries the store)."""
    network_id = question.request.network_id
    if not controller.owns(network_id):
        return ControllerReply([(question.address, ConfigAnswer(network_id,
                                                                error=STATUS_NOT_FOUND))])
    before = controller.revision(network_id)
    answer = controller.handle_request(network_id, question.sender, question.endpoints,
                                       question.wall, question.request.revision)  # fmt: skip
    reply = ControllerReply()
    if controller.revision(network_id) != before:
        # A member arrived (or moved): the others must learn of it now, not at their next
        # refresh.
        reply = pushes(controller, network_id, question.wall)
    reply.messages.append((question.address, answer))
    return reply


def pushes(controller: Controller, network_id: str, wall: float,
           also: list[str] | tuple = ()) -> ControllerReply:  # fmt: skip
    """After a change: every member that asked recently gets its answer now (and ``also``
    those just removed, so they learn they are out). On the controller's thread."""
    reply = ControllerReply()
    own = controller.identity.address
    for address in dict.fromkeys([*controller.online_members(network_id, wall), *also]):
        contact = controller.contact(network_id, address)
        if contact is not None and address != own:
            reply.contacts.append(contact)
        reply.messages.append((address, controller.message_for(network_id, address)))
    return reply


@record
class ControlWork:
    """What the service does for the control plane: contacts given to the core before the
    messages are sent, questions for the controller's thread, configs to check off the loop,
    and whether the joined networks changed (devices and routes are then rebuilt)."""

    contacts: list[Contact]
    outbox: list[tuple[str, ControlMessage]]
    questions: list[ConfigQuestion]
    checks: list[tuple[ConfigAnswer | ConfigDelta, Identity]]
    networks_changed: bool


class ControlPlane:
    def __init__(
        self,
        identity: Identity,
        memberships: Memberships,
        endpoints_of: Callable[[str, float], list[str]],
        own_endpoints: Callable[[], list[str]],
        is_controller: Callable[[], bool] = lambda: False,
    ) -> None:
        self.identity = identity
        self.memberships = memberships
        self._is_controller = is_controller  # whether this node's controller store is open
        # Where a member is reachable as our core sees it ("ip/port"), for its config; and
        # our own endpoints, for our own membership.
        self._endpoints_of = endpoints_of
        self._own_endpoints = own_endpoints
        self.outbox: list[tuple[str, ControlMessage]] = []  # (to, message)
        self.checks: list[tuple[ConfigAnswer | ConfigDelta, Identity]] = []  # then config_checked
        # Members to be sent to that the core may not know (they talked to another controller
        # process on our store): (identity, endpoints), given to the core before the outbox.
        self.contacts: list[Contact] = []
        self.questions: list[ConfigQuestion] = []  # for the controller's thread, then replied
        self.questions_in_flight = 0  # handed to the thread, not yet replied
        self.busy_drops = 0
        self.networks_changed = False

    # --- inputs --------------------------------------------------------------------------------

    def receive(self, address: str, message: ControlMessage, sender: Identity,
                now: float, wall: float) -> None:  # fmt: skip
        """A control message from ``address`` (authenticated as ``sender``)."""
        if isinstance(message, ConfigRequest):
            self._answer_request(address, message, sender, now, wall)
        else:
            if self.memberships.wants_checking(message, sender):
                self.checks.append((message, sender))
            else:
                self.config_checked(message, sender, None)

    def config_checked(self, message: ConfigAnswer | ConfigDelta, sender: Identity,
                       checked: Verdict | None) -> None:  # fmt: skip
        """The verdict on a config of ``checks`` (None: it needed no check)."""
        network_id = message.network_id
        joined = self.memberships.networks.get(network_id)
        rejected_before = joined.rejected_configs if joined else 0
        changed = self.memberships.on_config_message(message, sender, checked)
        if joined is not None and joined.rejected_configs > rejected_before:
            log.warning("network %s: config rejected: %s", network_id, joined.last_rejection)
        if changed is not None:
            log.info("network %s: %s, revision %s", network_id, changed.status,
                     changed.config.revision if changed.config else "-")  # fmt: skip
            self.networks_changed = True

    def take_questions(self) -> list[ConfigQuestion]:
        """The questions for the controller's thread; each is answered with ``replied``."""
        questions, self.questions = self.questions, []
        self.questions_in_flight += len(questions)
        return questions

    def take_work(self) -> ControlWork:
        """Everything the control plane wants done now, in the order to do it; it then
        holds nothing more until its next input."""
        work = ControlWork(self.contacts, self.outbox, self.take_questions(), self.checks,
                           self.networks_changed)  # fmt: skip
        self.contacts, self.outbox, self.checks = [], [], []
        self.networks_changed = False
        return work

    def replied(self, reply: ControllerReply | None, now: float, wall: float,
                answers_question: bool) -> None:  # fmt: skip
        """What the controller's thread answered: a question's answer (None: it failed), or
        pushes."""
        if answers_question:
            self.questions_in_flight -= 1
        if reply is None:
            return
        self.contacts.extend(reply.contacts)
        for address, message in reply.messages:
            self._send(address, message, now, wall)

    def join(self, network_id: str, now: float, wall: float) -> None:
        """WriteFailed if the network's file cannot be written (then it is not joined)."""
        joined = self.memberships.join(network_id)
        joined.last_request = -math.inf
        self.handle_timer(now, wall)

    def handle_timer(self, now: float, wall: float) -> None:
        """Ask for the configs that are due; say once when a join seems stuck."""
        for joined in self.memberships.requests_due(now):
            revision = joined.config.revision if joined.config else -1
            self._send(controller_address(joined.id), ConfigRequest(joined.id, revision), now,
                       wall)  # fmt: skip
        for joined in self.memberships.networks.values():
            hint = joined.waiting_hint(now)
            if hint and not joined.slow_reported:
                joined.slow_reported = True
                log.warning("network %s: %s", joined.id, hint)

    def next_timer(self) -> float:
        return self.memberships.next_due()

    # --- inside --------------------------------------------------------------------------------

    def _answer_request(self, address: str, request: ConfigRequest, sender: Identity, now: float,
                        wall: float) -> None:  # fmt: skip
        network_id = request.network_id
        if not self._is_controller() or controller_address(network_id) != self.identity.address:
            self._send(address, ConfigAnswer(network_id, error=STATUS_NOT_FOUND), now, wall)
            return
        if len(self.questions) + self.questions_in_flight >= MAX_WAITING_QUESTIONS:
            self.busy_drops += 1
            return
        own = address == self.identity.address
        endpoints = self._own_endpoints() if own else self._endpoints_of(address, now)
        self.questions.append(ConfigQuestion(address, request, sender, endpoints, wall))

    def _send(self, address: str, message: ControlMessage, now: float,
              wall: float) -> None:  # fmt: skip
        if address == self.identity.address:
            self.receive(address, message, self.identity.public(), now, wall)
        else:
            self.outbox.append((address, message))
