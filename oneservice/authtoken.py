"""The local API's token: `<home>/authtoken.secret`, made at the first start (as zerotier-one's)."""

from __future__ import annotations

import secrets
from pathlib import Path

from .files import damaged, read_text, write_atomically
from .settings import TOKEN_FILE


def load_or_create_token(home: Path) -> str:
    """The token; a new one if there is no file. DamagedFile for one that cannot be a token
    (it is left as it is: scripts and zerotier-cli may hold a copy), WriteFailed if a new one
    cannot be saved."""
    path = home / TOKEN_FILE
    text = read_text(path, encoding="ascii")
    if text is None:
        token = secrets.token_urlsafe(24)
        write_atomically(path, token, mode=0o600)
        return token
    token = text.strip()
    if not token:
        raise damaged(path, "is empty; remove it and the next start makes a new token")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise damaged(path, "holds spaces or control characters; a token is one printable word")
    return token
