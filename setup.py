"""The C extensions (everything else is in pyproject.toml): the data path
(oneservice/_datapath.c) and the handshake's primitives (oneservice/_primitives.c), both over
the system's libcrypto. Optional: without gcc or OpenSSL's headers the install goes on, and
the node uses the pure-Python twins (oneservice/node/aead.py, oneservice/primitives.py) and
says so in its log."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(name, [source], libraries=["crypto"], optional=True)
        for name, source in (
            ("oneservice._datapath", "oneservice/_datapath.c"),
            ("oneservice._primitives", "oneservice/_primitives.c"),
        )
    ]
)
