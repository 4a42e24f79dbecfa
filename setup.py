"""The C extensions (everything else is in pyproject.toml): the data path
(oneservice/datapath_c/, one file per job: datapath.h says which) and the handshake's
primitives (oneservice/_primitives.c), both over
the system's libcrypto. Optional: without gcc or OpenSSL's headers the install goes on, and
the node uses the pure-Python twins (oneservice/node/aead.py, oneservice/primitives.py) and
says so in its log. Also glibc's allocator settings (oneservice/_allocator.c, for memory.py;
without it, ctypes makes the same calls)."""

from setuptools import Extension, setup

DATAPATH = ["module", "aead", "sealer", "opener", "segment", "merge", "runs"]

setup(
    ext_modules=[
        Extension(name, sources, depends=depends, libraries=["crypto"], optional=True)
        for name, sources, depends in (
            ("oneservice._datapath", [f"oneservice/datapath_c/{f}.c" for f in DATAPATH],
             ["oneservice/datapath_c/datapath.h"]),
            ("oneservice._primitives", ["oneservice/_primitives.c"], []),
        )
    ]
    + [Extension("oneservice._allocator", ["oneservice/_allocator.c"], optional=True)]
)
