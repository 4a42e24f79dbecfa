"""The C extension of the data path (oneservice/_datapath.c); everything else is in
pyproject.toml. Optional: without gcc or OpenSSL's headers the install goes on, and the node
uses the pure-Python path (oneservice/node/aead.py) and says so in its log."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "oneservice._datapath",
            ["oneservice/_datapath.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
