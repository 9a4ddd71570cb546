"""Claiming an output: checked (missing, empty, or proven ours and asked to be resumed or
replaced), inputs told apart by device and inode, locked while the command runs."""

from __future__ import annotations

import enum
import glob
import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..atomic import place, sync_folder, write_temp
from ..checks import member
from ..errors import OVERWRITE, OVERWRITE_FILE, RESUME, BalanceError
from ..storage import LOCK_NAME, Place, Remote, location
from .locks import locked
from .objects import check_remote_inputs, claim_object, locked_object, staged_in_store
from .proof import Proof, clear, prove
from .records import (
    STAGING_SUFFIX,
    TOOL,
    OutputKind,
    differences,
    is_staging,
    record_names,
    stamp,
    tool_record,
    write_json,
)
from .staging import staged, sweep_staging


class Existing(str, enum.Enum):
    """What a command does with an output folder that already holds something."""

    ERROR = "error"  # refuse it (the default for one-shot commands)
    RESUME = "resume"  # finish an earlier run with the same settings
    OVERWRITE = "overwrite"  # replace an earlier output, proven ours

    @classmethod
    def from_flags(cls, *, resume: bool = False, overwrite: bool = False) -> Existing:
        """The value for a command line's --resume / --overwrite flags."""
        if resume and overwrite:
            raise BalanceError("give --resume or --overwrite, not both")
        return cls.RESUME if resume else cls.OVERWRITE if overwrite else cls.ERROR


def identity(path: Place) -> tuple[int, int] | None:
    """(device, inode) of a path, None when it does not exist: the same folder by any name."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_place(a: Place, b: Place) -> bool:
    """Whether two places are one folder (by identity on a disk, by URL in a store)."""
    if isinstance(a, Remote) or isinstance(b, Remote):
        return a == b
    return identity(a) is not None and identity(a) == identity(b)


def chain(path: Path) -> list[tuple[int, int]]:
    """The identities of `path` (when it exists) and of every folder above it, innermost
    first; a path that does not exist yet starts at its nearest existing folder."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    found = []
    for p in (path, *path.parents):
        ident = identity(p)
        if ident is not None:
            found.append(ident)
    return found


def check_inputs(out: Path | Remote, inputs: Mapping[str, Path | Remote | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the inputs, however either
    is spelled (symbolic links, `..`, a bind mount of the same folder; a store's URLs)."""
    if isinstance(out, Remote):
        check_remote_inputs(out, inputs)
        return
    local = {what: p for what, p in inputs.items() if isinstance(p, Path)}
    out_chain = chain(out)
    out_id = identity(out)
    for what, path in local.items():
        in_id = identity(path)
        if in_id is None:
            continue
        if out_id is not None and out_id == in_id:
            raise BalanceError(f"the output {out} is the {what}; choose another")
        if in_id in out_chain[1 if out_id else 0 :]:
            raise BalanceError(
                f"the output {out} lies inside the {what} {path}; choose a place outside it"
            )
        if out_id is not None and out_id in chain(Path(path))[1:]:
            raise BalanceError(
                f"the output folder {out} contains the {what} {path}; choose a folder outside it"
            )


def overlaps(a: Place, b: Place) -> bool:
    """Whether two existing folders are one, or one lies inside the other (by identity; in
    a store, by URL)."""
    if isinstance(a, Remote) or isinstance(b, Remote):
        return (
            isinstance(a, Remote)
            and isinstance(b, Remote)
            and (a.is_relative_to(b) or b.is_relative_to(a))
        )
    ida, idb = identity(a), identity(b)
    return ida is not None and idb is not None and (ida in chain(b) or idb in chain(a))


@dataclass
class Claim:
    """A locked output folder and what was in it: the earlier output's record, if any."""

    path: Place
    kind: OutputKind
    existing: Existing
    proof: Proof | None = None  # the earlier output, proven ours (resume or overwrite)
    interrupted: Path | None = None  # an interrupted run's staging folder, to continue

    @property
    def previous(self) -> dict | None:
        """The earlier output's record (resume or overwrite), None for a new output."""
        return self.proof.record if self.proof is not None else None

    @property
    def resuming(self) -> bool:
        """Whether this claim continues an earlier run of the output."""
        return self.previous is not None and self.existing is Existing.RESUME

    def check_resume(self, settings: Mapping, what: str = "settings") -> None:
        """Refuse to resume an earlier run whose `settings` differ, naming what differs."""
        if not self.resuming:
            return
        old = self.previous.get("settings") if self.previous else None
        if not isinstance(old, dict):
            raise BalanceError(
                f"{self.path / self.kind.record} has no {what} to resume from; "
                f"{OVERWRITE} starts again"
            )
        if old != dict(settings):
            raise BalanceError(
                f"{self.path} holds a {self.kind.name} of other {what} ({differences(old, settings)}): "
                f"{OVERWRITE} replaces it, or choose another output folder"
            )

    def begin(self, record: Mapping) -> None:
        """Replace an earlier output (overwrite) or keep it (resume), remove what killed runs
        left, and write the running record, before anything else is written."""
        try:
            if self.proof is not None and self.existing is Existing.OVERWRITE:
                clear(self.path, self.proof, self.kind)
            if not isinstance(self.path, Remote):
                sweep_staging(self.path, self.kind.staging)
            write_json(
                self.path / self.kind.record, stamp(self.kind, {**record, "status": "running"})
            )
        except OSError as exc:
            raise BalanceError(f"cannot write to {self.path}: {exc.strerror or exc}") from None

    def complete(
        self, record: Mapping, files: Mapping[str, bytes] | None = None, *, status: str = "complete"
    ) -> dict:
        """Write the record that says the output is whole (`status`); return it. `files` (name -> bytes)
        are the output's own files at its root, listed in its record (a kind without a
        listing file): each is flushed under its temporary name and listed in the running
        record before it is renamed into place, so none is ever in place unlisted."""
        if self.kind.listing_file is None:
            files = dict(files or {})
            listing = {
                name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in files.items()
            }
            record = {**record, "files": listing}
            if files:
                self._land(files, stamp(self.kind, {**record, "status": "running"}))
        stamped = stamp(self.kind, {**record, "status": status})
        write_json(self.path / self.kind.record, stamped)
        return stamped

    def _land(self, files: Mapping[str, bytes], running: Mapping) -> None:
        """Files at the output's root, listed in the running record before they are in
        place: flushed under temporary names, then renamed (in a store: put once listed)."""
        if isinstance(self.path, Remote):
            write_json(self.path / self.kind.record, running)
            for name, data in files.items():
                (self.path / name).write_bytes(data)
            return
        placed = [
            (write_temp(self.path / name, data), self.path / name) for name, data in files.items()
        ]
        write_json(self.path / self.kind.record, running)
        for tmp, dst in placed:
            place(tmp, dst)
        sync_folder(self.path)

    def staged(
        self, part: str | None = None, kind: OutputKind | None = None
    ) -> AbstractContextManager[Path]:
        """Stage the whole output (part=None) or one part folder of it (a cv fold, an output
        of `kind`; a failed part is never continued, so its progress is not kept)."""
        if isinstance(self.path, Remote):
            target = self.path / part if part else self.path
            return staged_in_store(target, self.kind if part is None else kind)
        if part is None:
            return staged(self.path, self.kind, reuse=self.interrupted)
        return staged(self.path / part, kind, keep_progress=False)


def _check(out: Place, kind: OutputKind, existing: Existing) -> Proof | None:
    """The earlier output's proof once OUT may be written: missing or empty (None), or a
    proven output of this kind that the user asked to resume or replace."""
    if isinstance(out, Remote):
        if out.is_file():
            raise BalanceError(f"output exists and is not a folder: {out}")
        if not any(e.name != LOCK_NAME for e in out.iterdir()):
            return None
    elif out.exists() and (out.is_symlink() or not out.is_dir()):
        raise BalanceError(f"output exists and is not a folder: {out}")
    elif not out.exists() or not any(out.iterdir()):
        return None
    if existing is Existing.ERROR:
        hint = (
            f"{RESUME} finishes an interrupted run, {OVERWRITE} replaces it"
            if kind.resumable
            else f"{OVERWRITE} replaces it"
        )
        raise BalanceError(f"output folder exists and is not empty: {out} ({hint})")
    if existing is Existing.RESUME and not kind.resumable:
        raise BalanceError(f"a {kind.name} cannot be resumed: {OVERWRITE} replaces it")
    return prove(out, kind)


def check_claim(
    out: str | Place,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Place | None],
    existing: Existing = Existing.ERROR,
) -> tuple[Place, dict | None]:
    """What `claim` checks, without locking or creating anything (a dry run)."""
    place = location(out).resolve()
    existing = member(existing, Existing, "existing")
    check_inputs(place, inputs)
    proof = _check(place, kind, existing)
    return place, proof.record if proof is not None else None


@contextmanager
def claim(
    out: str | Place,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Place | None],
    existing: Existing = Existing.ERROR,
) -> Iterator[Claim]:
    """Check OUT, lock it (created if missing), check it again under the lock (another
    command may have written there in between), remove staging folders killed runs of it
    left beside it, and yield the Claim. A folder this made is removed again if the block
    fails and leaves it empty."""
    place, _ = check_claim(out, kind, inputs=inputs, existing=existing)
    existing = member(existing, Existing, "existing")
    if isinstance(place, Remote):
        with locked_object(place):
            yield Claim(place, kind, existing, _check(place, kind, existing))
        return
    with locked(place):
        previous = _check(place, kind, existing)
        interrupted = _left_beside(place, kind, existing)
        yield Claim(place, kind, existing, previous, interrupted)


def _left_beside(out: Path, kind: OutputKind, existing: Existing) -> Path | None:
    """Staging folders killed runs of OUT left beside it: removed, except the latest one with
    progress, which RESUME continues and ERROR refuses to throw away."""
    stale = sorted(
        (e for e in out.parent.glob(f".{_glob_escape(out.name)}.*{STAGING_SUFFIX}")),
        key=lambda e: e.stat().st_mtime_ns,
    )
    stale = [e for e in stale if is_staging(e, target=out.name)]
    progress = kind.progress
    worth = [e for e in stale if progress and (e / progress).is_file()]
    keep = worth[-1] if worth and existing is Existing.RESUME else None
    if worth and existing is Existing.ERROR:
        raise BalanceError(
            f"{out} has an interrupted run ({worth[-1].name} beside it): {RESUME} "
            f"continues it, {OVERWRITE} starts again"
        )
    for entry in stale:
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)
    return keep


def _glob_escape(name: str) -> str:

    return glob.escape(name)


def claim_file(
    path: str | Path | Remote,
    *,
    inputs: Mapping[str, Path | Remote | None],
    overwrite: bool = False,
    what: str = "output file",
) -> Path | Remote:
    """Where a single output file (a picture, a CSV) may be written: its folder exists; it is
    not a folder, not a tool's record, not inside an input or inside a tool's output
    (however spelled); and an existing file is replaced only with overwrite=True."""
    place = location(path)
    if isinstance(place, Remote):
        return claim_object(place, inputs=inputs, overwrite=overwrite, what=what)
    path = Path(place)
    folder = Path(os.path.abspath(path.parent))
    if not folder.is_dir():
        raise BalanceError(f"the folder of the {what} does not exist: {folder}")
    target = folder / path.name
    if path.name in record_names():
        raise BalanceError(f"{path.name} is the name of a record the tools write; choose another")
    if target.is_dir() and not target.is_symlink():
        raise BalanceError(f"the {what} {target} is a folder")
    check_inputs(target, inputs)
    for above in (folder.resolve(), *folder.resolve().parents):
        found = tool_record(above)
        if found:
            raise BalanceError(
                f"the {what} {target} lies inside {above}, an output of {TOOL} "
                f"({found[0]}); write it elsewhere"
            )
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise BalanceError(f"{target} exists; {OVERWRITE_FILE} replaces it")
    return target
