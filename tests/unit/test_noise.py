"""Noise IK against noise-c's published vectors for Noise_IK_25519_ChaChaPoly_BLAKE2s
(standard cacophony keys, prologue "Prologue123")."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from oneservice.node.noise import HandshakeError, Initiator, Responder, nonce_bytes, public_bytes
from oneservice.primitives import X25519Key, new_x25519_private

INIT_STATIC = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1"
INIT_EPHEMERAL = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a"
RESP_STATIC = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893"
RESP_EPHEMERAL = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b"
RESP_STATIC_PUBLIC = "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62"
PROLOGUE = bytes.fromhex("50726f6c6f677565313233")
MESSAGE_1 = (
    "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79440b03ddc7aac5123d06a1b23b7"
    "1670e32e76c28239a7ca4ac8f784de7e44c1adb78f2058771dfd4229fbdc85c5fba3b587b1d171ce368229c7b"
    "752ac25b8faf4e7b2fab7326f0d6fa1fdbef58de623245"
)
MESSAGE_2 = (
    "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d9b5a8927f0ac9655ef76833bc"
    "7e55269c081ec38c61031f76fe15b2aaaad5"
)
HANDSHAKE_HASH = "45e34c56ca0de9c348e104edcf503035e5559ceed661ac22916f6f171696d994"
# (sender, payload, ciphertext) of the transport messages that follow, counters from 0.
TRANSPORT = [
    ("initiator", "462e20412e20486179656b",
     "2c256ed08fcd08c2980f954ee4beaccb61c9581340f5dd2fd1cf3b"),
    ("responder", "4361726c204d656e676572",
     "d6033f70eee20945c7c9dba304e397ee3b284ff5e00fd9efb095d3"),
    ("initiator", "4a65616e2d426170746973746520536179",
     "a9c068ca5d8babf72560652d8e851adbfac35c8a66e810d560863173e96adf4cfe"),
    ("responder", "457567656e2042f6686d20766f6e2042617765726b",
     "2a09d8f459e5927e40fdd2eddc99bdafb04e13a26f145cb5cfe9e6ba34c94331ebc17d5156"),
]  # fmt: skip


def key(hex_text: str) -> X25519Key:
    return X25519Key(bytes.fromhex(hex_text))


def handshake():
    initiator = Initiator(key(INIT_STATIC), bytes.fromhex(RESP_STATIC_PUBLIC), PROLOGUE,
                          ephemeral=key(INIT_EPHEMERAL))  # fmt: skip
    responder = Responder(key(RESP_STATIC), PROLOGUE, ephemeral=key(RESP_EPHEMERAL))
    return initiator, responder


def test_published_vectors():
    assert public_bytes(key(RESP_STATIC)).hex() == RESP_STATIC_PUBLIC
    initiator, responder = handshake()
    message_1 = initiator.write_message_1(bytes.fromhex("4c756477696720766f6e204d69736573"))
    assert message_1.hex() == MESSAGE_1
    assert responder.read_message_1(message_1).hex() == "4c756477696720766f6e204d69736573"
    assert responder.remote_static == public_bytes(key(INIT_STATIC))
    message_2 = responder.write_message_2(bytes.fromhex("4d757272617920526f746862617264"))
    assert message_2.hex() == MESSAGE_2
    assert initiator.read_message_2(message_2).hex() == "4d757272617920526f746862617264"
    assert initiator.handshake_hash.hex() == responder.handshake_hash.hex() == HANDSHAKE_HASH

    i_send, i_recv = initiator.split()
    r_send, r_recv = responder.split()
    assert (i_send, i_recv) == (r_recv, r_send)
    counters = {"initiator": 0, "responder": 0}
    for sender, payload, ciphertext in TRANSPORT:
        send_key = i_send if sender == "initiator" else r_send
        out = ChaCha20Poly1305(send_key).encrypt(nonce_bytes(counters[sender]),
                                                 bytes.fromhex(payload), b"")  # fmt: skip
        counters[sender] += 1
        assert out.hex() == ciphertext


def test_tampered_messages_are_rejected():
    initiator, responder = handshake()
    message_1 = bytearray(initiator.write_message_1(b"hello"))
    message_1[40] ^= 1
    with pytest.raises(HandshakeError):
        responder.read_message_1(bytes(message_1))
    with pytest.raises(HandshakeError):
        Responder(key(RESP_STATIC)).read_message_1(b"short")


def test_wrong_responder_key_cannot_read_the_initiation():
    initiator, _ = handshake()
    message_1 = initiator.write_message_1(b"")
    stranger = Responder(X25519Key(new_x25519_private()), PROLOGUE)
    with pytest.raises(HandshakeError):
        stranger.read_message_1(message_1)
