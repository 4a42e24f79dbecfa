"""Node identity: an X25519 pair (key agreement), an Ed25519 pair (signatures), and a 10-hex-
digit address derived from both public keys with a memory-hard hash.

Text forms (one line each), shaped like ZeroTier's so its users recognise them:
    public: <address>:1:<x25519 public hex>:<ed25519 public hex>
    secret: <public form>:<x25519 private hex>:<ed25519 private hex>
The "1" is the identity format version.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from .files import damaged, read_text, write_atomically
from .primitives import (
    Ed25519Key,
    X25519Key,
    ed25519_verify,
    new_ed25519_private,
    new_x25519_private,
)
from .records import record

IDENTITY_FORMAT = "1"
ADDRESS_HEX_DIGITS = 10
SECRET_FILE = "identity.secret"
PUBLIC_FILE = "identity.public"
# scrypt with N=2^14, r=8: 16 MiB and ~40 ms per address (our 2-core machine, 2026-11-25).
# Finding keys for a chosen 40-bit address takes ~2^40 of these: out of reach, while
# checking one identity stays cheap.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_SALT = b"oneservice address v1"
# Like ZeroTier: 0xff.. addresses are reserved, and 00.. would read as "no address".
_RESERVED_PREFIXES = ("ff", "00")


# X25519 public keys of small order (libsodium's list, compared without the top bit, which
# X25519 ignores): every key agreement with one gives zeros, so no session can ever be made
# with it. An identity carrying one is refused when read, not when first handshaked with.
_SMALL_ORDER_X25519 = frozenset(bytes.fromhex(h) for h in (
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
))  # fmt: skip


class IdentityError(Exception):
    """An identity (text or file) is malformed or does not match its address."""


@functools.lru_cache(maxsize=65536)
def derive_address(x25519_public: bytes, ed25519_public: bytes) -> str:
    """Cached: a network config lists every member, and each is checked on every revision."""
    digest = hashlib.scrypt(
        x25519_public + ed25519_public,
        salt=_SCRYPT_SALT, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=64 * 1024 * 1024,
        dklen=32,
    )  # fmt: skip
    return digest[: ADDRESS_HEX_DIGITS // 2].hex()


def is_address(text: str) -> bool:
    return len(text) == ADDRESS_HEX_DIGITS and all(c in "0123456789abcdef" for c in text)


@record
class Identity:
    address: str
    x25519_public: bytes
    ed25519_public: bytes
    x25519_private: bytes | None = None
    ed25519_private: bytes | None = None

    @classmethod
    def generate(cls) -> Identity:
        while True:
            x_private, e_private = new_x25519_private(), new_ed25519_private()
            x_public, e_public = X25519Key(x_private).public, Ed25519Key(e_private).public
            address = derive_address(x_public, e_public)
            if not address.startswith(_RESERVED_PREFIXES):
                return cls(address, x_public, e_public, x_private, e_private)

    @classmethod
    def parse(cls, text: str, verify: bool = True) -> Identity:
        """Parse a public or secret identity and verify it against its address (unless the
        caller checked it before: an scrypt run per identity)."""
        parts = text.strip().split(":")
        if len(parts) not in (4, 6):
            raise IdentityError(
                "identity must be <address>:1:<x25519>:<ed25519>[:<x25519 secret>:<ed25519 "
                f"secret>], got {len(parts)} field(s)"
            )
        address, version = parts[0], parts[1]
        if not is_address(address):
            raise IdentityError(
                f"identity address must be 10 lowercase hex digits, got {address!r}"
            )
        if version != IDENTITY_FORMAT:
            raise IdentityError(f"identity format {version!r} is not supported (expected 1)")
        keys = [_hex32(part, name) for part, name in zip(parts[2:], _KEY_NAMES, strict=False)]
        if keys[0][:31] + bytes([keys[0][31] & 0x7F]) in _SMALL_ORDER_X25519:
            raise IdentityError(f"identity {address}: its x25519 key is of small order: no "
                                "session can be made with it")  # fmt: skip
        identity = cls(address, keys[0], keys[1], *(keys[2:] or (None, None)))
        if verify:
            identity.verify()
        return identity

    def verify(self) -> None:
        """Raise IdentityError unless the address belongs to the keys (and secrets to publics)."""
        if derive_address(self.x25519_public, self.ed25519_public) != self.address:
            raise IdentityError(f"identity {self.address}: address does not match its keys")
        if self.x25519_private is None or self.ed25519_private is None:
            return
        if (
            X25519Key(self.x25519_private).public != self.x25519_public
            or self._signing_key.public != self.ed25519_public
        ):
            raise IdentityError(f"identity {self.address}: secret keys do not match")

    @property
    def has_secret(self) -> bool:
        return self.x25519_private is not None

    def public(self) -> Identity:
        return Identity(self.address, self.x25519_public, self.ed25519_public)

    def public_text(self) -> str:
        return (
            f"{self.address}:{IDENTITY_FORMAT}:{self.x25519_public.hex()}:"
            f"{self.ed25519_public.hex()}"
        )

    def secret_text(self) -> str:
        if self.x25519_private is None or self.ed25519_private is None:
            raise IdentityError(f"identity {self.address} has no secret keys")
        return f"{self.public_text()}:{self.x25519_private.hex()}:{self.ed25519_private.hex()}"

    def x25519_private_key(self) -> X25519Key:
        """The static key of our handshakes (node/noise.py)."""
        if self.x25519_private is None:
            raise IdentityError(f"identity {self.address} has no secret keys")
        return X25519Key(self.x25519_private)

    def sign(self, message: bytes) -> bytes:
        if self.ed25519_private is None:
            raise IdentityError(f"identity {self.address} has no secret keys")
        return self._signing_key.sign(message)

    @functools.cached_property
    def _signing_key(self) -> Ed25519Key:
        # Made once (that computes its public key): a controller signs every config it sends.
        return Ed25519Key(self.ed25519_private)

    def verify_signature(self, message: bytes, signature: bytes) -> bool:
        return ed25519_verify(self.ed25519_public, signature, message)


_KEY_NAMES = ("x25519 public key", "ed25519 public key", "x25519 secret", "ed25519 secret")


def _hex32(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise IdentityError(f"identity {name} is not hex") from None
    if len(value) != 32:
        raise IdentityError(f"identity {name} must be 32 bytes, got {len(value)}")
    return value


def load_or_create_identity(home: Path) -> Identity:
    """Load the node's identity, creating it on first start. A damaged identity file stops the
    service with an error: replacing it would silently turn this node into a stranger."""
    secret_path, public_path = home / SECRET_FILE, home / PUBLIC_FILE
    text = read_text(secret_path, encoding="ascii")
    if text is not None:
        advice = ("; it was left untouched: restore it from a backup, or move it away to start "
                  "as a new node")  # fmt: skip
        if not text.strip():
            raise damaged(secret_path, "is empty" + advice)
        try:
            identity = Identity.parse(text)
        except IdentityError as exc:
            raise damaged(secret_path, f"{exc}{advice}") from None
        if not identity.has_secret:
            raise damaged(secret_path, "holds no secret keys" + advice)
        if secret_path.stat().st_mode & 0o077:
            os.chmod(secret_path, 0o600)
        _write_public(public_path, identity)
        return identity
    identity = Identity.generate()
    write_atomically(secret_path, identity.secret_text() + "\n", mode=0o600)
    _write_public(public_path, identity)
    return identity


def _write_public(path: Path, identity: Identity) -> None:
    """identity.public is written from the secret, never read: one that differs is replaced."""
    text = identity.public_text() + "\n"
    try:
        if path.read_text(encoding="ascii") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    write_atomically(path, text, mode=0o644)
