"""A network's member rows as this controller last read them, brought up to date by reading
only the rows written since (the store counts every member write), and the config entries
made of them: what keeps a change to one member of a big network from costing a pass over
all of them, in the database or here.

Another controller process may share the store (PostgreSQL): what it writes is read like our
own writes. A deletion leaves no row to read: the counts the store gives with every read say
when rows are missing, and everything is read again then.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..network.config import Member, MemberIndex, NetworkConfigError, parse_endpoint, parse_member
from ..network.signed import canonical
from ..records import record

if TYPE_CHECKING:
    from .store import ControllerStore, MemberRow

# More changed rows than this at once, and the entries are sorted anew instead of being placed
# one by one.
MAX_ONE_BY_ONE = 64


class MemberMirror:
    """The rows of one network's members; the addresses they hold (authorized or not); and
    the rows changed since the config entries last took them (``take_changes``)."""

    def __init__(self) -> None:
        self.rows: dict[str, MemberRow] = {}
        # Assigned addresses, as numbers (version, int): a free one is found without making
        # an address object for every one taken.
        self.taken: Counter[tuple[int, int]] = Counter()
        self._seen = -1  # rows written up to this count are in
        self._changed: dict[str, MemberRow | None] = {}  # address -> row, or None: gone

    def update(self, store: ControllerStore, network_id: str) -> None:
        changes = store.member_changes(network_id, self._seen)
        self._apply(changes.rows)
        if changes.written < self._seen or changes.total != len(self.rows):
            # A row deleted (or the network made anew): read them all, and drop the rest.
            everything = store.member_changes(network_id, -1)
            present = {row.address for row in everything.rows}
            for address in [a for a in self.rows if a not in present]:
                self._set(address, None)
            self._apply(everything.rows)
            self._seen = max((row.changed for row in everything.rows), default=-1)

    def take_changes(self) -> dict[str, MemberRow | None]:
        """The rows changed since the last call (None: deleted)."""
        changed, self._changed = self._changed, {}
        return changed

    def _apply(self, rows: Iterable[MemberRow]) -> None:
        for row in rows:
            self._seen = max(self._seen, row.changed)
            if self.rows.get(row.address) != row:
                self._set(row.address, row)

    def _set(self, address: str, row: MemberRow | None) -> None:
        old = self.rows.pop(address, None)
        if old is not None:
            for number in _numbers(old.addresses):
                self.taken[number] -= 1
                if self.taken[number] <= 0:
                    del self.taken[number]
        if row is not None:
            self.rows[address] = row
            self.taken.update(_numbers(row.addresses))
        self._changed[address] = row


class ConfigEntries:
    """The members a network's config lists, by address: each entry as the config has it,
    parsed as every member will parse it, and as canonical bytes; all indexed against each
    other (no member twice, no address given to two), and kept in the config's order."""

    def __init__(self, local: tuple) -> None:
        self.local = local  # the network's local routes, which the entries' prefixes come from
        self._entries: dict[str, _Entry] = {}
        self._index = MemberIndex()
        # In the config's order (by address), kept so one at a time; None: to be sorted.
        self._order: tuple[list[str], list[dict], list[bytes]] | None = None

    def apply(self, rows: Iterable[tuple[str, MemberRow | None]], where: str) -> None:
        """Rows changed (None: deleted). NetworkConfigError if the result would list a member
        twice or an address twice: these entries are then not to be used again."""
        rows = list(rows)
        if len(rows) > MAX_ONE_BY_ONE:
            self._order = None  # sorting them all at once is cheaper
        for address, row in rows:  # what goes first: an address may pass to another member
            known = self._entries.get(address)
            if known is not None and (row is None or (known.identity, known.text)
                                      != (row.identity, row.document)):  # fmt: skip
                self._index.remove(self._entries.pop(address).member)
                self._placed(address, None)
        for address, row in rows:
            if row is None or not row.authorized or not row.identity:
                continue
            if address in self._entries:
                continue  # unchanged
            entry = _Entry.of(row.identity, row.document, self.local, where)
            self._index.add(entry.member, f"{where}: member {entry.member.address}")
            self._entries[address] = entry
            self._placed(address, entry)

    def ordered(self) -> tuple[list[dict], list[bytes]]:
        """The entries by address (the config's order: a new list, for the caller to keep),
        and their canonical bytes (to be used at once)."""
        if self._order is None:
            addresses = sorted(self._entries)
            chosen = [self._entries[address] for address in addresses]
            self._order = (addresses, [e.entry for e in chosen], [e.blob for e in chosen])
        return list(self._order[1]), self._order[2]

    def _placed(self, address: str, entry: _Entry | None) -> None:
        """One entry gone (None) or come, in the kept order."""
        if self._order is None:
            return
        addresses, entries, blobs = self._order
        at = bisect.bisect_left(addresses, address)
        if entry is None:
            del addresses[at], entries[at], blobs[at]
        else:
            addresses.insert(at, address)
            entries.insert(at, entry.entry)
            blobs.insert(at, entry.blob)


@record
class _Entry:
    """A stored member (identity, document text) as its config lists it: the entry, parsed,
    and as canonical bytes."""

    identity: str
    text: str
    entry: dict
    member: Member
    blob: bytes

    @classmethod
    def of(cls, identity: str, text: str, local: tuple, where: str) -> _Entry:
        document = json.loads(text)
        entry = {
            "identity": identity,
            "addresses": [_with_prefix(ip, local) for ip in document.get("ipAssignments", [])],
            # Filtered again: a database written before hints were checked may hold one that
            # would make every member's config fail to parse.
            "endpoints": [e for e in document.get("endpoints", []) if usable_endpoint(e)][:8],
        }
        member = parse_member(entry, f"{where}: member {identity[:10]}", verify=False)
        return cls(identity, text, entry, member, canonical(entry))


def usable_endpoint(text: Any) -> bool:
    try:
        parse_endpoint(text, "endpoint")
    except NetworkConfigError:
        return False
    return True


def _numbers(addresses: str) -> list[tuple[int, int]]:
    numbers = []
    for text in addresses.split():
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue  # not an address (an old database): holds none
        numbers.append((address.version, int(address)))
    return numbers


def _with_prefix(ip: str, local_routes: tuple) -> str:
    address = ipaddress.ip_address(ip)
    containing = [n for n in local_routes if n.version == address.version and address in n]
    prefix = max((n.prefixlen for n in containing), default=address.max_prefixlen)
    return f"{address}/{prefix}"
