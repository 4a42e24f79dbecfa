"""The handshake's primitives (oneservice/primitives.py): the C extension and the pure-Python
path over `cryptography` give the same bytes for random input, pass the RFCs' vectors, and
refuse bad input the same way."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneservice import native, primitives

try:
    from oneservice import _primitives as C
except ImportError:  # pragma: no cover - depends on the install
    C = None

# scripts/run-tests sets this: there the extension must have been built, not silently absent.
REQUIRED = os.environ.get("ONESERVICE_REQUIRE_EXTENSION") == "1"
needs_extension = pytest.mark.skipif(C is None and not REQUIRED,
                                     reason="the C extension is not built")  # fmt: skip
PYTHON = {
    "X25519Key": primitives.PythonX25519Key,
    "Ed25519Key": primitives.PythonEd25519Key,
    "ed25519_verify": primitives.python_ed25519_verify,
    "aead_seal": primitives.python_aead_seal,
    "aead_open": primitives.python_aead_open,
}
h = bytes.fromhex


def both() -> list:
    """Each implementation as a namespace of its five names."""
    implementations = [pytest.param(PYTHON, id="python")]
    if C is not None or REQUIRED:
        implementations.append(
            pytest.param({name: getattr(C, name, None) for name in PYTHON}, id="c")
        )
    return implementations


keys = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=2000)


@needs_extension
@settings(max_examples=200, deadline=None)
@given(ours=keys, theirs=keys)
def test_x25519_is_the_same_on_both_paths(ours, theirs):
    key, python_key = C.X25519Key(ours), primitives.PythonX25519Key(ours)
    public = primitives.PythonX25519Key(theirs).public
    assert key.public == python_key.public
    assert key.exchange(public) == python_key.exchange(public)
    assert key.exchange(public) == C.X25519Key(theirs).exchange(key.public)
    assert key.exchange(public) == key.exchange(public)  # (a key is used again and again)


@needs_extension
@settings(max_examples=200, deadline=None)
@given(private=keys, message=messages, flip=st.integers(0, 64 * 8 - 1))
def test_ed25519_is_the_same_on_both_paths(private, message, flip):
    python_key, key = primitives.PythonEd25519Key(private), C.Ed25519Key(private)
    public, signature = python_key.public, python_key.sign(message)
    assert key.public == public
    assert key.sign(message) == signature == key.sign(message)
    assert C.ed25519_verify(public, signature, message) is True
    forged = bytearray(signature)
    forged[flip // 8] ^= 1 << (flip % 8)
    assert C.ed25519_verify(public, bytes(forged), message) is False
    assert primitives.python_ed25519_verify(public, bytes(forged), message) is False
    assert C.ed25519_verify(public, signature, message + b"x") is False


@needs_extension
@settings(max_examples=200, deadline=None)
@given(key=keys, nonce=st.binary(min_size=12, max_size=12), plaintext=messages,
       ad=st.binary(max_size=100), cut=st.integers(0, 40))  # fmt: skip
def test_chacha20_poly1305_is_the_same_on_both_paths(key, nonce, plaintext, ad, cut):
    sealed = primitives.python_aead_seal(key, nonce, plaintext, ad)
    assert C.aead_seal(key, nonce, plaintext, ad) == sealed
    assert C.aead_open(key, nonce, sealed, ad) == plaintext
    mangled = sealed[: max(0, len(sealed) - cut)] if cut else sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert C.aead_open(key, nonce, mangled, ad) is None
    assert primitives.python_aead_open(key, nonce, mangled, ad) is None
    assert C.aead_open(key, nonce, sealed, ad + b"x") is None


@pytest.mark.parametrize("impl", both())
def test_the_rfc_vectors(impl):
    # RFC 7748, 5.2 and 6.1.
    x25519 = impl["X25519Key"]
    assert x25519(h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")).exchange(
        h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    ) == h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    alice = x25519(h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob = x25519(h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert alice.public == h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert bob.exchange(alice.public) == alice.exchange(bob.public) == h(
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    # RFC 8032, 7.1, test 1.
    secret = h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = h("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = h("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                  "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")  # fmt: skip
    assert impl["Ed25519Key"](secret).public == public
    assert impl["Ed25519Key"](secret).sign(b"") == signature
    assert impl["ed25519_verify"](public, signature, b"") is True
    # RFC 8439, 2.8.2.
    key, nonce = bytes(range(0x80, 0xA0)), h("070000004041424344454647")
    ad = h("50515253c0c1c2c3c4c5c6c7")
    plaintext = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
                 b"tip for the future, sunscreen would be it.")  # fmt: skip
    sealed = h("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca967"
               "1282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328"
               "091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
               "1ae10b594f09e26a7e902ecbd0600691")  # fmt: skip
    assert impl["aead_seal"](key, nonce, plaintext, ad) == sealed
    assert impl["aead_open"](key, nonce, sealed, ad) == plaintext


@pytest.mark.parametrize("impl", both())
def test_bad_input_is_refused_the_same_way(impl):
    key = impl["X25519Key"](primitives.new_x25519_private())
    # A public key of small order gives an all-zero secret: refused, never used.
    for small in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(ValueError):
            key.exchange(small)
    for wrong in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            key.exchange(wrong)
        with pytest.raises(ValueError):
            impl["X25519Key"](wrong)
        with pytest.raises(ValueError):
            impl["Ed25519Key"](wrong)
        with pytest.raises(ValueError):
            impl["aead_seal"](wrong, bytes(12), b"m", b"")
        with pytest.raises(ValueError):
            impl["aead_open"](bytes(32), wrong[:11], bytes(20), b"")
    ed_key = impl["Ed25519Key"](primitives.new_ed25519_private())
    public, signature = ed_key.public, ed_key.sign(b"m")
    # Anything malformed is simply not a valid signature.
    assert impl["ed25519_verify"](public[:31], signature, b"m") is False
    assert impl["ed25519_verify"](public, signature[:63], b"m") is False
    assert impl["ed25519_verify"](public, signature + b"\0", b"m") is False
    assert impl["ed25519_verify"](bytes(32), bytes(64), b"m") is False
    # S not reduced mod the group order (RFC 8032's canonical check): S + L is refused.
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(signature[32:], "little") + order
    if s < 2**256:
        assert impl["ed25519_verify"](public, signature[:32] + s.to_bytes(32, "little"),
                                      b"m") is False  # fmt: skip
    for short in (b"", bytes(15)):
        assert impl["aead_open"](bytes(32), bytes(12), short, b"") is None


def test_fresh_keys_are_keys():
    x = primitives.new_x25519_private()
    assert len(x) == 32 and x[0] & 7 == 0 and x[31] & 0xC0 == 0x40
    assert primitives.new_x25519_private() != x
    assert len(primitives.new_ed25519_private()) == 32


def test_the_variable_and_the_build_choose_the_implementation():
    if REQUIRED:
        assert C is not None, "oneservice._primitives did not build (gcc, libssl-dev?)"
    if os.environ.get(native.VARIABLE) == "python" or C is None:
        assert native.PRIMITIVES is None
        assert primitives.X25519Key is primitives.PythonX25519Key
        assert primitives.aead_open is primitives.python_aead_open
    else:
        assert native.PRIMITIVES is C
        assert primitives.X25519Key is C.X25519Key and primitives.aead_open is C.aead_open
