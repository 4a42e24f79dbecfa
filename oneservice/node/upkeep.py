"""A peer's turn in the timer: what is due (retries, expiry, probes, forgetting) and when its
next turn comes. ``deadline`` and ``tick`` read the same fields by the same rules.
"""

from __future__ import annotations

import math

from .context import NodeContext
from .lifecycle import Event, State
from .peer import Peer, is_active, is_needed, is_wanted, probe_interval, window
from .timing import (
    ACTIVE_WINDOW_S,
    DEADLINE_SLACK_S,
    HANDSHAKE_GIVE_UP_S,
    HANDSHAKE_RETRY_S,
    IDLE_PROBE_INTERVAL_S,
    IDLE_PROBE_YIELD_S,
    LEARNED_PATH_EXPIRY_S,
    NO_PATH_HANDSHAKE_S,
    QUIET_PROBE_S,
    REJECT_AFTER_S,
    TRANSIENT_IDLE_S,
    UNREACHABLE_RETRY_S,
)


class Upkeep:
    def __init__(self, node: NodeContext) -> None:
        self.node = node

    def deadline(self, peer: Peer, now: float) -> float:
        """When tick next has work for this peer, by the same rules it applies."""
        current = peer.current
        forget = math.inf
        if not peer.keep:
            forget = max(peer.last_heard, peer.handshake_sent) + TRANSIENT_IDLE_S
            if current is None and peer.handshake is None:
                return forget + DEADLINE_SLACK_S
        times = [forget]
        # Relay paths are added in its turn (direct ones are tried first).
        reachable = peer.paths or (not peer.root and self.node.roots.connected())
        if peer.handshake is not None and not is_wanted(peer, now):
            times.append(peer.handshake_sent + HANDSHAKE_RETRY_S)  # when it is given up
        elif (peer.handshake is not None or current is None) and reachable and is_wanted(peer, now):
            waited = peer.handshake_sent + HANDSHAKE_RETRY_S - peer.handshake_started
            slow = peer.handshake is not None and waited > HANDSHAKE_GIVE_UP_S
            times.append(peer.handshake_sent + (UNREACHABLE_RETRY_S if slow else HANDSHAKE_RETRY_S))
        times += [p.last_received + LEARNED_PATH_EXPIRY_S for p in peer.paths.values() if p.learned]
        if current is not None:
            times.append(current.created_at + REJECT_AFTER_S)
            times.append(peer.next_probe)
            preferred = peer.preferred
            if preferred is None and peer.handshake is None and is_needed(peer, now):
                times.append(peer.no_path_since + NO_PATH_HANDSHAKE_S)
            if preferred is not None:
                times.append(preferred.dies_at(window(peer, now)))
                silence = self.silence_deadline(peer, now)
                if silence > now:
                    times.append(silence)
        return max(min(times) + DEADLINE_SLACK_S, now)

    def tick(self, peer: Peer, now: float) -> None:
        if not peer.keep:
            if now - max(peer.last_heard, peer.handshake_sent) > TRANSIENT_IDLE_S:
                self.node.registry.forget(peer, now)
                return
            if peer.current is None and peer.handshake is None:
                return  # it reached us once; it can reach us again
        self.node.paths.add_relay_paths(peer)
        if (peer.handshake is not None or peer.current is None) and not is_wanted(peer, now):
            if peer.handshake is not None and now - peer.handshake_sent >= HANDSHAKE_RETRY_S:
                self.node.machine.fire(peer, Event.ABANDON, now)  # nothing needs it: no retries
        elif peer.handshake is not None or peer.current is None:
            # Keep trying to reach every member wanted: quickly at first, then every few
            # seconds, dropping what waited for it (counted) once it is clearly unreachable.
            waited = now - peer.handshake_started if peer.handshake is not None else 0.0
            if waited > HANDSHAKE_GIVE_UP_S and peer.state is State.HANDSHAKING:
                self.node.machine.fire(peer, Event.GIVE_UP, now)
            interval = HANDSHAKE_RETRY_S if waited <= HANDSHAKE_GIVE_UP_S else UNREACHABLE_RETRY_S
            if now - peer.handshake_sent >= interval:
                self.node.machine.fire(peer, Event.RETRY_DUE, now)
        session = peer.current
        if session is not None and now - session.created_at > REJECT_AFTER_S:
            self.node.machine.fire(peer, Event.EXPIRED, now)
        for key, path in list(peer.paths.items()):
            if path.learned and now - path.last_received > LEARNED_PATH_EXPIRY_S:
                del peer.paths[key]
                if peer.preferred is path:
                    peer.preferred = None
        if (
            peer.preferred is None
            or not peer.preferred.alive(now, window(peer, now))
            or peer.current is None
        ):
            self.node.paths.reselect(peer, now)
        if (peer.current is not None and peer.preferred is None and peer.handshake is None
            and now - peer.no_path_since >= NO_PATH_HANDSHAKE_S
                and is_needed(peer, now)):  # fmt: skip
            # No path has worked with the session we send on for a while (probes had their
            # chance: a roam is over by now). The far end may have lost it (a restart; or a
            # second process with the same identity, a controller sharing its database, is
            # the one left): a new handshake on every path finds out, retried while none
            # answers.
            self.node.machine.fire(peer, Event.NEED, now)
        if peer.current is not None and now >= peer.next_probe:
            interval = probe_interval(peer, now)
            heard = self.idle_and_heard(peer, now, interval)
            if heard is not None:
                peer.next_probe = heard + interval + IDLE_PROBE_YIELD_S
            else:
                peer.next_probe = now + interval
                self.node.paths.probe(peer, now)
        elif peer.current is not None and self.gone_quiet(peer, now):
            # The peer was talking and has stopped while we still send: ask now rather than at
            # the next scheduled probe (a silent failure costs ~0.8 s instead of ~1.5 s).
            # One-way flows (nothing comes back anyway) keep the one-per-second probes.
            self.node.paths.probe(peer, now)

    @staticmethod
    def idle_and_heard(peer: Peer, now: float, interval: float) -> float | None:
        """When we last heard over an idle peer's preferred path, if that was recent enough
        to skip our own probe of it (the peer keeps probing: it is the one that hears less)."""
        path = peer.preferred
        if interval != IDLE_PROBE_INTERVAL_S or path is None or path.strict:
            return None
        return path.last_received if now - path.last_received < interval / 2 else None

    def silence_deadline(self, peer: Peer, now: float) -> float:
        """A peer carrying traffic is looked at again exactly when its path may have gone
        quiet or its probe timed out: a dead gateway is withdrawn in well under a second."""
        path = peer.preferred
        if path is None or peer.current is None or not is_active(peer, now):
            return math.inf
        if path.probe_outstanding():
            return path.unanswered_since + path.probe_timeout()
        return max(path.last_received, path.probe_sent) + QUIET_PROBE_S

    def gone_quiet(self, peer: Peer, now: float) -> bool:
        """Traffic both ways until just now, and then the path fell silent."""
        path = peer.preferred
        return (
            path is not None
            and now - peer.last_traffic < QUIET_PROBE_S
            and now - peer.last_data_received < ACTIVE_WINDOW_S
            and now - path.last_received > QUIET_PROBE_S
            and now - path.probe_sent > QUIET_PROBE_S
            and not path.probe_outstanding()
        )
