"""The controller store's error, apart from the stores themselves: the API reports it without
loading SQLite or psycopg (only a controller needs them)."""

from __future__ import annotations

from ..files import DamagedFile


class StoreError(DamagedFile):
    """The controller's database cannot be used; the message says which file or server (never
    its password) and why."""
