"""What roots tell, and what a node believes of what they tell (pure).

A root answers `whois` and introduces the two sides to each other (docs/PROTOCOL.md, "Roots
and relaying"). The core sends and receives those messages; the rules are here: whom a root
may tell about whom, which endpoints are told, and what an announcement (a whois answer or an
introduction) must be before a node acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..identity import Identity, IdentityError
from ..network.config import NetworkConfigError, parse_endpoint
from ..records import record
from .paths import DirectPath, Endpoint, Path

# Endpoints told about a node (whois answers, introductions, to its controller), and believed.
MAX_ADVERTISED_ENDPOINTS = 8


def may_tell(asker_networks: Iterable[str], target_networks: Iterable[str],
             target_findable: bool) -> bool:  # fmt: skip
    """Only about a node that shares a network with the asker, or that reached us (in none
    of our networks) to be found through us: nobody learns members' identities and endpoints
    by asking a node that merely knows them."""
    return target_findable or bool(set(asker_networks) & set(target_networks))


def advertised_endpoints(paths: Iterable[Path], now: float, window: float) -> list[str]:
    """Where a node is reachable directly ("ip/port"), from the paths that work now: each
    address once (several of our sockets may reach it), at most MAX_ADVERTISED_ENDPOINTS,
    never a relay path (a root is not an IP address, and nobody else could use it)."""
    found = dict.fromkeys(f"{p.endpoint[0]}/{p.endpoint[1]}" for p in paths
                          if isinstance(p, DirectPath) and p.alive(now, window))  # fmt: skip
    return list(found)[:MAX_ADVERTISED_ENDPOINTS]


@record
class Announcement:
    identity: Identity
    endpoints: tuple[Endpoint, ...]


def read_announcement(identity_text: str, endpoints: Iterable[str], own_address: str,
                      known: Callable[[str], Identity | None]) -> Announcement | None:  # fmt: skip
    """A node's identity and endpoints as a root announced them, if believable: the identity
    checks out against its address, it is not us, and it does not contradict the identity we
    hold for that address (``known(address)``). At most MAX_ADVERTISED_ENDPOINTS endpoints
    are kept."""
    try:
        identity = Identity.parse(identity_text).public()
        parsed = tuple(parse_endpoint(e, "endpoint")
                       for e in list(endpoints)[:MAX_ADVERTISED_ENDPOINTS])  # fmt: skip
    except (IdentityError, NetworkConfigError):
        return None
    held = known(identity.address)
    if identity.address == own_address or (held is not None and held != identity):
        return None
    return Announcement(identity, parsed)
