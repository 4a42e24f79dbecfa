"""Which sockets to open, close or readdress, given what we hold and what we want (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ..records import record
from .interfaces import Verdict


class SocketKey(NamedTuple):
    """Identifies the interface a socket is pinned to. The index is part of the key because a
    deleted and re-created interface keeps its name (and often its address) but not its index,
    and a socket pinned to the old index is dead."""

    index: int
    name: str
    family: int


@record
class SocketPlan:
    open: tuple[Verdict, ...]
    close: tuple[tuple[SocketKey, str], ...]  # key and the reason the socket goes away
    readdress: tuple[Verdict, ...]  # same interface, new addresses; socket kept


def plan_sockets(
    held: Mapping[SocketKey, tuple[str, ...]],
    verdicts: Iterable[Verdict],
    deleted_indexes: Iterable[int] = (),
    rebind_on_address_change: bool = False,
) -> SocketPlan:
    """Compare held sockets (key -> addresses) with the classifier's verdicts.

    ``deleted_indexes`` are interfaces the OS reported deleted since the last plan: their
    sockets are replaced even if an interface with the same index shows up again.
    ``rebind_on_address_change`` is for OSes that bind sockets to an address (Windows): a new
    address then needs a new socket rather than an update.
    """
    verdicts = list(verdicts)
    wanted = {
        SocketKey(v.index, v.name, v.family): v
        for v in verdicts
        if v.usable and v.family is not None
    }
    skipped = {(v.index, v.family): v.reason for v in verdicts if not v.usable}
    present = {v.index for v in verdicts}
    deleted = set(deleted_indexes)

    to_open: list[Verdict] = []
    to_close: list[tuple[SocketKey, str]] = []
    to_readdress: list[Verdict] = []
    for key, addresses in held.items():
        verdict = wanted.get(key)
        if key.index in deleted:
            to_close.append((key, "interface deleted"))
            if verdict is not None:
                to_open.append(verdict)
        elif verdict is None:
            to_close.append((key, _gone_reason(key, skipped, present)))
        elif verdict.addresses != addresses:
            if rebind_on_address_change:
                to_close.append((key, "address changed"))
                to_open.append(verdict)
            else:
                to_readdress.append(verdict)
    to_open.extend(v for key, v in wanted.items() if key not in held)
    return SocketPlan(tuple(to_open), tuple(to_close), tuple(to_readdress))


def _gone_reason(
    key: SocketKey, skipped: Mapping[tuple[int, int | None], str], present: set[int]
) -> str:
    reason = skipped.get((key.index, key.family)) or skipped.get((key.index, None))
    if reason is not None:
        return reason
    return "no usable address of this family left" if key.index in present else "interface gone"
