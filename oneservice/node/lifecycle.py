"""A peer's lifecycle as an explicit table (pure): its states, the events that move it, and
what each transition sends. The peer machine (node/machine.py) keeps each peer's state, looks
each event up here, does what it says and stores the next state; every change of a peer's
sessions or of our handshake with it goes through an event, and every state x event pair is in
the table, so nothing happens by omission (tests/unit/test_lifecycle.py).
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    IDLE = "idle"  # no session, no handshake in flight: new, or after a goodbye
    HANDSHAKING = "handshaking"  # our initiation in flight, no session yet
    UNREACHABLE = "unreachable"  # handshaking for longer than HANDSHAKE_GIVE_UP_S
    CONNECTED = "connected"  # a session we send on
    REKEYING = "rekeying"  # a session, and its successor's handshake in flight


class Event(Enum):
    NEED = "need"  # something to send (or a member to reach) and no session that may carry it
    REKEY_DUE = "rekey_due"  # sending on a session older than REKEY_AFTER_S
    RETRY_DUE = "retry_due"  # the timer: a handshake unanswered for its retry interval
    RESPONSE = "response"  # our initiation was answered: a new session (we initiated)
    CONFIRMED = "confirmed"  # the peer used the session of an initiation we answered
    EXPIRED = "expired"  # the session we send on is older than REJECT_AFTER_S
    GOODBYE = "goodbye"  # the peer said it is leaving (authenticated)
    GIVE_UP = "give_up"  # the timer: our handshake unanswered for HANDSHAKE_GIVE_UP_S
    ABANDON = "abandon"  # nothing needs our handshake in flight any more (not retried)
    REMOVED = "removed"  # no longer a peer of ours (left every network, forged, idle stranger)
    ANSWERED = "answered"  # we answered its initiation: a session it has not used yet


class Send(Enum):
    """What a transition does, in order. Initiations go at most once per HANDSHAKE_RETRY_S
    whatever the table says (the core's rate guard), and only over paths the peer has."""

    INITIATION = "initiation"  # a new handshake on every path (the working one, rekeying)
    DROP_QUEUE = "drop_queue"  # what waited for an unreachable peer is dropped, counted
    QUEUE = "queue"  # what waited goes now on the new session
    QUEUE_OR_CONFIRM = "queue_or_confirm"  # as QUEUE; with nothing waiting, an empty packet
    # tells the responder at once that we have the session (it sends on it only then)
    END_CURRENT = "end_current"  # the session we sent on is over
    END_SESSIONS = "end_sessions"  # every session ends; no path is trusted until it speaks
    ABANDON_HANDSHAKE = "abandon_handshake"  # our initiation in flight is dropped (a late
    # answer is an unknown index)
    FORGET = "forget"  # every session and our handshake end; the registry forgets the peer


S, E = State, Event
_NOTHING: tuple[Send, ...] = ()
_INITIATE = (Send.INITIATION,)
_ABANDON = (Send.ABANDON_HANDSHAKE,)
WITH_HANDSHAKE = frozenset({S.HANDSHAKING, S.UNREACHABLE, S.REKEYING})
WITH_SESSION = frozenset({S.CONNECTED, S.REKEYING})

# (state, event) -> (next state, what is sent). Next states are where the peer is once the
# sends are done (an initiation that cannot leave, for want of a path, leaves it where it was).
TABLE: dict[tuple[State, Event], tuple[State, tuple[Send, ...]]] = {
    (S.IDLE, E.NEED): (S.HANDSHAKING, _INITIATE),
    (S.IDLE, E.REKEY_DUE): (S.IDLE, _NOTHING),  # no session to renew
    (S.IDLE, E.RETRY_DUE): (S.HANDSHAKING, _INITIATE),  # a member is always tried
    (S.IDLE, E.RESPONSE): (S.IDLE, _NOTHING),  # no handshake of ours: dropped before
    (S.IDLE, E.CONFIRMED): (S.CONNECTED, (Send.QUEUE,)),
    (S.IDLE, E.EXPIRED): (S.IDLE, _NOTHING),
    (S.IDLE, E.GOODBYE): (S.IDLE, (Send.END_SESSIONS,)),
    (S.HANDSHAKING, E.NEED): (S.HANDSHAKING, _INITIATE),  # again, if the last is a while ago
    (S.HANDSHAKING, E.REKEY_DUE): (S.HANDSHAKING, _NOTHING),
    (S.HANDSHAKING, E.RETRY_DUE): (S.HANDSHAKING, _INITIATE),
    (S.HANDSHAKING, E.RESPONSE): (S.CONNECTED, (Send.QUEUE_OR_CONFIRM,)),
    (S.HANDSHAKING, E.CONFIRMED): (S.REKEYING, (Send.QUEUE,)),  # its handshake crossed ours
    (S.HANDSHAKING, E.EXPIRED): (S.HANDSHAKING, _NOTHING),
    (S.HANDSHAKING, E.GOODBYE): (S.HANDSHAKING, (Send.END_SESSIONS,)),
    (S.UNREACHABLE, E.NEED): (S.UNREACHABLE, _INITIATE),  # traffic: try now, not in 5 s
    (S.UNREACHABLE, E.REKEY_DUE): (S.UNREACHABLE, _NOTHING),
    (S.UNREACHABLE, E.RETRY_DUE): (S.UNREACHABLE, (Send.DROP_QUEUE, Send.INITIATION)),
    (S.UNREACHABLE, E.RESPONSE): (S.CONNECTED, (Send.QUEUE_OR_CONFIRM,)),
    (S.UNREACHABLE, E.CONFIRMED): (S.REKEYING, (Send.QUEUE,)),
    (S.UNREACHABLE, E.EXPIRED): (S.UNREACHABLE, _NOTHING),
    (S.UNREACHABLE, E.GOODBYE): (S.UNREACHABLE, (Send.END_SESSIONS,)),
    (S.CONNECTED, E.NEED): (S.REKEYING, _INITIATE),  # expired, not yet ended by the timer
    (S.CONNECTED, E.REKEY_DUE): (S.REKEYING, _INITIATE),
    (S.CONNECTED, E.RETRY_DUE): (S.CONNECTED, _NOTHING),  # nothing in flight to retry
    (S.CONNECTED, E.RESPONSE): (S.CONNECTED, _NOTHING),
    (S.CONNECTED, E.CONFIRMED): (S.CONNECTED, (Send.QUEUE,)),  # the peer renewed it
    (S.CONNECTED, E.EXPIRED): (S.HANDSHAKING, (Send.END_CURRENT, Send.INITIATION)),
    (S.CONNECTED, E.GOODBYE): (S.IDLE, (Send.END_SESSIONS,)),
    (S.REKEYING, E.NEED): (S.REKEYING, _INITIATE),
    (S.REKEYING, E.REKEY_DUE): (S.REKEYING, _NOTHING),  # already under way
    (S.REKEYING, E.RETRY_DUE): (S.REKEYING, _INITIATE),
    (S.REKEYING, E.RESPONSE): (S.CONNECTED, (Send.QUEUE_OR_CONFIRM,)),
    (S.REKEYING, E.CONFIRMED): (S.REKEYING, (Send.QUEUE,)),
    (S.REKEYING, E.EXPIRED): (S.HANDSHAKING, (Send.END_CURRENT, Send.INITIATION)),
    (S.REKEYING, E.GOODBYE): (S.HANDSHAKING, (Send.END_SESSIONS,)),
    (S.IDLE, E.GIVE_UP): (S.IDLE, _NOTHING),
    (S.HANDSHAKING, E.GIVE_UP): (S.UNREACHABLE, _NOTHING),  # its queue goes at the next retry
    (S.UNREACHABLE, E.GIVE_UP): (S.UNREACHABLE, _NOTHING),
    (S.CONNECTED, E.GIVE_UP): (S.CONNECTED, _NOTHING),
    (S.REKEYING, E.GIVE_UP): (S.REKEYING, _NOTHING),  # a session still carries: reachable
    (S.IDLE, E.ABANDON): (S.IDLE, _NOTHING),
    (S.HANDSHAKING, E.ABANDON): (S.IDLE, _ABANDON),
    (S.UNREACHABLE, E.ABANDON): (S.IDLE, _ABANDON),
    (S.CONNECTED, E.ABANDON): (S.CONNECTED, _NOTHING),
    (S.REKEYING, E.ABANDON): (S.CONNECTED, _ABANDON),
    **{(state, E.REMOVED): (S.IDLE, (Send.FORGET,)) for state in S},
    **{(state, E.ANSWERED): (state, _NOTHING) for state in S},  # not used yet: nothing changes
}


def without_handshake(state: State) -> State:
    """Where a transition that wanted an initiation leaves the peer when none could leave (no
    path to send it on)."""
    return S.CONNECTED if state is S.REKEYING else S.IDLE if state in WITH_HANDSHAKE else state


def transition(state: State, event: Event) -> tuple[State, tuple[Send, ...]]:
    return TABLE[(state, event)]
