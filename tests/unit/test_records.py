"""``@record``: frozen dataclasses sharing one repr, setattr and delattr (issue 29, item 3)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from oneservice.records import record


@record
class Point:
    x: int
    y: int = 0
    label: str = dataclasses.field(default="", repr=False)


@record(order=True)
class Version:
    major: int
    minor: int


@dataclasses.dataclass(frozen=True)
class Twin:
    x: int
    y: int = 0
    label: str = dataclasses.field(default="", repr=False)


def test_a_record_reads_and_compares_as_a_frozen_dataclass():
    point = Point(1, 2, "hidden")
    assert repr(point) == repr(Twin(1, 2, "hidden")).replace("Twin", "Point") == "Point(x=1, y=2)"
    assert point == Point(1, 2, "hidden") and point != Point(1, 3)
    assert hash(point) == hash(Point(1, 2, "hidden")) and len({point, Point(1, 2, "hidden")}) == 1
    assert dataclasses.replace(point, y=5) == Point(1, 5, "hidden")
    assert pickle.loads(pickle.dumps(point)) == point
    assert sorted([Version(1, 10), Version(1, 2)]) == [Version(1, 2), Version(1, 10)]


def test_a_record_cannot_be_changed():
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'z'"):
        point.z = 2  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'x'"):
        del point.x  # type: ignore[misc]
    assert point == Point(1)


def test_the_node_s_frozen_classes_share_one_setattr_and_one_repr():
    """Each frozen dataclass of the node's own compiled its own three (about 4 KiB a class)."""
    import gc
    import sys

    import oneservice.__main__ as main
    from oneservice import records

    main.load_service()
    import oneservice.api  # noqa: F401  (loaded at start too)


    def in_its_module(c: type) -> bool:  # (not the class that @dataclass(slots=True) replaced)
        found: object = sys.modules[c.__module__]
        for name in c.__qualname__.split("."):
            found = getattr(found, name, None)
        return found is c


    own = [c for c in gc.get_objects() if isinstance(c, type)
           and str(getattr(c, "__module__", "")).startswith("oneservice.")
           and dataclasses.is_dataclass(c) and c.__dataclass_params__.frozen  # type: ignore[attr-defined]
           and "__slots__" not in c.__dict__ and in_its_module(c)]  # fmt: skip
    assert len(own) > 60, sorted(c.__qualname__ for c in own)
    shared = (records._setattr, records._repr)
    apart = [c.__qualname__ for c in own if (c.__setattr__, c.__repr__) != shared]
    assert not apart, apart
    assert "oneservice.service" in sys.modules
