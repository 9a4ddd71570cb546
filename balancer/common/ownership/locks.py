"""Holding an output while a command writes it: an exclusive flock on a local folder (the
kernel drops it when the process dies), or a store's lock object (`objects.locked_object`);
and who holds one."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BalanceError
from ..storage import Place, Remote
from .objects import object_writer


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


def writer_of(folder: Place) -> str | None:
    """'process N' (or 'another process') while a command holds `folder`'s lock, else None."""
    import fcntl

    if isinstance(folder, Remote):
        return object_writer(folder)
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        pid = lock_holder(fd)
        return f"process {pid}" if pid else "another process"
    finally:
        os.close(fd)  # closing drops a shared lock this took


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
