"""Virtual network devices: one TUN per joined network."""

from __future__ import annotations

# Names are this prefix plus the network id's last 10 hex digits (14 characters, under the
# 15-character limit). The binder never binds this prefix, whoever created the device.
TAP_NAME_PREFIX = "onet"


def tap_name(network_id: str) -> str:
    return TAP_NAME_PREFIX + network_id[-10:]


class TapError(Exception):
    """A virtual device could not be created or configured; the message says what to check."""
