"""The local API's tokens, made at the first start as zerotier-one's: `<home>/authtoken.secret`
for everything, `<home>/metricstoken.secret` for GET /metrics only (what a Prometheus server
holds)."""

from __future__ import annotations

from pathlib import Path

from .files import damaged, read_text, write_atomically
from .randomness import random_token
from .settings import METRICS_TOKEN_FILE, TOKEN_FILE


def load_or_create_tokens(home: Path) -> tuple[str, str]:
    """The API's token and the metrics token. Both files are read before either is made: a
    damaged one changes nothing in the home."""
    found = {name: _read_token(home / name) for name in (TOKEN_FILE, METRICS_TOKEN_FILE)}
    return load_or_create_token(home, TOKEN_FILE, found[TOKEN_FILE]), load_or_create_token(
        home, METRICS_TOKEN_FILE, found[METRICS_TOKEN_FILE])


def load_or_create_token(home: Path, name: str = TOKEN_FILE, read: str | None = None) -> str:
    """The token in ``name`` (``read``: as already read); a new one if there is no file.
    DamagedFile for one that cannot be a token (it is left as it is: scripts and zerotier-cli
    may hold a copy), WriteFailed if a new one cannot be saved."""
    token = read if read is not None else _read_token(home / name)
    if token is None:
        token = random_token(24)
        write_atomically(home / name, token, mode=0o600)
    return token


def _read_token(path: Path) -> str | None:
    """The token in the file; None if there is none. DamagedFile if it cannot be one."""
    text = read_text(path, encoding="ascii")
    if text is None:
        return None
    token = text.strip()
    if not token:
        raise damaged(path, "is empty; remove it and the next start makes a new token")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise damaged(path, "holds spaces or control characters; a token is one printable word")
    return token
