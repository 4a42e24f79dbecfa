"""Every reason the core drops a datagram or a packet, with what it means: one registry, which
docs/PROTOCOL.md ("Drops") and the code are tested against (tests/unit/test_drops.py).

Datagrams: every datagram the binder delivers is either accepted (authenticated) or counted
once under one of DATAGRAM_DROPS (``NodeCore.drops``), so the two add up to what arrived.
Packets: IP packets from the taps, and what an accepted datagram carried, refused under one of
PACKET_DROPS (``NodeCore.packet_drops``).
"""

from __future__ import annotations

DATAGRAM_DROPS: dict[str, str] = {
    "truncated": "shorter than its message type",
    "unsupported_version": "another protocol version",
    "unknown_type": "a message type this version does not know",
    "unknown_session": "for a session or a handshake we do not have",
    "replayed": "a counter already seen, or older than the replay window",
    "expired_session": "its session is older than 180 s",
    "authentication_failed": "did not decrypt: forged or damaged",
    "handshake_malformed": "a handshake message of the wrong size",
    "handshake_bad_mac": "an initiation without a valid mac1",
    "cookie_required": "an initiation under load without a valid mac2: a cookie reply went back",
    "handshake_rate_limited": "over the per-source or the total rate of initiations",
    "handshake_queue_full": "64 initiations already waiting for their turn",
    "handshake_failed": "its Noise message did not verify",
    "handshake_replayed": "an initiation whose timestamp is not newer than the last one",
    "handshake_superseded": "a third initiation of one initiator waiting for its identity check",
    "identity_mismatch": "keys that differ from those known for its address",
    "identity_checks_full": "16 identity checks already running",
    "identity_checks_per_source": "2 identity checks already running for its source address",
    "unknown_peer_rate_limited": "over 5 new identities a second (a root or a controller; "
                                 "0.2 at other nodes), or 1 from one source address",
    "identity_check_late": "its identity check took longer than its initiator waits",
    "identity_check_failed": "its identity check failed",
    "too_many_peers": "4096 transient peers kept, and none idle long enough to make room",
    "endpoint_in_virtual_network": "from an address inside one of our own virtual networks",
    "relayed_not_from_root": "relayed by a peer that is not one of our roots",
    "cookie_reply_malformed": "a cookie reply of the wrong size",
    "cookie_reply_invalid": "a cookie reply that did not decrypt",
}

PACKET_DROPS: dict[str, str] = {
    "unknown_network": "from the tap of a network the core does not have",
    "outbound_malformed": "from a tap, not an IPv4 or IPv6 packet",
    "no_route": "no member or route of the network has its destination",
    "oversize": "larger than the network's MTU",
    "queue_full": "256 packets already waiting for the peer's session",
    "queue_dropped_unreachable": "waited for a peer that stayed unreachable for 30 s",
    "source_not_allowed": "from an address its sender may not send from",
    "inner_malformed": "inside an accepted datagram, not a well-formed IP packet",
    "control_malformed": "a control message that does not parse, of a kind we do not know, "
                         "or with a field missing or of the wrong type",
    "control_too_large": "a control message too large even for chunks",
    "path_refused": "accepted, but its path is not kept (unknown socket, or inside a network)",
    "relay_refused": "asked to relay, and we are not a root",
    "relay_no_destination": "asked to relay to a peer we have no session with",
    "relay_truncated": "asked to relay a frame with no datagram behind its address",
    "relay_unavailable": "to a peer reached through a root that is not connected",
    "too_big_relayed": "over 1383 bytes for a peer reached through a root and not allowed "
                       "to be cut into IPv4 fragments: its sender is told \"too big\" (ICMP)",
    "whois_refused": "a look-up we do not answer (not a root, or about a stranger's peer)",
    "whois_answer_invalid": "a look-up answer whose identity does not match its address",
    "introduction_not_from_root": "an introduction from a peer that is not one of our roots",
    "introduction_invalid": "an introduction whose identity does not parse",
    "address_query_refused": "a where-do-you-see-me question from a peer in none of our networks",
    "local_endpoints_refused": "a peer's own addresses from a peer in none of our networks",
    "local_endpoints_invalid": "a peer's own addresses that do not parse as ip/port",
    "local_endpoints_too_often": "a peer's own addresses with more new ones than 16 a minute "
                                 "(ignored: each new one is probed)",
    "birthday_refused": "a request for birthday probes from a stranger or a root, while we "
                        "reach the peer directly, to an endpoint not ours, or while our own "
                        "NAT maps per destination",
    "birthday_not_observed": "a request for birthday probes at an address no root or "
                             "controller saw the peer at",
    "birthday_too_often": "a request for birthday probes sooner after the peer's last than "
                          "its backoff allows (1.5 s, doubling), or while we probe for 4 others",
    "chunk_malformed": "a chunk with an impossible index, count or size",
    "chunk_memory_full": "no room left to reassemble chunked messages (16 MiB in all)",
    "chunked_message_superseded": "a peer's newer chunked message took its oldest one's place",
    "chunked_message_incomplete": "a chunked message whose missing chunks never came",
}
