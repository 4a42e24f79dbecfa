"""Which identity holds each member address (pure).

A network's config is signed by its controller, which vouches for the identities of its
members within that network. Checking each one against its address (an scrypt run, ~40 ms and
16 MiB) would make joining a network of 1,000 members cost 40 s of CPU, at every start. So a
vouched identity is used as it is, as long as nothing contradicts it.

But an address names one node across every network, and the controller of another network
could list someone else's address with keys of its own choosing. So:

- An identity whose address was derived (a checked handshake, a root from local.conf, a root's
  announcement, or a check asked for here) beats any vouched one that differs: two different
  identities cannot both hash to one address, short of 2^40 scrypt runs.
- Two vouched identities that differ are both checked before the address goes to either;
  meanwhile a holder that is one of them keeps it, for the networks that list it.
- An identity whose check failed is forged: no network gets it.

A network gets a member only if the member's identity is the address's holder: its traffic
never goes to keys that another network chose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..identity import Identity
from ..records import record


@record
class Holder:
    identity: Identity
    verified: bool


@dataclass
class Verdict:
    """Address -> the identity that holds it; the identities to check (a dispute); and the
    (network id, address) claims refused, because another identity holds the address."""

    holders: dict[str, Identity] = field(default_factory=dict)
    to_check: list[Identity] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def choose_holders(
    claims: Iterable[tuple[str, Identity]],
    held: Callable[[str], Holder | None],
    held_key: Callable[[bytes], Holder | None],
    checked: Callable[[Identity], bool | None],
) -> Verdict:
    """``claims``: (network id, member identity) from every config. ``held``: who holds an
    address now, and whether it was checked; ``held_key``: the same by X25519 key (sessions
    are found by it, so a key is held by one identity too). ``checked``: True if an
    identity's address was derived and matches, False if it was derived and does not
    (forged), None if never derived."""
    by_address: dict[str, dict[Identity, list[str]]] = {}
    by_key: dict[bytes, set[Identity]] = {}
    for network_id, identity in claims:
        by_address.setdefault(identity.address, {}).setdefault(identity, []).append(network_id)
        by_key.setdefault(identity.x25519_public, set()).add(identity)

    def contested(identity: Identity) -> bool | None:
        """True: another identity claims or holds its address or key; None: one that was
        checked holds its key (it cannot be genuine and have a session)."""
        holder = held_key(identity.x25519_public)
        if holder is not None and holder.identity != identity:
            return None if holder.verified else True
        return len(by_key[identity.x25519_public]) > 1 or len(by_address[identity.address]) > 1

    verdict = Verdict()
    for address, claimed in by_address.items():
        holder = _holder(held(address), claimed, checked, contested, verdict.to_check)
        if holder is not None:
            verdict.holders[address] = holder
        verdict.refused += [(network_id, address) for identity, networks in claimed.items()
                            if identity != holder for network_id in networks]  # fmt: skip
    verdict.to_check = list(dict.fromkeys(verdict.to_check))
    return verdict


def _holder(current: Holder | None, claimed: dict[Identity, list[str]],
            checked: Callable[[Identity], bool | None],
            contested: Callable[[Identity], bool | None],
            to_check: list[Identity]) -> Identity | None:  # fmt: skip
    if current is not None and current.verified:
        # Checked already: a claim that differs cannot be genuine. None: no network lists it
        # (it is a peer for another reason, and stays one).
        return current.identity if current.identity in claimed else None
    candidates = [i for i in claimed if checked(i) is not False]
    proven = [i for i in candidates if checked(i)]
    if proven:
        return proven[0]
    verdicts = {i: contested(i) for i in candidates}
    candidates = [i for i in candidates if verdicts[i] is not None]
    disputed = [i for i in candidates if verdicts[i]]
    if not disputed:
        return candidates[0] if candidates else None  # vouched, and nothing says otherwise
    to_check += disputed  # checked before the address goes to any of them
    if current is not None and current.identity in candidates:
        return current.identity  # meanwhile it keeps what it had
    return None
