"""Whether the node uses its C extensions: one choice, made at import, for the data path
(``oneservice._datapath``: the cipher in node/aead.py, the TUN offloads in offload.py) and
for the handshake's primitives (``oneservice._primitives``: primitives.py) alike.

The extensions are built by pip when gcc and OpenSSL's headers are there. Without them, or
with ``ONESERVICE_DATAPATH=python`` in the environment, the pure-Python twins run: the same
bytes, only slower and, for the primitives, with ``cryptography`` loaded. The node logs
which at start."""

from __future__ import annotations

import os
from types import ModuleType

# Set to "python" to use the pure-Python path even where the extension is built.
VARIABLE = "ONESERVICE_DATAPATH"


def load() -> tuple[ModuleType | None, ModuleType | None, str]:
    """The two extensions (None: the pure-Python path) and a line for the log saying which.
    Both or neither: they are built together, and one choice keeps the log line true."""
    if os.environ.get(VARIABLE, "") == "python":
        return None, None, f"pure Python ({VARIABLE}=python)"
    try:
        from . import _datapath, _primitives
    except ImportError as exc:
        return None, None, f"pure Python (the C extension is not built: {exc})"
    return _datapath, _primitives, f"C extension ({_datapath.OPENSSL_VERSION})"


EXTENSION, PRIMITIVES, DESCRIPTION = load()
