"""What proves an output is the tool's own: its JSON record (tool, kind, version) and the
entries its kind may hold; a staging folder's marker. Nothing is deleted without this proof."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..atomic import TEMP_SUFFIX
from ..errors import BalanceError, UserError

TOOL = "balanced-aug"


STAGING_SUFFIX = ".partial"


STAGING_MARKER = ".balanced-aug-staging"  # inside a staging folder: proves it is ours


# The records the tools write: never a name for a file a user asks us to write.
RECORD_NAMES = frozenset(
    [
        "manifest.csv",
        "balance.json",
        "split.csv",
        "split.json",
        "metrics.json",
        "cv.json",
        "study.json",
    ]
)


@dataclass(frozen=True)
class OutputKind:
    """One kind of output: its record, its `kind` value and what it may hold.

    `files` are the plain files it may hold at its root (the record among them);
    `holds(record, entry)` says whether any other top-level entry belongs to it, looking
    inside where it must. A staging folder (proven by its marker) and a file being
    written under one of `files` are always its own. `staging` are the glob patterns,
    relative to the folder, where staging folders of its parts may be left.
    """

    name: str  # as users know it: "balance build output"
    record: str  # the record's file name
    kind: str  # the record's "kind"
    files: frozenset[str] = frozenset()
    holds: Callable[[dict, Path], bool] = lambda record, entry: False
    resumable: bool = True  # `--resume` finishes an interrupted one
    staging: tuple[str, ...] = ()
    progress: str | None = None  # a file in a staging folder that makes it worth resuming

    def owns(self, record: dict, entry: Path) -> bool:
        """Whether `entry` in an output is one this kind of output writes, per its record."""
        name = entry.name
        if name in self.files or (
            name.endswith(TEMP_SUFFIX) and name[: -len(TEMP_SUFFIX)] in self.files
        ):
            return plain_file(entry)
        return is_staging(entry) or self.holds(record, entry)


def stamp(kind: OutputKind, record: Mapping) -> dict:
    """The record with what proves, by content, which output it belongs to and what wrote it."""
    from ... import __version__

    return {"tool": TOOL, "kind": kind.kind, "version": __version__, **record}


def read_json_record(path: Path, error: type[UserError] = BalanceError) -> dict:
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


def write_json(path: Path, record: Mapping) -> None:
    """A record, atomically (temporary name, then rename)."""
    from ..atomic import write_atomic

    data = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomic(Path(path), data.encode("utf-8"))


def tool_record(folder: Path) -> tuple[str, dict] | None:
    """(record name, record) when `folder` holds a record this tool wrote, else None."""
    for name in sorted(RECORD_NAMES):
        path = folder / name
        if name.endswith(".json") and path.is_file():
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("tool") == TOOL:
                return name, record
    return None


def owned_record(out: Path, kind: OutputKind) -> dict:
    """The record of an earlier output of this kind in `out`, checked entry by entry.

    BalanceError when `out` is not provably such an output: no record, a record of something
    else, or any entry the output kind cannot hold (the first one is named).
    """
    path = out / kind.record
    if not path.is_file() or path.is_symlink():
        raise BalanceError(
            f"{out} holds no {kind.record}: not a {kind.name}, so it is neither resumed nor replaced"
        )
    record = read_json_record(path)
    if record.get("tool") != TOOL or record.get("kind") != kind.kind:
        found = f"{record.get('tool')!r}/{record.get('kind')!r}"
        raise BalanceError(
            f"{path} is not the record of a {kind.name} (tool/kind {found}); nothing was changed"
        )
    for entry in sorted(out.iterdir()):
        if not kind.owns(record, entry):
            raise BalanceError(
                f"{out} holds {entry.name!r}, which a {kind.name} never holds: "
                "move it away or choose another output folder; nothing was changed"
            )
    return record


def proven(entry: Path, kind: OutputKind) -> bool:
    """Whether `entry` is a real folder proven an output of `kind` (a run inside a cv folder)."""
    if entry.is_symlink() or not entry.is_dir():
        return False
    try:
        owned_record(entry, kind)
        return True
    except UserError:
        return False


def plain_file(entry: Path) -> bool:
    """A regular file, not a link."""
    return entry.is_file() and not entry.is_symlink()


def files_only(folder: Path, allowed: Callable[[str], bool]) -> bool:
    """A real folder whose entries are all regular files with allowed names."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(plain_file(f) and allowed(f.name) for f in folder.iterdir())


def is_staging(entry: Path, target: str | None = None) -> bool:
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
