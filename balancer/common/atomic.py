"""Files that appear whole or not at all: written under a temporary name, then renamed.

A pool worker never renames a file into place once the command that started it is gone
(killed, even by SIGKILL): it exits instead, so nothing lands after the command ends.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".part"  # not an image extension: no loader reads a half-written file

_GUARD_PID: int | None = None


def stop_writes_when_parent_dies(pid: int | None) -> None:
    """In a pool worker: never rename a file into place once the process `pid` (the command
    that started the pool) is gone; the worker exits instead."""
    global _GUARD_PID
    _GUARD_PID = pid


def parent_gone() -> bool:
    """Whether the folder a write goes into vanished (a user removed it mid-run)."""
    pid = _GUARD_PID
    return pid is not None and os.getpid() != pid and os.getppid() != pid


def _replace_via_temp(dst: Path, write: Callable[[Path], object]) -> None:
    tmp = dst.with_name(dst.name + TEMP_SUFFIX)
    try:
        write(tmp)
        if parent_gone():
            tmp.unlink(missing_ok=True)
            os._exit(1)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(dst: Path, data: bytes) -> None:
    """Write bytes under a temporary name, then rename: dst only ever appears whole."""
    _replace_via_temp(Path(dst), lambda tmp: tmp.write_bytes(data))


def copy_atomic(
    src: Path, dst: Path, *, link: bool = False, check: Callable[[Path], None] | None = None
) -> None:
    """Copy src to dst byte for byte (hard link when asked and possible), atomically;
    `check(tmp)` may refuse what was copied before it is renamed into place."""

    def put(tmp: Path) -> None:
        linked = False
        if link:
            try:
                os.link(src, tmp)
                linked = True
            except OSError:
                pass  # another file system, or links not supported: copy instead
        if not linked:
            shutil.copyfile(src, tmp)
        if check is not None:
            check(tmp)

    _replace_via_temp(Path(dst), put)
