"""Output folders the tools may write, replace or resume: proven ours by content, one writer.

Every output kind (a balanced folder, a split, a training run, ...) has a JSON record that
names this tool and the kind, and a rule for the entries it can hold. A folder is replaced
or resumed only when its record says it is that kind of output and it holds nothing else;
then only those entries are removed. A command holds an exclusive lock on its output folder
for as long as it runs (flock on the folder itself: the kernel drops it when the process
dies, and no lock file is left behind).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import BalanceError as OutputError  # a UserError: one line, no traceback

TOOL = "balanced-aug"


@dataclass(frozen=True)
class OutputKind:
    """What one kind of output is: its record, its `kind` value and what it may hold.

    `holds(record, entry)` says whether a top-level entry of the folder belongs to this kind
    of output given its record; it looks inside the entry where it must (class folders).
    """

    name: str  # as users know it: "balance build output"
    record: str  # the record's file name
    kind: str  # the record's "kind"
    holds: Callable[[dict, Path], bool]
    resumable: bool = True  # `--resume` finishes an interrupted one


def check_inputs(out: Path, inputs: Mapping[str, Path | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the inputs."""
    for what, path in inputs.items():
        if path is None:
            continue
        path = Path(path).resolve()
        if out == path:
            raise OutputError(f"the output folder {out} is the {what}; choose another")
        if path in out.parents:
            raise OutputError(
                f"the output folder {out} lies inside the {what} {path}; choose a folder outside it"
            )
        if out in path.parents:
            raise OutputError(
                f"the output folder {out} contains the {what} {path}; choose a folder outside it"
            )


def read_json_record(path: Path) -> dict:
    """A record file as a dict; BalanceError (one line) when it is not one."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputError(
            f"{path} is not a readable record ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); "
            "nothing was changed"
        ) from None
    if not isinstance(data, dict):
        raise OutputError(
            f"{path} is not a record of {TOOL} (not a JSON object); nothing was changed"
        )
    return data


def check_output(
    out: str | Path,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Path | None],
    resume: bool = False,
    overwrite: bool = False,
) -> tuple[Path, dict | None]:
    """(OUT resolved, the record of the earlier output it holds or None) once OUT is safe to
    write: not an input, inside one or around one; missing or empty; or a proven earlier
    output of this kind that the user asked to resume or replace. Else one-line OutputError."""
    out = Path(out).resolve()
    check_inputs(out, inputs)
    if resume and overwrite:
        raise OutputError("give --resume or --overwrite, not both")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output exists and is not a folder: {out}")
    if not out.exists() or not any(out.iterdir()):
        return out, None
    if not (resume or overwrite):
        hint = (
            "--resume finishes an interrupted run, --overwrite replaces it"
            if kind.resumable
            else "--overwrite replaces it"
        )
        raise OutputError(f"output folder exists and is not empty: {out} ({hint})")
    return out, owned_record(out, kind)


@contextmanager
def claimed(
    out: str | Path,
    kind: OutputKind,
    *,
    inputs: Mapping[str, Path | None],
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[tuple[Path, dict | None]]:
    """check_output, then once more under OUT's lock, which the block holds: another command
    may have written there in between."""
    out, _ = check_output(out, kind, inputs=inputs, resume=resume, overwrite=overwrite)
    with locked(out):
        yield check_output(out, kind, inputs=inputs, resume=resume, overwrite=overwrite)


def write_json(path: Path, record: dict) -> None:
    """A record, atomically (temporary name, then rename)."""
    from .imageio import write_atomic

    data = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomic(Path(path), data.encode("utf-8"))


def owned_record(out: Path, kind: OutputKind) -> dict:
    """The record of an earlier output of this kind in `out`, checked entry by entry.

    BalanceError when `out` is not provably such an output: no record, a record of something
    else, or any entry the output kind cannot hold (the first one is named).
    """
    path = out / kind.record
    if not path.is_file() or path.is_symlink():
        raise OutputError(
            f"{out} holds no {kind.record}: not a {kind.name}, so it is neither "
            "resumed nor replaced"
        )
    record = read_json_record(path)
    if record.get("tool") != TOOL or record.get("kind") != kind.kind:
        found = f"{record.get('tool')!r}/{record.get('kind')!r}"
        raise OutputError(
            f"{path} is not the record of a {kind.name} (tool/kind {found}); nothing was changed"
        )
    for entry in sorted(out.iterdir()):
        if not kind.holds(record, entry):
            raise OutputError(
                f"{out} holds {entry.name!r}, which a {kind.name} never holds: "
                "move it away or choose another output folder; nothing was changed"
            )
    return record


def clear(out: Path, kind: OutputKind, record: dict) -> None:
    """Remove every entry of an output proven ours by owned_record (the folder stays)."""
    for entry in sorted(out.iterdir()):
        if entry.name == kind.record:
            continue
        if kind.holds(record, entry):
            remove(entry)
    (out / kind.record).unlink(
        missing_ok=True
    )  # last: until then the folder is still provably ours


def remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)


def files_only(folder: Path, allowed: Callable[[str], bool]) -> bool:
    """A real folder whose entries are all regular files with allowed names."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return all(f.is_file() and not f.is_symlink() and allowed(f.name) for f in folder.iterdir())


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
        raise OutputError(f"output exists and is not a folder: {out}")
    created = [d for d in (out, *out.parents) if not d.exists()]  # innermost first
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = lock_holder(fd)
            who = f"process {pid}" if pid else "another process"
            raise OutputError(
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
