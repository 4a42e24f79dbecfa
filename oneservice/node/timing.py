"""The core's clocks: how often it retries, probes, renews and forgets, each with its reason.
One home for the numbers that the peer machine, the paths, the schedule and the tests share."""

# Handshakes: retried quickly (a lost initiation should not cost a user seconds), abandoned
# when nobody answers for a while (the queue is then dropped, counted).
HANDSHAKE_RETRY_S = 1.0
HANDSHAKE_GIVE_UP_S = 30.0
UNREACHABLE_RETRY_S = 5.0
# Sessions are renewed after two minutes and refused after three (as WireGuard).
REKEY_AFTER_S = 120.0
REJECT_AFTER_S = 180.0
# Probing: fast while a peer carries traffic (fast, silent-failure detection), slow when idle.
ACTIVE_PROBE_INTERVAL_S = 1.0
# A full tunnel's gateway (set_watched) is probed twice as often: its silence is then noticed
# within a second (a probe interval and a probe timeout) even while nothing comes back.
WATCHED_PROBE_INTERVAL_S = 0.5
IDLE_PROBE_INTERVAL_S = 20.0
ACTIVE_WINDOW_S = 10.0
# An idle path needs one prober, not two: a side that heard the peer's probe (or anything)
# within half an idle interval skips its own, and looks again this long after the peer's
# next one is due, so that the peer's comes first and the two do not stay in step.
IDLE_PROBE_YIELD_S = 1.0
# A learned endpoint nobody heard from for this long is forgotten.
LEARNED_PATH_EXPIRY_S = 120.0
# Sending while the preferred path has been silent this long earns it an early probe.
QUIET_PROBE_S = 0.2
# A member's own addresses (LocalEndpoints): each new one is probed at once, so a member may
# make us probe at most this many new endpoints in a window (a roam or two, not a scan).
MAX_NEW_LOCAL_HINTS = 16
NEW_LOCAL_HINTS_WINDOW_S = 60.0
# Sending while no path works probes the peer's paths at most this often.
NO_PATH_PROBE_INTERVAL_S = 0.25
# No path working with the current session this long: a new handshake (the far end may have
# lost the session), for a peer that is needed (_needed). Longer than a roam's probes take,
# so a handover is left to them.
NO_PATH_HANDSHAKE_S = 1.5
# A member of a network of at most this many members (us aside) is reached at once and kept
# connected. In a bigger one only those needed are (traffic, gateways, roots); the rest when
# traffic goes to them or they reach us: handshakes to thousands at once, retried every
# second through a root, would flood the member, the root, and the members (ZeroTier and
# Tailscale connect on demand too).
EAGER_NETWORK_MEMBERS = 64
# Woken this much after a deadline, so that it has passed (float time, loop granularity).
DEADLINE_SLACK_S = 0.002
# Packets waiting for a session: enough for a TCP window's first burst, bounded for memory.
MAX_QUEUED_PACKETS = 256
# Nodes we never heard of (joiners at a controller, clients of a root): at most this many kept
# at once (what an initiation may cost before that: node/admission.py).
MAX_TRANSIENT_PEERS = 4096
# A transient peer (not a member, root or anyone we asked for) is forgotten when idle this long.
TRANSIENT_IDLE_S = 300.0
# With MAX_TRANSIENT_PEERS kept, the one idle longest makes room for a newcomer if it has been
# idle at least this long (one that is talking now is never pushed out).
TRANSIENT_EVICT_IDLE_S = 10.0
