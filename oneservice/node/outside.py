"""Where the outside sees us on each uplink socket, as our roots report it (pure).

A root's answer to our probe says which endpoint our datagram came from. Behind a NAT that
keeps one mapping for every destination, every root sees the same endpoint; behind one that
gives each destination its own port (a "hard" NAT, as carriers' are), each root sees another
port at the same address. So each root's view is kept apart:

- what members are told (``public``) is one root's view, and it changes only when a root's
  own view of us moved (a redial, a router that restarted), never because two roots see two
  ports of a hard NAT (taking each answer as news made such a node tell every member it had
  moved, and probe every peer, at each root's answer);
- two roots that see one address at two ports prove a hard NAT, two that see the same
  endpoint prove an easy one, whatever its port (``varies``). With one view there is no proof;
- a root that sees our own address (one on our LAN, or on a routed network) is on our side of
  any NAT: members are told what a root outside sees, when one does, whichever answered first.
"""

from __future__ import annotations

# Views kept per socket (one per root; a node has a handful of roots).
MAX_VIEWS = 16


def _ip(endpoint: str) -> str:
    return endpoint.rpartition("/")[0]


class OutsideViews:
    def __init__(self) -> None:
        self.public: dict[int, str] = {}  # binder socket id -> "ip/port" we tell members
        self._views: dict[int, dict[str, str]] = {}  # socket -> root address -> "ip/port"
        # What the views last proved of the NAT on a socket (varies, _prove).
        self._proven: dict[int, bool] = {}
        # Per socket: which root's view is told, and whether it is our own address.
        self._told_by: dict[int, tuple[str, bool]] = {}
        self.changes = 0  # times the told endpoint moved after the first (publicEndpointChanges)

    def seen(self, socket_id: int, root: str, endpoint: str, inside: bool) -> bool:
        """A root saw us over this socket at ``endpoint`` (``inside``: our own address). True
        when what members are told changed: the first view, the first from outside after
        views from inside, or a root's view that moved from where that root saw us before
        (to another address; or to another port, unless roots disagree on ports, as they do
        behind a hard NAT). A view from inside never replaces one from outside."""
        varies = self.varies(socket_id)  # (as proven before this view)
        views = self._views.setdefault(socket_id, {})
        before, told = views.pop(root, None), self.public.get(socket_id)
        views[root] = endpoint  # (last in order: the oldest view goes first below)
        if len(views) > MAX_VIEWS:
            del views[next(iter(views))]
        teller, told_inside = self._told_by.get(socket_id, (None, False))
        if told is None or (told_inside and not inside):
            moved = endpoint != told
        elif inside != told_inside:
            # The root whose outside view is told now sees our own address: no NAT between
            # us any more (the uplink got a public address). Another root's does not count.
            moved = root == teller
        else:
            moved = (before is not None and before != endpoint and endpoint != told
                     and (_ip(endpoint) != _ip(told) or not varies))  # fmt: skip
            self.changes += moved
        if moved:
            self.public[socket_id] = endpoint
            self._told_by[socket_id] = (root, inside)
        self._prove(socket_id)
        return moved

    def varies(self, socket_id: int) -> bool | None:
        """Whether our NAT on this socket gives each destination its own port: True when two
        roots saw us at one address at different ports, False when two saw the same
        endpoint, None while no two views of one address were compared."""
        return self._proven.get(socket_id)

    def _prove(self, socket_id: int) -> None:
        """Compare the views of the told address. With fewer than two of them (a redial that
        only one root has seen yet) the last proof stands: a NAT that readdresses stays what
        it was."""
        told = _ip(self.public[socket_id])
        at_told = [e for e in self._views[socket_id].values() if _ip(e) == told]
        if len(at_told) >= 2:
            self._proven[socket_id] = len(set(at_told)) > 1

    def forget(self, socket_id: int) -> None:
        """The socket is gone, and with it what anyone saw of it."""
        self.public.pop(socket_id, None)
        self._views.pop(socket_id, None)
        self._proven.pop(socket_id, None)
        self._told_by.pop(socket_id, None)
