"""serde: JSON values pass exactly, three documented conversions, everything else is refused
with the path and the type (issue 6 item 5)."""

from __future__ import annotations

import enum
from collections import defaultdict, namedtuple
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from stepline import SerializationError
from stepline.serde import dumps, loads


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


@dataclass
class Point:
    x: int
    tags: Any = None


class Model:
    """Stands in for a pydantic model: anything with ``model_dump``."""

    def model_dump(self, mode: str) -> dict[str, Any]:
        assert mode == "json"
        return {"name": "m", "at": "2026-01-01T00:00:00"}


Pair = namedtuple("Pair", "a b")


def refusal(value: Any) -> SerializationError:
    with pytest.raises(SerializationError) as refused:
        dumps(value, "output of step 's'")
    return refused.value


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        ({"a": {"b c": [0, date(2026, 1, 1)]}}, '$.a["b c"][1]', "datetime.date"),
        ({"e": Color.RED}, "$.e", "test_serde.Color"),
        ({"e": Level.LOW}, "$.e", "test_serde.Level"),  # would come back a plain int
        ({"d": defaultdict(list)}, "$.d", "collections.defaultdict"),
        ({"x": Decimal("1.5")}, "$.x", "decimal.Decimal"),
        ({"x": b"raw"}, "$.x", "bytes"),
        ({"x": 2**64}, "$.x", "int"),
        ({"x": "\ud800"}, "$.x", "str"),
        ({"p": Point(1, {"t": float("nan")})}, "$.p.tags.t", "float"),
        ({"p": Point(1, {1: 2})}, "$.p.tags", "dict key of type int"),
        ([object()], "$[0]", "object"),
    ],
)
def test_refused_with_path_and_type(value: Any, path: str, type_name: str) -> None:
    # issue 6 item 5
    error = refusal(value)
    assert (error.what, error.path, error.type_name) == ("output of step 's'", path, type_name)
    assert str(error).startswith(f"output of step 's' is not JSON-serializable: {type_name} at")


def test_the_message_says_what_to_store_instead() -> None:
    # issue 6 item 5
    assert "isoformat()" in str(refusal({"at": datetime(2026, 1, 1)}))
    assert "sorted(value)" in str(refusal({1, 2}))


def test_a_cycle_is_refused() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    assert refusal(cycle).path.startswith("$[0][0]")


def test_documented_conversions() -> None:
    assert loads(dumps((1, Pair(2, 3)))) == [1, [2, 3]]
    assert loads(dumps(Point(1, ["a"]))) == {"x": 1, "tags": ["a"]}
    assert loads(dumps({"m": Model()})) == {"m": {"name": "m", "at": "2026-01-01T00:00:00"}}


def test_json_values_pass_exactly() -> None:
    value = {"i": -(2**63), "u": 2**64 - 1, "f": 1e300, "z": -0.0, "s": "\u2028", "n": None}
    assert loads(dumps(value)) == value
    assert loads(None) is None
