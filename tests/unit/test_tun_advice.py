"""What the node says when /dev/net/tun cannot be opened: the cause at hand, and what to do."""

from __future__ import annotations

import errno
import os

import pytest

from oneservice.tap import tun_refused


@pytest.mark.parametrize(("code", "euid", "service", "says"), [
    (errno.EPERM, 0, True, "the service's device policy refuses it; the unit needs "
                           "DeviceAllow=/dev/net/tun rw"),
    (errno.EPERM, 0, False, "a device policy refuses it"),
    (errno.EACCES, 1000, False, "run as root"),
    (errno.ENOENT, 0, True, "modprobe tun"),
    (errno.ENODEV, 0, False, "modprobe tun"),
    (errno.EIO, 0, False, "(Input/output error)"),
])  # fmt: skip
def test_the_advice_fits_the_cause(code, euid, service, says):
    advice = tun_refused(OSError(code, os.strerror(code)), euid, service)
    assert advice.startswith("cannot open /dev/net/tun (") and says in advice
