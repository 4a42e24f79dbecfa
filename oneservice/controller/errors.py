"""The controller's errors, apart from the controller and its stores: the API and the service
handle them without loading the controller, SQLite or psycopg (only a controller needs
them)."""

from __future__ import annotations

from ..files import DamagedFile


class StoreError(DamagedFile):
    """The controller's database cannot be used; the message says which file or server (never
    its password) and why."""

class ControllerError(Exception):
    """A request to the controller is wrong; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
