"""The binder's sockets as the peer layer sees them: one home, written by the binder only.

The node core (sans-I/O) reads it to know which sockets exist, their address family and which
uplink to prefer; the binder keeps it in step as it opens and closes sockets and as default
routes or the user's uplink metrics change, then says so (its events, NodeCore.socket_up ...).
A simulator or benchmark without a binder writes it as the binder would.
"""

from __future__ import annotations


class UplinkTable:
    def __init__(self) -> None:
        self.families: dict[int, int] = {}  # socket id -> address family
        # Socket id -> rank (lower first): the user's metric for the interface, else its
        # default route's metric.
        self.ranks: dict[int, int] = {}
        self.rank_changes = 0  # counts changes of the ranks (a reader acts only on news)

    def opened(self, socket_id: int, family: int, rank: int = 0) -> None:
        self.families[socket_id] = family
        self.rank(socket_id, rank)

    def rank(self, socket_id: int, rank: int) -> None:
        if self.ranks.get(socket_id) != rank:
            self.ranks[socket_id] = rank
            self.rank_changes += 1

    def closed(self, socket_id: int) -> None:
        self.families.pop(socket_id, None)
        if self.ranks.pop(socket_id, None) is not None:
            self.rank_changes += 1
