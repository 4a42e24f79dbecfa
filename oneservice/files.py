"""Reading and writing the files of a node's home, safely.

Reads never repair or replace anything: a damaged file is reported (its path and what is wrong,
in one line) and left exactly as it is, for the user to fix or restore. Writes go to a fresh
temporary file in the same directory that replaces the old one only once it is complete and
on disk, so a crash or a full disk leaves either the old file or the new one, never a part,
and never a stray temporary file.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any


class FileError(Exception):
    """A file of the home could not be read or written; the message names it."""


class DamagedFile(FileError):
    """A file is unreadable or holds what it must not; it was left as it is."""


class WriteFailed(FileError):
    """A file could not be written; the previous version, if any, is unchanged."""


def damaged(path: Path, problem: str) -> DamagedFile:
    return DamagedFile(f"{path}: {problem}")


def network_down(error: FileError | str, network_id: str) -> str:
    """The one-line reason a network is down for a damaged file of its own, with the way out."""
    return (f"{error}; network {network_id} stays down until the file is fixed or removed and "
            "the node restarted (or the network is left)")  # fmt: skip


def read_text(path: Path, encoding: str = "utf-8") -> str | None:
    """The file's text; None if it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise damaged(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding == "utf-8" else encoding.upper()
        raise damaged(path, f"not {name} text (byte 0x{data[exc.start]:02x} at offset "
                            f"{exc.start})") from None  # fmt: skip


def parse_json(text: str, path: Path) -> Any:
    if not text.strip():
        raise damaged(path, "is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(
            path, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise damaged(path, "JSON nested too deeply") from None


def read_json_object(path: Path) -> dict | None:
    """The file's JSON object; None if it does not exist."""
    text = read_text(path)
    if text is None:
        return None
    value = parse_json(text, path)
    if not isinstance(value, dict):
        raise damaged(path, f"must hold a JSON object, not {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` (UTF-8) all at once; WriteFailed says why not."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)  # left by a crashed process that had our PID
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        hint = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise WriteFailed(f"cannot write {path}: {exc.strerror or exc}{hint}") from None
