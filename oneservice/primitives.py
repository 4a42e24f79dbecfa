"""The primitives of identities and handshakes: X25519 key agreement, Ed25519 signatures, and
ChaCha20-Poly1305 under a nonce of the caller's (Noise messages, cookie replies). Raw keys
are 32-byte strings; a private key in use is an object, made once (its public key is
computed then) and used for every exchange or signature after.

Two implementations with one interface and the same bytes out (oneservice/native.py
chooses): ``oneservice._primitives``, a C extension over the system's libcrypto, which the
interpreter has mapped already for ssl and hashlib; and the ``Python*`` classes and
``python_*`` functions below, over ``cryptography``, imported only when they run. A node on
the C path never loads ``cryptography``, whose own OpenSSL costs about 9 MiB resident
(docs/PERFORMANCE.md).

    X25519Key(private): .public; .exchange(public) -> shared secret, ValueError when it is
        all zeros (a public key of small order)
    Ed25519Key(private): .public; .sign(message) -> 64-byte signature (deterministic,
        RFC 8032)
    ed25519_verify(public, signature, message) -> bool (False for anything malformed)
    aead_seal(key, nonce, plaintext, ad) -> ciphertext | tag
    aead_open(key, nonce, ciphertext, ad) -> plaintext, or None if it does not authenticate
"""

from __future__ import annotations

import os

from . import native


def new_x25519_private() -> bytes:
    """A fresh X25519 private key, clamped as RFC 7748 (and OpenSSL's key generation) do."""
    key = bytearray(os.urandom(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def new_ed25519_private() -> bytes:
    """A fresh Ed25519 private key (the 32-byte seed of RFC 8032)."""
    return os.urandom(32)


class PythonX25519Key:
    __slots__ = ("_key", "public")

    def __init__(self, private: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        self._key = X25519PrivateKey.from_private_bytes(private)
        self.public = self._key.public_key().public_bytes_raw()

    def exchange(self, public: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        return self._key.exchange(X25519PublicKey.from_public_bytes(public))  # ValueError if 0


class PythonEd25519Key:
    __slots__ = ("_key", "public")

    def __init__(self, private: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self._key = Ed25519PrivateKey.from_private_bytes(private)
        self.public = self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def python_ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def python_aead(key: bytes):  # -> cryptography's ChaCha20Poly1305 (not imported here)
    """``cryptography``'s ChaCha20-Poly1305 under this key, imported only when it is asked
    for (the pure-Python data path keeps one per direction: node/aead.py)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(key)


def python_invalid_tag() -> type[Exception]:
    """What python_aead's decrypt raises when a message does not authenticate."""
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def python_aead_seal(key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return python_aead(key).encrypt(nonce, plaintext, ad)


def python_aead_open(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes) -> bytes | None:
    try:
        return python_aead(key).decrypt(nonce, ciphertext, ad)
    except python_invalid_tag():  # (evaluated only when decrypt raised)
        return None


_C = native.PRIMITIVES
X25519Key = _C.X25519Key if _C else PythonX25519Key
Ed25519Key = _C.Ed25519Key if _C else PythonEd25519Key
ed25519_verify = _C.ed25519_verify if _C else python_ed25519_verify
aead_seal = _C.aead_seal if _C else python_aead_seal
aead_open = _C.aead_open if _C else python_aead_open
