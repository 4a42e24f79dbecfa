"""Network configs signed by their controller: one format, one place that signs and checks.

A config travels as a ConfigAnswer (messages.py): the config document as canonical JSON
bytes, and the controller's Ed25519 signature over SIGNATURE_CONTEXT + those bytes.
"""

from __future__ import annotations

import json

from ..identity import Identity
from ..messages import ConfigAnswer
from .config import NetworkConfig, NetworkConfigError, parse_network

SIGNATURE_CONTEXT = b"oneservice network config v1\0"
STATUS_ACCESS_DENIED = "ACCESS_DENIED"
STATUS_NOT_FOUND = "NOT_FOUND"
ERROR_STATUSES = (STATUS_ACCESS_DENIED, STATUS_NOT_FOUND)


def controller_address(network_id: str) -> str:
    """A network id is its controller's address followed by 6 hex digits."""
    return network_id[:10]


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sign_config(controller: Identity, document: dict) -> ConfigAnswer:
    blob = canonical(document)
    return ConfigAnswer(document["id"], blob, controller.sign(SIGNATURE_CONTEXT + blob))


def verify_config(message: ConfigAnswer, controller: Identity, network_id: str) -> NetworkConfig:
    """The config in a message, if the controller of ``network_id`` signed it; otherwise
    NetworkConfigError saying why."""
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
    config = parse_network(document, f"config of {network_id}", verify_identities=False)
    if config.id != network_id:
        raise NetworkConfigError(f"config is for {config.id}, not {network_id}")
    return config
