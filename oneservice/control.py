"""The control plane (sans-I/O): network config requests and answers, and pushes to members.

Like the node core, it does no I/O and reads no clock: the service hands it the control
messages the core received and the time; it hands back the messages to send (``outbox``),
the configs to check off the event loop (``checks``: the signature and the parse of every
member, network/membership.checked_config), and whether the joined networks changed
(``networks_changed``: the service then rebuilds devices and routes). Messages for this node
itself (a controller that is a member of its own network) go round inside, never on the wire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from .controller.controller import Controller
from .identity import Identity
from .messages import ConfigAnswer, ConfigDelta, ConfigRequest
from .network.membership import Memberships, Verdict
from .network.signed import STATUS_NOT_FOUND, controller_address

ControlMessage = ConfigRequest | ConfigAnswer | ConfigDelta

log = logging.getLogger("oneservice")


class ControlPlane:
    def __init__(
        self,
        identity: Identity,
        memberships: Memberships,
        endpoints_of: Callable[[str, float], list[str]],
        own_endpoints: Callable[[], list[str]],
    ) -> None:
        self.identity = identity
        self.memberships = memberships
        self.controller: Controller | None = None  # set by the service once it has one
        # Where a member is reachable as our core sees it ("ip/port"), for its config; and
        # our own endpoints, for our own membership.
        self._endpoints_of = endpoints_of
        self._own_endpoints = own_endpoints
        self.outbox: list[tuple[str, ControlMessage]] = []  # (to, message)
        self.checks: list[tuple[ConfigAnswer | ConfigDelta, Identity]] = []  # then config_checked
        # Members to be sent to that the core may not know (they talked to another controller
        # process on our store): (identity, endpoints), given to the core before the outbox.
        self.contacts: list[tuple[Identity, list[tuple[str, int]]]] = []
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

    def push_config(self, network_id: str, now: float, wall: float,
                    also: list[str] | tuple = ()) -> None:  # fmt: skip
        """After an admin change: every member that asked recently gets its answer now (and
        ``also`` those just removed, so they learn they are out)."""
        if self.controller is None:
            return
        online = self.controller.online_members(network_id, wall)
        for address in dict.fromkeys([*online, *also]):
            contact = self.controller.contact(network_id, address)
            if contact is not None and address != self.identity.address:
                self.contacts.append(contact)
            self._send(address, self.controller.message_for(network_id, address), now, wall)

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
        controller = self.controller
        if controller is None or not controller.owns(network_id):
            self._send(address, ConfigAnswer(network_id, error=STATUS_NOT_FOUND), now, wall)
            return
        own = address == self.identity.address
        endpoints = self._own_endpoints() if own else self._endpoints_of(address, now)
        before = controller.revision(network_id)
        reply = controller.handle_request(network_id, sender, endpoints, wall, request.revision)
        if controller.revision(network_id) != before:
            # A member arrived (or moved): the others must learn of it now, not at their
            # next refresh.
            self.push_config(network_id, now, wall)
        self._send(address, reply, now, wall)

    def _send(self, address: str, message: ControlMessage, now: float,
              wall: float) -> None:  # fmt: skip
        if address == self.identity.address:
            self.receive(address, message, self.identity.public(), now, wall)
        else:
            self.outbox.append((address, message))
