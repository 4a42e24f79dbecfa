"""What the API asks of the controller, as functions that controller_call runs on the
controller's thread (controller/thread.py). Light on purpose: the API imports this, and a node
that is no controller loads neither the controller nor its stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ..identity import Identity
    from .controller import Controller


def open_controller(home: Path, database: str, identity: Identity,
                    on_change: Callable[[str], None]) -> Controller:  # fmt: skip
    """controller.open_controller, loaded only when this node becomes a controller."""
    from .controller import open_controller as opened_here

    return opened_here(home, database, identity, on_change)


def on_controller(method: str) -> Callable[..., Any]:
    """A controller method by name, as controller_call runs it (by name: the API need not
    load the controller's module to say which)."""
    return lambda controller, *args: getattr(controller, method)(*args)


def create_or_update(controller: Controller, network_id: str, body: Any) -> tuple[bool, dict]:
    """On the controller's thread, so that no other request comes between the two."""
    if network_id not in controller.networks():
        return True, controller.create_network(network_id, body)
    return False, controller.update_network(network_id, body)


def delete_network(controller: Controller, network_id: str,
                    now: float) -> tuple[dict, list[str]]:  # fmt: skip
    """The network as it was, and the members online before it went (they are told)."""
    members = controller.online_members(network_id, now)
    return controller.delete_network(network_id), members
