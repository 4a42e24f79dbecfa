"""Network configs signed by their controller: one format, one place that signs and checks.

A config travels as a ConfigAnswer (messages.py): the config document as canonical JSON
bytes, and the controller's Ed25519 signature over SIGNATURE_CONTEXT + those bytes. A member
that holds revision r may instead get a ConfigDelta from r: the members put (added or
changed) and removed, the network's other fields that changed, and the signature of the whole
new document, which the member rebuilds and checks. A delta costs bytes by what changed, not
by the network's size; one that cannot apply (another base) is answered by asking again.
"""

from __future__ import annotations

import json
from typing import Any

from ..identity import Identity
from ..messages import ConfigAnswer, ConfigDelta
from ..records import record
from .config import Member, NetworkConfig, NetworkConfigError, parse_network

SIGNATURE_CONTEXT = b"oneservice network config v1\0"
STATUS_ACCESS_DENIED = "ACCESS_DENIED"
STATUS_NOT_FOUND = "NOT_FOUND"
ERROR_STATUSES = (STATUS_ACCESS_DENIED, STATUS_NOT_FOUND)


def controller_address(network_id: str) -> str:
    """A network id is its controller's address followed by 6 hex digits."""
    return network_id[:10]


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# Stands for the members list while the rest of a document is made canonical: JSON escapes
# the NULs, and no field that sorts before "members" (dns, id) can hold them.
_MEMBERS_HOLE = "\0members\0"
_MEMBERS_HOLE_JSON = json.dumps(_MEMBERS_HOLE).encode()


def canonical_with_members(document: dict, member_blobs: list[bytes]) -> bytes:
    """canonical(document), its members given as each one's canonical bytes: a big network's
    document is made from what is cached per member instead of encoding every member again."""
    head = canonical({**document, "members": _MEMBERS_HOLE})
    return head.replace(_MEMBERS_HOLE_JSON, b"[" + b",".join(member_blobs) + b"]", 1)


def sign_config(controller: Identity, document: dict, blob: bytes | None = None) -> ConfigAnswer:
    """The signed message of ``document``; ``blob`` is its canonical bytes if already made."""
    blob = canonical(document) if blob is None else blob
    return ConfigAnswer(document["id"], blob, controller.sign(SIGNATURE_CONTEXT + blob))


@record
class Verified:
    """A config whose signature checked: parsed, the whole signed message (what a member
    saves), and its document (what the next delta applies to)."""

    config: NetworkConfig
    whole: ConfigAnswer
    document: dict


def verify_config(message: ConfigAnswer, controller: Identity, network_id: str,
                  reuse: dict[str, tuple[dict, Member]] | None = None) -> NetworkConfig:
    """The config in a message, if the controller of ``network_id`` signed it; otherwise
    NetworkConfigError saying why."""
    return verify_answer(message, controller, network_id, reuse).config


def verify_answer(message: ConfigAnswer, controller: Identity, network_id: str,
                  reuse: dict[str, tuple[dict, Member]] | None = None) -> Verified:
    """As verify_config, with the document and message kept."""
    if controller.address != controller_address(network_id):
        raise NetworkConfigError(f"{controller.address} is not the controller of {network_id}")
    blob, signature = message.config, message.signature
    if not isinstance(blob, bytes) or not isinstance(signature, bytes):
        raise NetworkConfigError("config message without config or signature")
    if not controller.verify_signature(SIGNATURE_CONTEXT + blob, signature):
        raise NetworkConfigError("config signature does not verify")
    try:
        document = json.loads(blob)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NetworkConfigError("signed config is not JSON") from None
    # Its members' identities are vouched for by the signature: not checked one by one here
    # (40 ms each: a 1,000-member network would take 40 s to join, and again at every start).
    config = parse_network(document, f"config of {network_id}", verify_identities=False,
                           reuse=reuse)
    if config.id != network_id:
        raise NetworkConfigError(f"config is for {config.id}, not {network_id}")
    return Verified(config, message, document)


def delta_between(old: dict, new: dict) -> dict:
    """What turns document ``old`` into ``new``: members by identity (put whole, or removed),
    and the other fields set or unset. The members both documents hold as the very same
    objects (a controller's builds share every unchanged entry) are passed over without being
    looked at: a change to one member of 10,000 compares a few entries, not all."""
    old_by_id, new_by_id = _by_id(old.get("members", [])), _by_id(new.get("members", []))
    old_members = {old_by_id[k]["identity"]: old_by_id[k] for k in old_by_id.keys() - new_by_id}
    new_members = {new_by_id[k]["identity"]: new_by_id[k] for k in new_by_id.keys() - old_by_id}
    fields = set(old) | set(new)
    fields.discard("members")
    return {
        "put": [m for key, m in new_members.items() if old_members.get(key) != m],
        "remove": [key for key in old_members if key not in new_members],
        "set": {k: new[k] for k in sorted(fields) if k in new and old.get(k) != new[k]},
        "unset": sorted(k for k in fields if k not in new),
    }


def _by_id(members: list) -> dict[int, Any]:
    # Made at C speed: dict(zip(map(...))) runs no Python code per member.
    return dict(zip(map(id, members), members, strict=True))


def apply_delta(old: dict, delta: Any) -> dict:
    """``old`` with ``delta`` applied (members kept in the controller's order: by address);
    NetworkConfigError if the delta is not one."""
    try:
        put = {m["identity"]: m for m in delta["put"]}
        removed = set(delta["remove"]) | set(put)
        document = {k: v for k, v in old.items() if k not in delta["unset"]}
        document.update(delta["set"])
        members = [m for m in old.get("members", []) if m["identity"] not in removed]
        members += put.values()
        members.sort(key=lambda m: m["identity"])
    except (KeyError, TypeError, AttributeError):
        raise NetworkConfigError("config delta is malformed") from None
    document["members"] = members
    return document


def sign_delta(old: dict, new: dict, whole: ConfigAnswer) -> ConfigDelta:
    """The delta from ``old`` to ``new``, carrying ``whole``'s signature (of ``new``)."""
    changes = canonical(delta_between(old, new))
    return ConfigDelta(whole.network_id, old.get("revision", 0), changes, whole.signature or b"")


def verify_delta(message: ConfigDelta, controller: Identity, network_id: str, base: dict,
                 base_config: NetworkConfig) -> Verified:
    """The new config from a delta to the document ``base`` (parsed as ``base_config``), if
    the controller signed the result. Only the members that changed are parsed again."""
    try:
        changes = json.loads(message.changes)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NetworkConfigError("config delta is not JSON") from None
    document = apply_delta(base, changes)
    whole = ConfigAnswer(network_id, canonical(document), message.signature)
    reuse = {raw["identity"]: (raw, member)
             for raw, member in zip(base.get("members", []), base_config.members, strict=False)}
    return verify_answer(whole, controller, network_id, reuse)
