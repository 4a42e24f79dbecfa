"""``@record``: a frozen dataclass whose ``__repr__``, ``__setattr__`` and ``__delattr__`` are
one function each for every record, instead of three generated for each class.

``@dataclass(frozen=True)`` compiles those three for every class: about 4 KiB a class, and
the node has 82 of them (0.38 MiB of an idle node's 25, docs/PERFORMANCE.md). A record's repr
reads the same as the dataclass's; assigning to or deleting any attribute of a record raises
``dataclasses.FrozenInstanceError``, as it does on a frozen dataclass of its own fields (a
record has no others: it is never subclassed by a plain class)."""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn, TypeVar, dataclass_transform

T = TypeVar("T", bound=type)


def _repr(self: Any) -> str:
    fields = ", ".join(
        f"{field.name}={getattr(self, field.name)!r}"
        for field in dataclasses.fields(self)
        if field.repr
    )
    return f"{type(self).__qualname__}({fields})"


def _setattr(self: Any, name: str, value: object) -> NoReturn:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> NoReturn:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True)
def record(cls: T | None = None, /, *, order: bool = False) -> Any:
    """``@record`` or ``@record(order=True)``, where ``@dataclass(frozen=True)`` would be."""

    def make(cls: T) -> T:
        made = dataclasses.dataclass(cls, frozen=True, repr=False, order=order)
        made.__repr__ = _repr  # type: ignore[assignment]
        made.__setattr__ = _setattr  # type: ignore[assignment]
        made.__delattr__ = _delattr  # type: ignore[assignment]
        return made

    return make if cls is None else make(cls)
