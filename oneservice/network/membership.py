"""Networks this node joined through a controller: their status and their last good config.

Each joined network has a file `networks.d/<network id>.conf` (JSON) holding the controller's
public identity and the last signed config it sent, so the node restarts into its networks
without the controller, and re-checks the signature on load. Deleting the file is leaving.
A file that cannot be used takes its network down (status FILE_ERROR, saying why) and is left
as it is: the node neither asks the controller for that network nor writes over the file.
"""

from __future__ import annotations

import binascii
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..files import (
    DamagedFile,
    WriteFailed,
    damaged,
    json_type,
    network_down,
    read_json_object,
    write_atomically,
)
from ..identity import Identity, IdentityError
from ..messages import ConfigAnswer, ConfigDelta
from .config import NETWORKS_DIR, NetworkConfig, NetworkConfigError, is_network_id
from .signed import (
    ERROR_STATUSES,
    Verified,
    canonical,
    controller_address,
    verify_answer,
    verify_delta,
)

# What a config's check says: the verified config, or why it was refused.
Verdict = Verified | str
# The changes of a delta between a revision and itself (signed.delta_between, canonical).
_NO_CHANGES = canonical({"put": [], "remove": [], "set": {}, "unset": []})

STATUS_REQUESTING = "REQUESTING_CONFIGURATION"
STATUS_OK = "OK"
STATUS_FILE_ERROR = "FILE_ERROR"
# Ask again this often once configured (pushes bring changes at once; this catches the rest),
# and this often while waiting for a first answer.
CONFIG_REFRESH_S = 30.0
CONFIG_RETRY_S = 2.0
# A network still without an answer this long after its first request is said to be waiting
# (status detail and one log line): a join usually takes well under a second.
SLOW_CONFIG_S = 5.0


@dataclass
class JoinedNetwork:
    id: str
    status: str = STATUS_REQUESTING
    config: NetworkConfig | None = None
    controller: Identity | None = None
    last_request: float = -math.inf
    rejected_configs: int = 0
    last_rejection: str = ""
    file_error: str = ""  # why its file cannot be used (then it is down)
    # When the first unanswered request went out (inf: none is waiting for an answer).
    requested_since: float = math.inf
    slow_reported: bool = False
    # The config's document and signature as signed: what the next delta applies to.
    document: dict | None = None
    signature: bytes = b""

    def waiting_hint(self, now: float) -> str:
        """For a newcomer whose join seems stuck: what must be true for it to work."""
        waited = now - self.requested_since
        if self.status != STATUS_REQUESTING or waited < SLOW_CONFIG_S:
            return ""
        return (f"no answer from controller {controller_address(self.id)} after {waited:.0f} s: "
                "it must be reachable from here, through an endpoint this node knows or a root "
                "listed in local.conf (roots)")  # fmt: skip


def _request_interval(joined: JoinedNetwork) -> float:
    return CONFIG_REFRESH_S if joined.status == STATUS_OK else CONFIG_RETRY_S


class Memberships:
    def __init__(self, home: Path) -> None:
        self.directory = home / NETWORKS_DIR
        self.networks: dict[str, JoinedNetwork] = {}

    def load(self) -> list[str]:
        """Read every joined network; returns warnings (a damaged saved config is set aside as
        unconfigured, never deleted: the controller will send a fresh one)."""
        warnings = []
        if not self.directory.is_dir():
            return warnings
        for path in sorted(self.directory.glob("*.conf")):
            if path.name.endswith(".local.conf"):
                continue  # the user's flags for a network (routing/flags.py)
            network_id = path.stem
            if not is_network_id(network_id):
                warnings.append(f"{path}: not named <16 hex digit network id>.conf; ignored")
                continue
            try:
                joined = _load_saved(path, network_id)
            except DamagedFile as exc:
                reason = network_down(exc, network_id)
                warnings.append(reason)
                joined = JoinedNetwork(network_id, STATUS_FILE_ERROR, file_error=reason)
            self.networks[network_id] = joined
        return warnings

    def join(self, network_id: str) -> JoinedNetwork:
        """WriteFailed if its file cannot be written (then it is not joined)."""
        joined = self.networks.get(network_id)
        if joined is None:
            self._save(network_id, None, None)
            joined = self.networks[network_id] = JoinedNetwork(network_id)
        return joined

    def leave(self, network_id: str) -> bool:
        if self.networks.pop(network_id, None) is None:
            return False
        path = self.directory / f"{network_id}.conf"
        path.unlink(missing_ok=True)
        return True

    def requests_due(self, now: float) -> list[JoinedNetwork]:
        due = []
        for joined in self.networks.values():
            if joined.file_error:
                continue
            if now - joined.last_request >= _request_interval(joined):
                joined.last_request = now
                joined.requested_since = min(joined.requested_since, now)
                due.append(joined)
        return due

    def next_due(self) -> float:
        """When requests_due next has a request to make, or a join is first slow."""
        due = math.inf
        for joined in self.networks.values():
            if joined.file_error:
                continue
            due = min(due, joined.last_request + _request_interval(joined))
            if joined.status == STATUS_REQUESTING and not joined.slow_reported:
                due = min(due, joined.requested_since + SLOW_CONFIG_S)
        return due

    def wants_checking(self, message: ConfigAnswer | ConfigDelta, sender: Identity) -> bool:
        """Whether an answer carries a config that on_config_message would check: then its
        check (``checker``: the signature, and the parse of every member new or changed:
        milliseconds for thousands) may run on a worker thread first."""
        joined = self.networks.get(message.network_id)
        if joined is None or joined.file_error or sender.address != controller_address(joined.id):
            return False
        if isinstance(message, ConfigDelta):
            return self._delta_applies(joined, message) and not self._unchanged(joined, message)
        return message.error is None

    def checker(self, message: ConfigAnswer | ConfigDelta, sender: Identity):
        """The check of a message that wants_checking, to run anywhere: for a delta, on the
        config held now (on_config_message asks again if that has moved on meanwhile)."""
        joined = self.networks[message.network_id]
        base = (joined.document, joined.config) if isinstance(message, ConfigDelta) else None
        return functools.partial(checked_config, message, sender, joined.id, base)

    @staticmethod
    def _delta_applies(joined: JoinedNetwork, message: ConfigDelta) -> bool:
        return (joined.config is not None and joined.document is not None
                and joined.config.revision == message.base)  # fmt: skip

    @staticmethod
    def _unchanged(joined: JoinedNetwork, message: ConfigDelta) -> bool:
        """A refresh at the revision held: the same signature, nothing to apply."""
        return message.signature == joined.signature and message.changes == _NO_CHANGES

    def on_config_message(
        self, message: ConfigAnswer | ConfigDelta, sender: Identity,
        checked: Verdict | None = None,
    ) -> JoinedNetwork | None:
        """Apply a controller's answer; returns the network if its usable config changed.
        ``checked``: what checked_config said of it already. A delta to a revision we do not
        hold (a push that crossed a change) is not applied: the config is asked for again at
        once, with the revision we hold."""
        joined = self.networks.get(message.network_id)
        if joined is None or joined.file_error:
            return None  # not a network of ours (or down, its file damaged): nothing to reject
        if sender.address != controller_address(joined.id):
            return self._reject(joined, f"config sent by {sender.address}, not the controller")
        if isinstance(message, ConfigDelta):
            if not self._delta_applies(joined, message):
                joined.last_request = -math.inf
                return None
            joined.requested_since, joined.slow_reported = math.inf, False  # answered
            if self._unchanged(joined, message):
                return None
            return self._apply(joined, sender, checked if checked is not None else
                               checked_config(message, sender, joined.id,
                                              (joined.document, joined.config)))  # fmt: skip
        joined.requested_since, joined.slow_reported = math.inf, False  # answered
        error = message.error
        if error in ERROR_STATUSES:
            had_config = joined.config is not None
            if had_config and not self._saved(joined, sender, None):
                return None
            joined.status, joined.config, joined.controller = error, None, sender
            joined.document, joined.signature = None, b""
            return joined if had_config else None
        return self._apply(joined, sender, checked if checked is not None else
                           checked_config(message, sender, joined.id))  # fmt: skip

    def _apply(self, joined: JoinedNetwork, sender: Identity,
               checked: Verdict) -> JoinedNetwork | None:  # fmt: skip
        if isinstance(checked, str):
            return self._reject(joined, checked)
        config = checked.config
        if joined.config is not None and config.revision < joined.config.revision:
            return self._reject(
                joined, f"stale revision {config.revision} (have {joined.config.revision})"
            )
        changed = joined.config != config
        if changed and not self._saved(joined, sender, checked.whole):
            return None
        joined.status, joined.config, joined.controller = STATUS_OK, config, sender
        joined.document, joined.signature = checked.document, checked.whole.signature or b""
        return joined if changed else None

    @staticmethod
    def _reject(joined: JoinedNetwork, reason: str) -> None:
        """Counted and kept for the status; the last good config stays in force."""
        joined.rejected_configs += 1
        joined.last_rejection = reason

    def _saved(self, joined: JoinedNetwork, controller: Identity,
               message: ConfigAnswer | None) -> bool:  # fmt: skip
        """Save before applying: what runs is what a restart finds. On a failed write (a full
        disk) the change is refused, counted, and asked for again at the next refresh."""
        try:
            self._save(joined.id, controller, message)
        except WriteFailed as exc:
            self._reject(joined, str(exc))
            return False
        return True

    def _save(self, network_id: str, controller: Identity | None,
              message: ConfigAnswer | None) -> None:  # fmt: skip
        document: dict = {"id": network_id}
        if controller is not None:
            document["controller"] = controller.public_text()
        if message is not None:
            document["config"] = _to_base64(message.config or b"")
            document["signature"] = _to_base64(message.signature or b"")
        write_atomically(self.directory / f"{network_id}.conf", json.dumps(document, indent=1))


def checked_config(message: ConfigAnswer | ConfigDelta, sender: Identity, network_id: str,
                   base: tuple[dict | None, NetworkConfig | None] | None = None) -> Verdict:
    """The config in a message if it verifies, else why not. A delta is applied to ``base``
    (the document and config it was made for)."""
    try:
        if isinstance(message, ConfigDelta):
            document, config = base or (None, None)
            if document is None or config is None:
                return "config delta without a config to apply it to"
            return verify_delta(message, sender, network_id, document, config)
        return verify_answer(message, sender, network_id)
    except NetworkConfigError as exc:
        return str(exc)


def _load_saved(path: Path, network_id: str) -> JoinedNetwork:
    """A joined network from its file; DamagedFile says what is wrong with it."""
    saved = read_json_object(path)
    if saved is None:
        raise damaged(path, "vanished while being read")
    unknown = sorted(set(saved) - {"id", "controller", "config", "signature"})
    if unknown:
        raise damaged(path, f"unknown key {json.dumps(unknown[0])}")
    if saved.get("id", network_id) != network_id:
        raise damaged(path, f"holds network {json.dumps(saved['id'])}, not {network_id}")
    joined = JoinedNetwork(network_id)
    controller = saved.get("controller")
    if controller is not None:
        if not isinstance(controller, str):
            kind = json_type(controller)
            raise damaged(path, f"controller must be an identity string, not {kind}")
        try:
            joined.controller = Identity.parse(controller).public()
        except IdentityError as exc:
            raise damaged(path, f"controller: {exc}") from None
    if "config" in saved or "signature" in saved:
        if joined.controller is None:
            raise damaged(path, "has a saved config but no controller to check it against")
        try:
            config, signature = _from_base64(saved["config"]), _from_base64(saved["signature"])
            message = ConfigAnswer(network_id, config, signature)
        except (KeyError, TypeError, ValueError):  # (binascii.Error, and text not in ASCII)
            raise damaged(path, "config and signature must both be base64 strings") from None
        try:
            verified = verify_answer(message, joined.controller, network_id)
        except NetworkConfigError as exc:
            raise damaged(path, f"saved config: {exc}") from None
        joined.config, joined.document = verified.config, verified.document
        joined.signature = message.signature or b""
        joined.status = STATUS_OK
    return joined


# base64 from binascii, which the base64 module wraps (0.05 MiB of an idle node).
def _to_base64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _from_base64(text: str) -> bytes:
    """Strict base64 (binascii.Error, a ValueError, for anything else)."""
    return binascii.a2b_base64(text, strict_mode=True)
