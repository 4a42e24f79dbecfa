"""Noise IK (Noise_IK_25519_ChaChaPoly_BLAKE2s), written against revision 34 of the Noise
Protocol Framework specification and checked with noise-c's published test vectors
(tests/unit/test_noise.py).

    <- s
    ...
    -> e, es, s, ss
    <- e, ee, se

Pure computation: no I/O, no clock. Errors in received messages raise HandshakeError.
"""

from __future__ import annotations

import hashlib
import hmac

from ..primitives import X25519Key, aead_open, aead_seal, new_x25519_private

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
DH_LEN = 32
HASH_LEN = 32
TAG_LEN = 16
MESSAGE_1_OVERHEAD = DH_LEN + (DH_LEN + TAG_LEN) + TAG_LEN  # e, encrypted s, payload tag
MESSAGE_2_OVERHEAD = DH_LEN + TAG_LEN  # e, payload tag


class HandshakeError(Exception):
    """A handshake message failed to decrypt or is malformed."""


def _hash(data: bytes) -> bytes:
    return hashlib.blake2s(data).digest()


def _hkdf(chaining_key: bytes, material: bytes, outputs: int) -> list[bytes]:
    temp = hmac.new(chaining_key, material, hashlib.blake2s).digest()
    out, previous = [], b""
    for index in range(1, outputs + 1):
        previous = hmac.new(temp, previous + bytes([index]), hashlib.blake2s).digest()
        out.append(previous)
    return out


def nonce_bytes(counter: int) -> bytes:
    """ChaChaPoly nonce: 4 zero bytes then the 64-bit counter, little-endian (Noise 12.3)."""
    return b"\0\0\0\0" + counter.to_bytes(8, "little")


def public_bytes(private: X25519Key) -> bytes:
    return private.public


def _dh(private: X25519Key, public: bytes) -> bytes:
    try:
        return private.exchange(public)
    except ValueError as exc:  # all-zero shared secret from a low-order point
        raise HandshakeError("invalid public key") from exc


class _CipherState:
    def __init__(self) -> None:
        self.key: bytes | None = None
        self.n = 0

    def initialize(self, key: bytes) -> None:
        self.key, self.n = key, 0

    def encrypt(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.key is None:
            return plaintext
        out = aead_seal(self.key, nonce_bytes(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.key is None:
            return ciphertext
        out = aead_open(self.key, nonce_bytes(self.n), ciphertext, ad)
        if out is None:
            raise HandshakeError("handshake message failed authentication")
        self.n += 1
        return out


class _SymmetricState:
    def __init__(self) -> None:
        self.h = PROTOCOL_NAME.ljust(HASH_LEN, b"\0") if len(PROTOCOL_NAME) <= HASH_LEN else (
            _hash(PROTOCOL_NAME)
        )  # fmt: skip
        self.ck = self.h
        self.cipher = _CipherState()

    def mix_hash(self, data: bytes) -> None:
        self.h = _hash(self.h + data)

    def mix_key(self, material: bytes) -> None:
        self.ck, key = _hkdf(self.ck, material, 2)
        self.cipher.initialize(key)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[bytes, bytes]:
        first, second = _hkdf(self.ck, b"", 2)
        return first, second


class Initiator:
    """The side that knows the responder's static key. ``ephemeral`` is for test vectors."""

    def __init__(
        self,
        static: X25519Key,
        remote_static: bytes,
        prologue: bytes = b"",
        ephemeral: X25519Key | None = None,
    ) -> None:
        self._s = static
        self._rs = remote_static
        self._e = ephemeral or X25519Key(new_x25519_private())
        self._state = _SymmetricState()
        self._state.mix_hash(prologue)
        self._state.mix_hash(remote_static)

    def write_message_1(self, payload: bytes) -> bytes:
        st = self._state
        e_public = public_bytes(self._e)
        st.mix_hash(e_public)
        st.mix_key(_dh(self._e, self._rs))  # es
        encrypted_static = st.encrypt_and_hash(public_bytes(self._s))
        st.mix_key(_dh(self._s, self._rs))  # ss
        return e_public + encrypted_static + st.encrypt_and_hash(payload)

    def read_message_2(self, message: bytes) -> bytes:
        if len(message) < MESSAGE_2_OVERHEAD:
            raise HandshakeError("handshake response too short")
        st = self._state
        re = message[:DH_LEN]
        st.mix_hash(re)
        st.mix_key(_dh(self._e, re))  # ee
        st.mix_key(_dh(self._s, re))  # se
        return st.decrypt_and_hash(message[DH_LEN:])

    def split(self) -> tuple[bytes, bytes]:
        """(send key, receive key) for the initiator."""
        return self._state.split()

    @property
    def handshake_hash(self) -> bytes:
        return self._state.h


class Responder:
    def __init__(
        self,
        static: X25519Key,
        prologue: bytes = b"",
        ephemeral: X25519Key | None = None,
    ) -> None:
        self._s = static
        self._e = ephemeral or X25519Key(new_x25519_private())
        self._re = b""
        self.remote_static = b""
        self._state = _SymmetricState()
        self._state.mix_hash(prologue)
        self._state.mix_hash(public_bytes(static))

    def read_message_1(self, message: bytes) -> bytes:
        """Returns the payload; ``remote_static`` then holds the initiator's static key."""
        if len(message) < MESSAGE_1_OVERHEAD:
            raise HandshakeError("handshake initiation too short")
        st = self._state
        self._re = message[:DH_LEN]
        st.mix_hash(self._re)
        st.mix_key(_dh(self._s, self._re))  # es
        self.remote_static = st.decrypt_and_hash(message[DH_LEN : DH_LEN * 2 + TAG_LEN])
        st.mix_key(_dh(self._s, self.remote_static))  # ss
        return st.decrypt_and_hash(message[DH_LEN * 2 + TAG_LEN :])

    def write_message_2(self, payload: bytes) -> bytes:
        st = self._state
        e_public = public_bytes(self._e)
        st.mix_hash(e_public)
        st.mix_key(_dh(self._e, self._re))  # ee
        st.mix_key(_dh(self._e, self.remote_static))  # se
        return e_public + st.encrypt_and_hash(payload)

    def split(self) -> tuple[bytes, bytes]:
        """(send key, receive key) for the responder."""
        initiator_send, responder_send = self._state.split()
        return responder_send, initiator_send

    @property
    def handshake_hash(self) -> bytes:
        return self._state.h
