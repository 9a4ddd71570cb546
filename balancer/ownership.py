"""The one door every output goes through: claim, lock, stage, record, complete.

Every output kind (a balanced folder, a split, a training run, ...) has a JSON record that
names this tool, the kind and the version, and a rule for the entries it may hold. A
command `claim`s its output folder: the folder must be missing or empty, or be proven an
earlier output of that kind (its record *and* nothing else inside) that the user asked to
resume or replace (`Existing`). The claim holds an exclusive lock on the folder (flock on
the folder itself: the kernel drops it when the process dies, no lock file is left).

Under the claim a command either writes in place (a running record first, every file
atomic, the complete record last) or stages a whole folder beside its target and renames
it into place. A staging folder carries a marker inside, so one left by a killed run is
recognised as the tool's own and removed on the next run; nothing without that proof is
ever deleted. Single files (a plot, a CSV) go through `claim_file`: never over an existing
file unless asked, never inside an input folder or a tool's output.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .atomic import TEMP_SUFFIX
from .errors import BalanceError, UserError

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
    from . import __version__

    return {"tool": TOOL, "kind": kind.kind, "version": __version__, **record}


# -- inputs and outputs are told apart by device and inode, not by spelling -----------------


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a path, None when it does not exist: the same folder by any name."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


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


def check_inputs(out: Path, inputs: Mapping[str, Path | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the inputs, however either
    is spelled (symbolic links, `..`, a bind mount of the same folder)."""
    out_chain = chain(out)
    out_id = identity(out)
    for what, path in inputs.items():
        if path is None:
            continue
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


def overlaps(a: Path, b: Path) -> bool:
    """Whether two existing folders are one, or one lies inside the other (by identity)."""
    ida, idb = identity(a), identity(b)
    return ida is not None and idb is not None and (ida in chain(b) or idb in chain(a))


# -- records --------------------------------------------------------------------------------


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
    from .atomic import write_atomic

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


def clear(out: Path, kind: OutputKind, record: dict) -> None:
    """Remove every entry of an output proven ours by owned_record (the folder stays); an
    entry that is not provably its own stays too."""
    for entry in sorted(out.iterdir()):
        if entry.name != kind.record and kind.owns(record, entry):
            remove(entry)
    (out / kind.record).unlink(missing_ok=True)  # last: until then the folder is provably ours


def remove(entry: Path) -> None:
    """Remove a file, a link or a folder tree."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)


def plain_file(entry: Path) -> bool:
    """A regular file, not a link."""
    return entry.is_file() and not entry.is_symlink()


def files_only(folder: Path, allowed: Callable[[str], bool]) -> bool:
    """A real folder whose entries are all regular files with allowed names."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(plain_file(f) and allowed(f.name) for f in folder.iterdir())


# -- staging folders ------------------------------------------------------------------------


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_staging(target: Path) -> Path:
    """An empty hidden folder beside `target` with our marker inside, with the permissions
    the umask gives (mkdtemp's are 0700)."""
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent)
    )
    os.chmod(tmp, 0o777 & ~_umask())
    _mark(tmp, target.name)
    return tmp


def _mark(folder: Path, target: str) -> None:
    info = {"tool": TOOL, "kind": "staging", "target": target, "pid": os.getpid()}
    (folder / STAGING_MARKER).write_text(json.dumps(info), encoding="utf-8")


def sweep_staging(folder: Path, patterns: tuple[str, ...] = (f".*{STAGING_SUFFIX}",)) -> int:
    """Remove our staging folders matching `patterns` under `folder`; how many were removed.
    Only under the lock of the output they belong to: nobody else is writing them."""
    removed = 0
    for pattern in patterns:
        for entry in sorted(folder.glob(pattern)):
            if is_staging(entry):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


@contextmanager
def staged(
    target: Path, kind: OutputKind | None = None, reuse: Path | None = None
) -> Iterator[Path]:
    """Yield a staging folder beside `target` (a new one, or `reuse`: an interrupted run's);
    when the block succeeds it becomes `target`.

    On any failure (Ctrl-C included) the staging folder is removed and `target` is left as
    it was, unless the folder holds the kind's progress (a run that `--resume` continues).
    An existing `target` (the claimed folder, empty or an earlier output proven of `kind`)
    is moved aside first and then cleared of what is provably its own only.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = reuse or _new_staging(target)
    try:
        yield tmp
        (tmp / STAGING_MARKER).unlink()
        if target.exists():
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent
                )
            )
            os.replace(target, old)  # onto the empty folder just made: atomic
            _mark(old, target.name)  # a kill from here on leaves a staging folder, swept later
            os.replace(tmp, target)
            _discard(old, kind)
        else:
            os.replace(tmp, target)
    finally:
        progress = kind.progress if kind is not None else None
        if tmp.exists() and not (progress and (tmp / progress).is_file()):
            shutil.rmtree(tmp, ignore_errors=True)


def _discard(old: Path, kind: OutputKind | None) -> None:
    """Remove a replaced output: every entry its record proves its own, then the record;
    anything else (a file someone put there meanwhile) stays where it is, and is named."""
    (old / STAGING_MARKER).unlink()
    record = None
    if kind is not None and plain_file(old / kind.record):
        try:
            record = read_json_record(old / kind.record)
        except UserError:
            record = None
    if record is not None and kind is not None and record.get("kind") == kind.kind:
        for entry in sorted(old.iterdir()):
            if entry.name != kind.record and kind.owns(record, entry):
                remove(entry)
        (old / kind.record).unlink()
    try:
        old.rmdir()
    except OSError:  # something that was not ours is in it: keep it, and say where
        import warnings

        from .errors import ToolWarning

        warnings.warn(
            f"the replaced output kept entries it could not prove its own: {old}",
            ToolWarning,
            stacklevel=3,
        )


# -- claims ---------------------------------------------------------------------------------


@dataclass
class Claim:
    """A locked output folder and what was in it: the earlier output's record, if any."""

    path: Path
    kind: OutputKind
    existing: Existing
    previous: dict | None = None  # the earlier output's record (resume or overwrite)
    interrupted: Path | None = None  # an interrupted run's staging folder, to continue

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
                "--overwrite starts again"
            )
        if old != dict(settings):
            raise BalanceError(
                f"{self.path} holds a {self.kind.name} of other {what} ({differences(old, settings)}): "
                "--overwrite replaces it, or choose another output folder"
            )

    def begin(self, record: Mapping) -> None:
        """Replace an earlier output (overwrite) or keep it (resume), remove what killed runs
        left, and write the running record, before anything else is written."""
        try:
            if self.previous is not None and self.existing is Existing.OVERWRITE:
                clear(self.path, self.kind, self.previous)
            sweep_staging(self.path, self.kind.staging)
            write_json(
                self.path / self.kind.record, stamp(self.kind, {**record, "status": "running"})
            )
        except OSError as exc:
            raise BalanceError(f"cannot write to {self.path}: {exc.strerror or exc}") from None

    def complete(self, record: Mapping) -> dict:
        """Write the record that says the output is whole; return it."""
        stamped = stamp(self.kind, {**record, "status": "complete"})
        write_json(self.path / self.kind.record, stamped)
        return stamped

    def staged(self, part: str | None = None) -> AbstractContextManager[Path]:
        """Stage the whole output (part=None) or one part folder of it (a cv fold)."""
        if part is None:
            return staged(self.path, self.kind, reuse=self.interrupted)
        return staged(self.path / part)


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


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(out: Path, kind: OutputKind, existing: Existing) -> dict | None:
    """The earlier output's record once OUT may be written: missing or empty (None), or a
    proven output of this kind that the user asked to resume or replace."""
    if out.exists() and (out.is_symlink() or not out.is_dir()):
        raise BalanceError(f"output exists and is not a folder: {out}")
    if not out.exists() or not any(out.iterdir()):
        return None
    if existing is Existing.ERROR:
        hint = (
            "--resume finishes an interrupted run, --overwrite replaces it"
            if kind.resumable
            else "--overwrite replaces it"
        )
        raise BalanceError(f"output folder exists and is not empty: {out} ({hint})")
    if existing is Existing.RESUME and not kind.resumable:
        raise BalanceError(f"a {kind.name} cannot be resumed: --overwrite replaces it")
    return owned_record(out, kind)


def check_claim(
    out: str | Path,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Path | None],
    existing: Existing = Existing.ERROR,
) -> tuple[Path, dict | None]:
    """What `claim` checks, without locking or creating anything (a dry run)."""
    out = Path(out).resolve()
    check_inputs(out, inputs)
    return out, _check(out, kind, existing)


@contextmanager
def claim(
    out: str | Path,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Path | None],
    existing: Existing = Existing.ERROR,
) -> Iterator[Claim]:
    """Check OUT, lock it (created if missing), check it again under the lock (another
    command may have written there in between), remove staging folders killed runs of it
    left beside it, and yield the Claim. A folder this made is removed again if the block
    fails and leaves it empty."""
    out, _ = check_claim(out, kind, inputs=inputs, existing=existing)
    with locked(out):
        previous = _check(out, kind, existing)
        interrupted = _left_beside(out, kind, existing)
        yield Claim(out, kind, existing, previous, interrupted)


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
            f"{out} has an interrupted run ({worth[-1].name} beside it): --resume "
            "continues it, --overwrite starts again"
        )
    for entry in stale:
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)
    return keep


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def lock_holder(fd: int) -> int | None:
    """The pid holding a flock on the file behind fd, from /proc/locks (Linux), else None."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == ident:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


@contextmanager
def locked(out: Path) -> Iterator[Path]:
    """Hold an exclusive lock on the folder `out` (created if missing) inside the block.

    A second command on the same folder gets BalanceError naming the holder's pid. A folder
    this call created (and its parents it created) is removed again when the block fails
    and leaves it empty.
    """
    import fcntl

    if out.exists() and not out.is_dir():
        raise BalanceError(f"output exists and is not a folder: {out}")
    created = [d for d in (out, *out.parents) if not d.exists()]  # innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BalanceError(f"cannot create {out}: {exc.strerror or exc}") from None
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = lock_holder(fd)
            who = f"process {pid}" if pid else "another process"
            raise BalanceError(
                f"{out} is in use by {who} (another command is writing it); wait for it to finish"
            ) from None
        try:
            yield out
        except BaseException:
            for folder in created:  # what this call made, while still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
    finally:
        os.close(fd)


# -- single files ---------------------------------------------------------------------------


def claim_file(
    path: str | Path,
    *,
    inputs: Mapping[str, Path | None],
    overwrite: bool = False,
    what: str = "output file",
) -> Path:
    """Where a single output file (a picture, a CSV) may be written: its folder exists; it is
    not a folder, not a tool's record, not inside an input or inside a tool's output
    (however spelled); and an existing file is replaced only with overwrite=True."""
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    if not folder.is_dir():
        raise BalanceError(f"the folder of the {what} does not exist: {folder}")
    target = folder / path.name
    if path.name in RECORD_NAMES:
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
        raise BalanceError(f"{target} exists; --overwrite replaces it")
    return target
