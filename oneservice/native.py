"""Whether the data path uses its C extension (``oneservice._datapath``): one choice, made at
import, for the cipher (node/aead.py) and the TUN offloads (offload.py) alike.

The extension is built by pip when gcc and OpenSSL's headers are there. Without it, or with
``ONESERVICE_DATAPATH=python`` in the environment, the pure-Python twins run: the same bytes,
only slower. The node logs which one at start."""

from __future__ import annotations

import os
from types import ModuleType

# Set to "python" to use the pure-Python path even where the extension is built.
VARIABLE = "ONESERVICE_DATAPATH"


def load() -> tuple[ModuleType | None, str]:
    """The extension (None: the pure-Python path) and a line for the log saying which."""
    if os.environ.get(VARIABLE, "") == "python":
        return None, f"pure Python ({VARIABLE}=python)"
    try:
        from . import _datapath
    except ImportError as exc:
        return None, f"pure Python (the C extension is not built: {exc})"
    return _datapath, f"C extension ({_datapath.OPENSSL_VERSION})"


EXTENSION, DESCRIPTION = load()
