"""What proves an output is the tool's own: its JSON record (tool, kind, version) and the
entries its kind may hold; a staging folder's marker. Nothing is deleted without this proof.

Lazy imports: the package's version and the atomic writer are imported where used: both
import this module's package."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import BalanceError, UserError
from ..storage import Place

TOOL = "balanced-aug"


STAGING_SUFFIX = ".partial"


STAGING_MARKER = ".balanced-aug-staging"  # inside a staging folder: proves it is ours


# The output kinds, by their records' "kind", as each package declares them (OutputKind
# registers itself). The installed packages name their records, and the module declaring
# each one's kind, as entry points of this group: a process knows every record without this
# room naming another package's, and imports a declaring module only to describe a record.
DECLARED: dict[str, OutputKind] = {}
ENTRY_POINTS = "balanced_aug.records"


@dataclass(frozen=True)
class OutputKind:
    """One kind of output: its record, its `kind` value and how its files are proven.

    `listing(out, record)` gives the files the tool wrote there ({posix path: Listed}, from
    the record itself or from `listing_file`, a CSV beside it that the finished record
    checksums); BalanceError when it is damaged. `holds(record, entry)` says whether a
    top-level entry is a part that is proven an output of its own (a run's evaluation, a
    cv's fold). `staging` are the glob patterns, relative to the folder, where staging
    folders of its parts may be left.
    """

    name: str  # as users know it: "balance build output"
    record: str  # the record's file name
    kind: str  # the record's "kind"
    listing: Callable[[Place, dict], Mapping[str, Any]]
    listing_file: str | None = None
    holds: Callable[[dict, Place], bool] = lambda record, entry: False
    resumable: bool = True  # `--resume` finishes an interrupted one
    staging: tuple[str, ...] = ()
    progress: str | None = None  # a file in a staging folder that makes it worth resuming
    shape: Any = None  # the TypedDict its record is checked against when read back
    not_classes: str | None = None  # given as a class folder: why not, what to give instead
    # (None: its folder is a class folder, as a balanced one is)
    class_parts: bool = False  # its top-level folders are class folders (a split's parts)

    def __post_init__(self) -> None:
        DECLARED[self.kind] = self

    @property
    def files(self) -> frozenset[str]:
        """The files at its root that are not in its listing: the record, the listing file."""
        return frozenset(n for n in (self.record, self.listing_file) if n)


def declared_kinds() -> dict[str, OutputKind]:
    """Every output kind, by its records' "kind": those this process declared, and those of
    the installed packages (their declaring modules imported once, on first call)."""
    _import_declarations()
    return dict(DECLARED)


@functools.cache
def _import_declarations() -> None:
    for module in sorted({point.value for point in entry_points(group=ENTRY_POINTS)}):
        with contextlib.suppress(ImportError):  # a package installed without its parts
            importlib.import_module(module)


@functools.cache
def _installed_records() -> frozenset[str]:
    return frozenset(point.name for point in entry_points(group=ENTRY_POINTS))


def record_names() -> frozenset[str]:
    """The records the tools write (and their listings), as the installed packages name them
    and this process declared them: never the name of a file a user asks us to write."""
    declared = (n for kind in DECLARED.values() for n in kind.files)
    return _installed_records() | frozenset(declared)


def stamp(kind: OutputKind, record: Mapping) -> dict:
    """The record with what proves, by content, which output it belongs to and what wrote it."""
    from ... import __version__

    return {"tool": TOOL, "kind": kind.kind, "version": __version__, **record}


def read_json_record(path: Place, error: type[UserError] = BalanceError) -> dict:
    """A record file as a dict; `error` (one line) when it is not one."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise error(
            f"{path} is not a readable record ({type(exc).__name__}: {first}); nothing was changed"
        ) from None
    if not isinstance(data, dict):
        raise error(f"{path} is not a record of {TOOL} (not a JSON object); nothing was changed")
    return data


def write_json(path: Place, record: Mapping) -> None:
    """A record, atomically (temporary name, then rename)."""
    from ..atomic import write_atomic

    data = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, data.encode("utf-8"))


def tool_record(folder: Place) -> tuple[str, dict] | None:
    """(record name, record) when `folder` holds a record this tool wrote, else None."""
    for name in sorted(record_names()):
        path = folder / name
        if name.endswith(".json") and path.is_file():
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("tool") == TOOL:
                return name, record
    return None


def is_staging(entry: Place, target: str | None = None) -> bool:
    """A folder a command was writing when it was killed: hidden, named `.*.partial`, real,
    and holding our marker (for `target`, when given)."""
    name = entry.name
    if not (name.startswith(".") and name.endswith(STAGING_SUFFIX)):
        return False
    if entry.is_symlink() or not entry.is_dir():
        return False
    marker = entry / STAGING_MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_bytes())
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("tool") == TOOL
        and info.get("kind") == "staging"
        and (target is None or info.get("target") == target)
    )


def differences(old: Mapping, new: Mapping, prefix: str = "") -> str:
    """'nmin was 600, now 700, config.lr was 0.0001, now 0.01': what differs, nested maps
    opened."""
    parts = []
    for key in sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            parts.append(differences(a, b, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key} was {_short(a)}, now {_short(b)}")
    return ", ".join(parts)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse_outputs(root: Place, class_dirs: list[str]) -> None:
    """One line when SRC's "classes" would be the tool's own outputs: SRC is a split, a run,
    a cv or a study folder (its record says so), or one of its folders is any output (a
    balanced folder's parent). Judged by the records' content, not by names."""
    found = tool_record(root)
    name = str(found[1].get("kind")) if found else ""
    kind = DECLARED.get(name) or (declared_kinds().get(name) if found else None)
    if found and kind is not None and kind.not_classes:
        parts = [root / d for d in class_dirs] if kind.class_parts else []
        shown = f" ({', '.join(map(str, parts))})" if parts else ""
        raise BalanceError(
            f"{root} is a {kind.kind} output ({found[0]}): {kind.not_classes}{shown}"
        )
    for label in class_dirs:
        inner = tool_record(root / label)
        if inner is not None:
            raise BalanceError(
                f"{root}'s folder '{label}' is itself a {inner[1].get('kind', 'tool')} output "
                f"({inner[0]}), not a class: give {root / label} itself"
            )
