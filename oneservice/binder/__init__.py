"""The physical side: one UDP socket per physical interface, pinned there, tracked live."""

from __future__ import annotations

import sys
from types import ModuleType


def platform_backend() -> ModuleType:
    """The per-OS module (same function names in each) for the running system."""
    if sys.platform.startswith("linux"):
        from . import linux

        return linux
    if sys.platform == "darwin":
        from . import darwin

        return darwin
    if sys.platform == "win32":
        from . import windows

        return windows
    raise RuntimeError(f"unsupported platform {sys.platform!r}: Linux, macOS or Windows needed")
