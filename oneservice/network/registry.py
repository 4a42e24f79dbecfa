"""Every network this node is in, in one place: those written by hand
(``networks.d/<nwid>.json``) and those joined through a controller (network/membership.py),
with why one is down because a file of it is damaged. The service, its API and the tap and
routing wiring read them here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .config import HandWritten, NetworkConfig, is_network_id, load_network_files
from .membership import Memberships

log = logging.getLogger("oneservice")


class NetworkRegistry:
    def __init__(self, home: Path, files: HandWritten | None = None) -> None:
        """Reads every network file of the home now (the hand-written ones maybe read before:
        ``files``, from load_network_files). A damaged one is logged and takes down its
        network only."""
        self.static, self.file_errors = files or load_network_files(home)
        for error in self.file_errors.values():
            log.error("%s", error)
        self.memberships = Memberships(home)
        for warning in self.memberships.load():
            log.error("%s", warning)
        self._flags_error: Callable[[str], str] = lambda _network_id: ""

    def judge_flags_with(self, flags_error: Callable[[str], str]) -> None:
        """``flags_error``: why a network's local flags file is unusable ("": it is not)."""
        self._flags_error = flags_error

    def active(self) -> list[NetworkConfig]:
        """The configs of the networks that are up (none of their files damaged)."""
        joined = [j.config for j in self.memberships.networks.values() if j.config is not None]
        return [n for n in self.static + joined if not self.down_reason(n.id)]

    def ids(self) -> list[str]:
        """Every network this node is in, working or not (files in networks.d)."""
        ids = [n.id for n in self.static] + list(self.memberships.networks)
        return list(dict.fromkeys([*ids, *(i for i in self.file_errors if is_network_id(i))]))

    def down_reason(self, network_id: str) -> str:
        """Why a network of ours is down because of a damaged file ("" if it is not)."""
        joined = self.memberships.networks.get(network_id)
        return (self.file_errors.get(network_id, "")
                or (joined.file_error if joined else "")
                or self._flags_error(network_id))  # fmt: skip

    def static_config(self, network_id: str) -> NetworkConfig | None:
        """The hand-written config of a network, if it is one."""
        return next((n for n in self.static if n.id == network_id), None)

    def is_member(self, network_id: str) -> bool:
        return self.static_config(network_id) is not None or network_id in self.memberships.networks
