"""The door of every public function: an enum, a flag or a settings object is taken as itself
(an enum also as its value: "overwrite" is Existing.OVERWRITE) and anything else is refused
with an error that names the parameter: a TypeError for the wrong kind of thing, a
ValueError for a value that is not among the choices. Nothing is half-understood."""

from __future__ import annotations

import enum
from typing import Any, TypeVar

from .errors import BalanceValueError, UserError

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")


def member(
    value: object, kind: type[E], name: str, error: type[UserError] = BalanceValueError
) -> E:
    """`value` as a member of the enum `kind`, given as the member or its value."""
    if isinstance(value, kind):
        return value
    choices = ", ".join(repr(m.value) for m in kind)
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a {kind.__name__} or one of {choices}, not {type(value).__name__}"
        )
    try:
        return kind(value)
    except ValueError:
        raise error(
            f"{name} must be one of {choices} (got {value!r})", parameters=(name,)
        ) from None


def flag(value: object, name: str) -> bool:
    """`value` as a bool: True or False (NumPy's booleans too); "no", 0 or None are refused."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")


def instance(value: object, kind: type[T], name: str, example: str = "") -> T:
    """`value` when it is a `kind` (a settings object), else a TypeError naming the parameter
    and how to make one."""
    if isinstance(value, kind):
        return value
    how = f" (e.g. {example})" if example else ""
    raise TypeError(f"{name} must be a {kind.__name__}{how}, not {type(value).__name__}")


def optional(value: Any, kind: type[T], name: str, example: str = "") -> T | None:
    """`instance` that also takes None (the default settings)."""
    return None if value is None else instance(value, kind, name, example)
