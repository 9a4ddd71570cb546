"""Whether a record read back has the shape its TypedDict declares: the writer's TypedDict is
the one description of a record, and readers check what they read against it."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict


class OutputRecord(TypedDict, total=False):
    """What every output's record holds: who wrote it (ownership.stamp), whether the output
    is finished ('running' or 'complete'), and the settings a resume must match."""

    tool: str
    kind: str
    version: str
    status: str
    settings: dict[str, Any]


def shape_problems(
    record: object, shape: Any, *, required: Iterable[str] | None = None
) -> list[str]:
    """The fields of `record` that do not fit the TypedDict `shape`: each required one that is
    missing (`required`, or else the shape's own required keys), then each field it holds of
    another type than declared (nested TypedDicts, lists and dicts checked through). Fields the
    shape does not name are left alone, so a newer writer's additions still read."""
    if not isinstance(record, dict):
        return ["the record itself (not a JSON object)"]
    needed = shape.__required_keys__ if required is None else required
    problems = [key for key in needed if key not in record]
    for key, declared in get_type_hints(shape).items():
        if key in record and not fits(record[key], declared):
            problems.append(key)
    return problems


def fits(value: object, declared: Any) -> bool:
    """Whether a JSON value is of the declared type (an int is a float; a bool is neither)."""
    if declared is Any:
        return True
    if declared is type(None):
        return value is None
    if declared in (int, float):
        allowed = (int,) if declared is int else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
    if declared in (str, bool):
        return isinstance(value, declared)
    if is_typeddict(declared):
        return not shape_problems(value, declared)
    origin, args = get_origin(declared), get_args(declared)
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and fits(v, args[1]) for k, v in value.items()
        )
    raise TypeError(f"shape_problems cannot check {declared!r}")
