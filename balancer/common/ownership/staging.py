"""Whole folders staged beside their target and renamed into place; what a killed run left
behind is swept, and an earlier output is cleared only of what its record proves its own."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..atomic import sync_folder, sync_tree
from ..errors import ToolWarning, UserError
from .proof import clear, prove
from .records import STAGING_MARKER, STAGING_SUFFIX, TOOL, OutputKind, is_staging


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
    target: Path,
    kind: OutputKind | None = None,
    reuse: Path | None = None,
    *,
    keep_progress: bool = True,
) -> Iterator[Path]:
    """Yield a staging folder beside `target` (a new one, or `reuse`: an interrupted run's);
    when the block succeeds it becomes `target`, made durable first.

    On any failure (Ctrl-C included) the staging folder is removed and `target` is left as
    it was, unless the folder holds the kind's progress (a run that `--resume` continues)
    and `keep_progress`.
    That progress stays inside until the folder is in place, and goes then: a kill at any
    moment leaves either the progress or the whole output. An existing `target` (the
    claimed folder, empty or an earlier output proven of `kind`) is moved aside first and
    then cleared of what is provably its own only.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = reuse or _new_staging(target)
    progress = kind.progress if kind is not None else None
    try:
        yield tmp
        (tmp / STAGING_MARKER).unlink()
        sync_tree(tmp)
        if target.exists():
            old = Path(
                tempfile.mkdtemp(
                    prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent
                )
            )
            os.replace(target, old)  # onto the empty folder just made: atomic
            _mark(old, target.name)  # a kill from here on leaves a staging folder, swept later
            os.replace(tmp, target)
            sync_folder(target.parent)
            _discard(old, kind)
        else:
            os.replace(tmp, target)
            sync_folder(target.parent)
        if progress:  # the output is in place: what a resumed run needed goes
            shutil.rmtree(target / Path(progress).parts[0], ignore_errors=True)
    finally:
        if tmp.exists() and not (keep_progress and progress and (tmp / progress).is_file()):
            shutil.rmtree(tmp, ignore_errors=True)


def _discard(old: Path, kind: OutputKind | None) -> None:
    """Remove a replaced output: what its record proves its own, then the record; anything
    else (a file someone put there meanwhile) stays where it is, and is named."""
    (old / STAGING_MARKER).unlink()
    if kind is not None:
        with suppress(UserError):  # no record of its kind: nothing in it is provably ours
            clear(old, prove(old, kind, lenient=True), kind)
    try:
        old.rmdir()
    except OSError:  # something that was not ours is in it: keep it, and say where
        warnings.warn(
            f"the replaced output kept entries it could not prove its own: {old}",
            ToolWarning,
            stacklevel=3,
        )
