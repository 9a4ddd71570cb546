"""Proof that an earlier output is the tool's own, by its record's listing.

An output's record lists every file the tool wrote there with its size and sha256 (inline
in a JSON record, or in the CSV listing the record names and checksums). An earlier output
is ours only where every entry in it is one of: a file the listing names, with that size and
(for a finished output) that sha256; a file the tool was writing (its temporary name); a
staging folder (proven by its marker); or a part of it that is an output of its own, proven
the same way. Anything else, whatever its name or suffix, is named and nothing is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import TEMP_SUFFIX
from ..errors import BalanceError, UserError
from ..shapes import shape_problems
from ..storage import LOCK_NAME, Place, Remote, children, journal_name, journal_strays, relative
from .records import TOOL, OutputKind, is_staging, read_json_record


@dataclass(frozen=True, slots=True)
class Listed:
    """What the tool wrote under one name: its size in bytes and its sha256."""

    size: int
    sha256: str

    def as_dict(self) -> dict:
        """As a JSON record lists it."""
        return {"size": self.size, "sha256": self.sha256}


Listing = Mapping[str, Listed]  # posix path relative to the output -> what was written there


def sha256_file(path: Place) -> str:
    """The sha256 of a file's bytes, read in blocks (a model of gigabytes is not held)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def listed_now(path: Path) -> Listed:
    """A file as a listing would record it now."""
    return Listed(path.stat().st_size, sha256_file(path))


def list_files(folder: Path, *, leave_out: Iterable[str] = ()) -> dict[str, dict]:
    """A JSON record's listing of every file under `folder` (posix paths, sorted), except the
    top-level entries named in `leave_out` (the record itself, sub-outputs)."""
    skip = set(leave_out)
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if rel.parts[0] in skip or not path.is_file() or path.is_symlink():
            continue
        found[rel.as_posix()] = listed_now(path).as_dict()
    return found


def inline_listing(record: Mapping, key: str = "files") -> dict[str, Listed]:
    """The listing a JSON record holds under `key` ({path: {size, sha256}}); BalanceError
    when it has none or it is damaged (an output without one is never proven)."""
    files = record.get(key, {} if record.get("status") == "running" else None)
    if not isinstance(files, dict):
        raise BalanceError(
            f"its record lists no files ('{key}' is missing: written by version "
            f"{record.get('version')!r}, before outputs listed their files)"
        )
    listing = {}
    for name, entry in files.items():
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not (isinstance(size, int) and isinstance(sha, str) and len(sha) == 64):
            raise BalanceError(f"its record's listing of {name!r} is damaged")
        listing[name] = Listed(size, sha)
    return listing


@dataclass
class Proof:
    """An earlier output proven ours: its record, and exactly what may be removed."""

    record: dict
    files: list[Place] = field(default_factory=list)  # listed files and our temporaries
    folders: list[Place] = field(default_factory=list)  # folders on the way to those
    parts: list[Place] = field(default_factory=list)  # staging folders, proven sub-outputs
    foreign: list[str] = field(default_factory=list)  # what is not ours (lenient proofs only)


def owned_record(out: Place, kind: OutputKind) -> dict:
    """The record of an earlier output of this kind in `out`, proven entry by entry.

    BalanceError when `out` is not provably such an output: no record, a record of something
    else, or any entry the record's listing does not prove (the first one is named)."""
    return prove(out, kind).record


def prove(out: Place, kind: OutputKind, *, lenient: bool = False) -> Proof:
    """owned_record's proof: the record, and every entry of `out` that is ours. `lenient`
    proves what it can and lists the rest as foreign instead of refusing (what is left of
    an output just replaced: only what is ours is removed)."""
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
    damaged = shape_problems(record, kind.shape, required=()) if kind.shape else []
    if damaged:
        raise BalanceError(
            f"{path} is damaged ({', '.join(damaged)} missing or of the wrong type): not "
            f"provably a {kind.name}; nothing was changed"
        )
    try:
        listing = kind.listing(out, record)
    except UserError as exc:
        raise BalanceError(
            f"{out} is not provably a {kind.name}: {exc}; nothing was changed"
        ) from None
    finished = record.get("status", "complete") == "complete"
    own, journal = tuple(kind.files), None
    if isinstance(out, Remote):  # its lock object, and its journal while it runs
        own = (*own, LOCK_NAME)
        journal = journal_name(kind.listing_file) if kind.listing_file and not finished else None
    proof = prove_files(
        out,
        listing,
        finished=finished,
        own=own,
        part=lambda entry: (
            is_staging(entry) or _journal(entry, journal) or kind.holds(record, entry)
        ),
        what=kind.name,
        lenient=lenient,
    )
    proof.record = record
    return proof


def prove_files(
    out: Place,
    listing: Listing,
    *,
    finished: bool,
    own: Iterable[str] = (),
    part: Callable[[Place], bool] = lambda entry: False,
    what: str,
    lenient: bool = False,
) -> Proof:
    """Every entry of `out` proven ours, else one BalanceError naming the first that is not:
    the files named in `own` at its root (a record, a listing; or one being written under
    its temporary name), the top-level entries `part` proves, and every other file listed,
    with (once `finished`) its listed size and sha256. While a run is unfinished its
    temporary files and the folders it made for files not yet written are ours too. `lenient`
    lists what is not ours in `foreign` instead."""
    own = set(own)
    proof = Proof({})

    def foreign(rel: str, why: str) -> None:
        if not lenient:
            raise BalanceError(
                f"{out} holds {rel!r}, which a {what} never holds ({why}): move it away or "
                "choose another output folder; nothing was changed"
            )
        proof.foreign.append(rel)

    checks: list[tuple[str, Place, Listed]] = []
    listed_dirs = set()
    for name in listing:
        while "/" in name:
            name = name.rsplit("/", 1)[0]
            listed_dirs.add(name)
    for entry in children(out):
        name = entry.name
        if name in own or (name.endswith(TEMP_SUFFIX) and name[: -len(TEMP_SUFFIX)] in own):
            if entry.is_symlink() or not entry.is_file():
                foreign(name, "not a regular file")
            else:
                proof.files.append(entry)
        elif _is_part(entry, part, lenient=lenient):
            proof.parts.append(entry)
        else:
            _walk(
                out,
                entry,
                (listing, listed_dirs),
                proof,
                checks,
                finished=finished,
                foreign=foreign,
            )
    if finished:
        for rel, path in _changed(checks):
            foreign(rel, "its size or sha256 is not what its record lists: changed since then")
            proof.files.remove(path)
    return proof


def _journal(entry: Place, name: str | None) -> bool:
    """Whether `entry` is a running output's journal in a store; one line naming an object in
    it that is not a journal object."""
    if name is None or entry.name != name or not isinstance(entry, Remote):
        return False
    strays = journal_strays(entry)
    if strays:
        raise BalanceError(
            f"{entry.parent} holds {relative(strays[0], entry.parent)!r}, which its journal "
            "never holds: move it away or choose another output folder; nothing was changed"
        )
    return True


def _is_part(entry: Place, part: Callable[[Place], bool], *, lenient: bool) -> bool:
    """Whether a top-level entry is a proven part; a part that says in its own words why it
    is not ours stops a strict proof with that line."""
    try:
        return part(entry)
    except UserError:
        if not lenient:
            raise
        return False


def _walk(
    out: Place,
    top: Place,
    listed: tuple[Listing, set[str]],
    proof: Proof,
    checks: list[tuple[str, Place, Listed]],
    *,
    finished: bool,
    foreign: Callable[[str, str], None],
) -> None:
    """Every file under `top` listed, every folder real and (once the output is finished) on
    the way to a listed file; while a run is unfinished, also the files it was writing (its
    temporary names) and the folders it made for files not yet written."""
    listing, listed_dirs = listed
    stack = [top]
    while stack:
        path = stack.pop()
        rel = relative(path, out)
        mode = _mode(path)
        if stat.S_ISDIR(mode):
            if finished and rel not in listed_dirs:
                foreign(rel, "its record lists nothing in it")
                continue
            proof.folders.append(path)
            stack.extend(reversed(children(path)))
        elif not stat.S_ISREG(mode):
            foreign(rel, "not a regular file")
        elif rel in listing:
            checks.append((rel, path, listing[rel]))
            proof.files.append(path)
        elif not finished and path.name.endswith(TEMP_SUFFIX):
            proof.files.append(path)
        else:
            foreign(rel, "its record does not list it")


def _mode(path: Place) -> int:
    """A file's mode (links not followed); an object in a store is a regular file, a
    prefix a folder."""
    if isinstance(path, Remote):
        return stat.S_IFDIR if path.is_dir() else stat.S_IFREG
    return os.lstat(path).st_mode


def _changed(checks: list[tuple[str, Place, Listed]]) -> list[tuple[str, Place]]:
    """The listed files whose size or sha256 is not what the listing records, in order
    (hashed on several threads: hashlib works outside Python's lock)."""

    def differs(check: tuple[str, Path, Listed]) -> bool:
        _, path, want = check
        try:
            return path.stat().st_size != want.size or sha256_file(path) != want.sha256
        except OSError:
            return True

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as ex:
        bad = list(ex.map(differs, checks))
    return [(rel, path) for (rel, path, _), b in zip(checks, bad, strict=True) if b]


def proven(entry: Place, kind: OutputKind) -> bool:
    """Whether `entry` is a real folder proven an output of `kind` (a run inside a cv folder)."""
    if entry.is_symlink() or not entry.is_dir():
        return False
    try:
        prove(entry, kind)
        return True
    except UserError:
        return False


def clear(out: Place, proof: Proof, kind: OutputKind) -> None:
    """Remove what `proof` proved ours (the folder stays): files, then the parts, then folders
    left empty; the record last, so until then the folder is provably ours."""

    for path in proof.files:
        if path.name != kind.record or path.parent != out:
            path.unlink(missing_ok=True)
    for part in proof.parts:
        if isinstance(part, Remote):
            for obj in list(part.walk_files()):
                obj.unlink(missing_ok=True)
        elif part.is_dir() and not part.is_symlink():
            shutil.rmtree(part)
        else:
            part.unlink(missing_ok=True)
    for folder in sorted(proof.folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # something appeared in it meanwhile: it stays
            folder.rmdir()
    (out / kind.record).unlink(missing_ok=True)
