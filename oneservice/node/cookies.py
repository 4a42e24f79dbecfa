"""MACs and cookies on handshake initiations, after WireGuard's (whitepaper 5.4.4 to 5.4.7).

Every initiation ends in two 16-byte MACs:

    mac1 = MAC(HASH("mac1----" || responder's X25519 public key), initiation up to mac1)
    mac2 = MAC(cookie, initiation up to mac2), or 16 zero bytes without a cookie

mac1 proves the sender knows whom it is talking to: anything else is dropped for the price of
one keyed BLAKE2s, before any Diffie-Hellman. Under load the responder also wants a valid
mac2: the cookie is a MAC of the sender's IP address and port under a secret that changes
every two minutes, and it is handed out only in a cookie reply sent *to that address*. A
spoofed source never sees its cookie, so a flood from made-up addresses costs one MAC and one
small reply each, never a handshake.

The cookie reply travels encrypted (ChaCha20-Poly1305 under HASH("cookie--" || responder's
public key), with the initiation's mac1 as associated data, so only the initiator that sent
that initiation can use it). WireGuard uses XChaCha20 with a 24-byte nonce; neither
OpenSSL's EVP nor `cryptography` has XChaCha20, so the nonce here is 12 random bytes (the
key is fixed per responder, so a counter would repeat across restarts; 2^48 replies before
a random nonce is likely to repeat).

Pure computation: time comes in as ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Callable

from ..primitives import aead_open, aead_seal
from ..randomness import RandomPool

MAC_LEN = 16
COOKIE_LEN = 16
NONCE_LEN = 12
MACS_LEN = 2 * MAC_LEN
COOKIE_SECRET_LIFETIME_S = 120.0
# A cookie is used this long after it arrived: a little less than the secret lives.
COOKIE_LIFETIME_S = COOKIE_SECRET_LIFETIME_S - 5.0
_NO_MAC2 = bytes(MAC_LEN)


def _hash(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def mac(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, key=key, digest_size=MAC_LEN).digest()


class KeyedMac:
    """``mac`` under one key, its key block hashed once: a copy of that state per message
    (about a quarter of a MAC's cost, on each of a flood's initiations)."""

    __slots__ = ("_state",)

    def __init__(self, key: bytes) -> None:
        self._state = hashlib.blake2s(key=key, digest_size=MAC_LEN)

    def __call__(self, data: bytes) -> bytes:
        state = self._state.copy()
        state.update(data)
        return state.digest()


def mac1_key(static_public: bytes) -> bytes:
    return _hash(b"mac1----" + static_public)


def cookie_key(static_public: bytes) -> bytes:
    return _hash(b"cookie--" + static_public)


def with_macs(body: bytes, mac1: bytes, cookie: bytes | None) -> bytes:
    """An initiation on the wire: its body, mac1, and mac2 (zeros without a cookie)."""
    signed = body + mac1
    return signed + (mac(cookie, signed) if cookie is not None else _NO_MAC2)


def open_cookie(key: bytes, mac1: bytes, nonce: bytes, sealed: bytes) -> bytes | None:
    """The cookie in a reply to our initiation with this mac1; None if it is not one."""
    cookie = aead_open(key, nonce, sealed, mac1)
    return cookie if cookie is not None and len(cookie) == COOKIE_LEN else None


class CookieIssuer:
    """The responder's side: checks both MACs and makes the cookies it replies with."""

    def __init__(
        self, static_public: bytes, now: float, random: Callable[[int], bytes] = os.urandom
    ) -> None:
        """``random``: where the secret comes from; the replies' nonces (public, one per
        reply) come from a pool of the system's random bytes."""
        self._mac1 = KeyedMac(mac1_key(static_public))
        self._sealing_key = cookie_key(static_public)
        self._random = random
        self._nonces = RandomPool()
        self._secret: KeyedMac  # the cookies' MAC, under a secret that rotates
        self._secret_since = -math.inf
        self._rotate(now)

    def mac1_valid(self, initiation: bytes) -> bool:
        end = len(initiation) - MACS_LEN
        return hmac.compare_digest(
            self._mac1(initiation[:end]), initiation[end : end + MAC_LEN]
        )

    def mac2_valid(self, initiation: bytes, source: tuple, now: float) -> bool:
        end = len(initiation) - MAC_LEN
        expected = mac(self._cookie(source, now), initiation[:end])
        return hmac.compare_digest(expected, initiation[end:])

    def reply(self, initiation: bytes, source: tuple, now: float) -> tuple[bytes, bytes]:
        """(nonce, sealed cookie) for the sender of this initiation, bound to its mac1."""
        mac1 = initiation[-MACS_LEN:-MAC_LEN]
        nonce = self._nonces(NONCE_LEN)
        return nonce, aead_seal(self._sealing_key, nonce, self._cookie(source, now), mac1)

    def _cookie(self, source: tuple, now: float) -> bytes:
        if now - self._secret_since >= COOKIE_SECRET_LIFETIME_S:
            self._rotate(now)
        return self._secret(f"{source[0]}|{source[1]}".encode())

    def _rotate(self, now: float) -> None:
        self._secret, self._secret_since = KeyedMac(self._random(32)), now
