"""pyroute2's IPRoute and rtnetlink parser, without the rest of pyroute2 (Linux).

pyroute2's package ``__init__`` imports every module it has (NDB, IPDB, conntrack, nl80211,
ipset, plan9, ...): 13 MB of an idle node's memory for classes it never uses. When nothing has
imported pyroute2 yet, its package is registered here without running that ``__init__``, so
importing the three submodules below loads only what they need (~6.5 MB). Anything that
imports pyroute2 in full first is simply used as it is.
"""

from __future__ import annotations

import importlib.util
import sys


def _register_package_without_its_init() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the imports below say so
    sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)


_register_package_without_its_init()

from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl.marshal import MarshalRtnl  # noqa: E402

# What code elsewhere may take from the package itself.
for _name, _value in (("IPRoute", IPRoute), ("NetlinkError", NetlinkError)):
    if not hasattr(sys.modules["pyroute2"], _name):
        setattr(sys.modules["pyroute2"], _name, _value)

__all__ = ["IPRoute", "MarshalRtnl", "NetlinkError"]
