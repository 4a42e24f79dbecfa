"""Virtual network devices: one TUN per joined network."""

from __future__ import annotations

import errno

# Names are this prefix plus the network id's last 10 hex digits (14 characters, under the
# 15-character limit). The binder never binds this prefix, whoever created the device.
TAP_NAME_PREFIX = "onet"


def tap_name(network_id: str) -> str:
    return TAP_NAME_PREFIX + network_id[-10:]


class TapError(Exception):
    """A virtual device could not be created or configured; the message says what to check."""


def tun_refused(error: OSError, euid: int, service_manager: bool) -> str:
    """Why /dev/net/tun could not be opened, and what to do, for the error the OS gave.
    ``service_manager``: we run as a systemd service (whose device policy may refuse it)."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOENT:
        return (f"cannot open /dev/net/tun ({reason}): there is no TUN device here; load the "
                "tun module (modprobe tun), or give the container /dev/net/tun")  # fmt: skip
    if error.errno in (errno.ENODEV, errno.ENXIO):
        return f"cannot open /dev/net/tun ({reason}): load the tun module (modprobe tun)"
    if error.errno in (errno.EPERM, errno.EACCES):
        if euid != 0:
            return (f"cannot open /dev/net/tun ({reason}): run as root (or with "
                    "CAP_NET_ADMIN and access to /dev/net/tun)")  # fmt: skip
        if service_manager:
            return (f"cannot open /dev/net/tun ({reason}): the service's device policy refuses "
                    "it; the unit needs DeviceAllow=/dev/net/tun rw (and no PrivateDevices=yes)")
        return (f"cannot open /dev/net/tun ({reason}): a device policy refuses it (a container "
                "or a cgroup's device rules): allow /dev/net/tun there")  # fmt: skip
    return f"cannot open /dev/net/tun ({reason})"
