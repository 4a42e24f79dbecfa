from __future__ import annotations

import pytest

from oneservice.__main__ import main
from oneservice.files import DamagedFile
from oneservice.identity import Identity, IdentityError, derive_address, load_or_create_identity


def test_generated_identity_round_trips_and_verifies():
    identity = Identity.generate()
    assert len(identity.address) == 10 and not identity.address.startswith(("ff", "00"))
    assert Identity.parse(identity.public_text()) == identity.public()
    assert Identity.parse(identity.secret_text()) == identity
    signature = identity.sign(b"config")
    assert identity.public().verify_signature(b"config", signature)
    assert not identity.public().verify_signature(b"other", signature)


def test_address_must_match_the_keys():
    identity = Identity.generate()
    fields = identity.public_text().split(":")
    fields[0] = "0123456789" if fields[0] != "0123456789" else "1123456789"
    with pytest.raises(IdentityError, match="address does not match its keys"):
        Identity.parse(":".join(fields))
    other = Identity.generate()
    mixed = ":".join(identity.secret_text().split(":")[:4] + other.secret_text().split(":")[4:])
    with pytest.raises(IdentityError, match="secret keys do not match"):
        Identity.parse(mixed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "got 1 field"),
        ("abc:1:00:00", "10 lowercase hex digits"),
        ("0123456789:2:" + "00" * 32 + ":" + "00" * 32, "format '2' is not supported"),
        ("0123456789:1:zz:" + "00" * 32, "not hex"),
        ("0123456789:1:" + "00" * 31 + ":" + "00" * 32, "must be 32 bytes"),
    ],
)
def test_malformed_identities_are_explained(text, message):
    with pytest.raises(IdentityError, match=message):
        Identity.parse(text)


def test_first_start_creates_a_private_secret_file(tmp_path):
    identity = load_or_create_identity(tmp_path)
    secret = tmp_path / "identity.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "identity.public").read_text().strip() == identity.public_text()
    assert load_or_create_identity(tmp_path) == identity  # stable across starts


def test_damaged_identity_stops_the_node_and_is_never_replaced(tmp_path, capsys):
    load_or_create_identity(tmp_path)
    secret = tmp_path / "identity.secret"
    damaged = secret.read_text()[:40]  # truncated
    secret.write_text(damaged)
    with pytest.raises(DamagedFile, match="left untouched"):
        load_or_create_identity(tmp_path)
    assert secret.read_text() == damaged
    assert main(["--home", str(tmp_path), "--port", "0"]) == 2
    assert "identity.secret: " in capsys.readouterr().err
    assert secret.read_text() == damaged


def test_address_derivation_is_deterministic():
    assert derive_address(b"\1" * 32, b"\2" * 32) == derive_address(b"\1" * 32, b"\2" * 32)
    assert derive_address(b"\1" * 32, b"\2" * 32) != derive_address(b"\2" * 32, b"\1" * 32)


def test_an_identity_whose_x25519_key_is_of_small_order_is_refused_when_read():
    """No session can be made with such a key (every key agreement gives zeros); found once
    when a config listed one and the first handshake to it raised inside the core."""
    ed25519 = Identity.generate().ed25519_public.hex()
    for key in ("00" * 32, "01" + "00" * 31, "ec" + "ff" * 31):  # the last: top bit set
        with pytest.raises(IdentityError, match="small order"):
            Identity.parse(f"aa00000001:1:{key}:{ed25519}", verify=False)
    Identity.parse(f"aa00000001:1:{'09' * 32}:{ed25519}", verify=False)  # an ordinary key
