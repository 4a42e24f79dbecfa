"""What changed in the OS, as the change monitor reports it: typed, one class per kind, and
the few questions its subscribers ask of a burst of them (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from ..records import record


@record
class LinkChange:
    """A link appeared, changed or (``deleted``) went away."""

    index: int
    deleted: bool = False


@record
class AddressChange:
    index: int


@record
class RouteChange:
    """``ours``: carries our route protocol (oneservice/marks.py)."""

    ours: bool
    removed: bool


@record
class RuleChange:
    """``ours``: at one of our rule priorities (oneservice/marks.py)."""

    ours: bool
    removed: bool


@record
class Unknown:
    """Events were lost (the kernel's buffer overflowed) or could not be read, or the source
    does not say what changed (the macOS routing socket): anything may have."""


@record
class Poll:
    """No event: the periodic look that catches what events missed (and all there is where
    the OS gives no events)."""


Change = LinkChange | AddressChange | RouteChange | RuleChange | Unknown | Poll


def worth_telling(change: Change) -> bool:
    """Our own routes and rules appearing are our own writes: nobody needs to hear of them."""
    return not (isinstance(change, RouteChange | RuleChange) and change.ours
                and not change.removed)  # fmt: skip


def deleted_links(changes: Iterable[Change]) -> frozenset[int]:
    return frozenset(c.index for c in changes if isinstance(c, LinkChange) and c.deleted)


def interfaces_may_differ(changes: Iterable[Change]) -> bool:
    """Links, addresses, or another program's routes (the default routes' metrics rank the
    uplinks): the interfaces must be read again."""
    return any(
        isinstance(c, LinkChange | AddressChange | Unknown | Poll)
        or (isinstance(c, RouteChange) and not c.ours)
        for c in changes
    )


def others_routing_changed(changes: Iterable[Change]) -> bool:
    """Another program's routes or rules moved: paths may now leave another way (or not at
    all), and another VPN's routes may beat ours."""
    return any(
        isinstance(c, Unknown) or (isinstance(c, RouteChange | RuleChange) and not c.ours)
        for c in changes
    )


def own_routing_removed(changes: Iterable[Change]) -> bool:
    """A route or rule of ours is gone (by us, or behind our back): routing compares the
    kernel with its plan again."""
    return any(
        isinstance(c, Unknown)
        or (isinstance(c, RouteChange | RuleChange) and c.ours and c.removed)
        for c in changes
    )
