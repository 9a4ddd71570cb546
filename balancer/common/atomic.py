"""Files that appear whole or not at all, and stay so after a power cut.

A file is written under a temporary name, flushed to the disk (`fsync`), renamed into place,
and its folder flushed too: once the rename is on the disk, so are the bytes, so a crash or a
power cut leaves either the old state or the whole new file, never a name with half a file
(or none) behind it. `set_durable(False)` skips the flushes (a scratch disk, where a power
cut loses the run anyway); renames stay atomic either way.

A pool worker never writes once the command that started it is gone (killed, even by
SIGKILL): it exits instead, so nothing lands after the command ends.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .storage import Remote

TEMP_SUFFIX = ".part"  # not an image extension: no loader reads a half-written file

_GUARD_PID: int | None = None
_DURABLE = True


def set_durable(durable: bool) -> None:  # noqa: FBT001  (a setting, given positionally)
    """Whether this process flushes files and folders to the disk before it relies on them."""
    global _DURABLE
    _DURABLE = bool(durable)


def durable() -> bool:
    """Whether this process flushes what it writes (set_durable)."""
    return _DURABLE


def stop_writes_when_parent_dies(pid: int | None) -> None:
    """In a pool worker: never write once the process `pid` (the command that started the
    pool) is gone; the worker exits instead, within a fraction of a second, busy or idle
    (a watchdog thread, started once per worker)."""
    global _GUARD_PID
    started = _GUARD_PID is not None
    _GUARD_PID = pid
    if pid is not None and not started:

        def watch() -> None:
            while not command_gone():
                time.sleep(0.2)
            os._exit(1)

        threading.Thread(target=watch, name="exit-with-command", daemon=True).start()


def command_gone() -> bool:
    """Whether the command that started this pool worker is gone."""
    pid = _GUARD_PID
    return pid is not None and os.getpid() != pid and os.getppid() != pid


def _flush(fd: int) -> None:
    """A file's bytes to the disk, and what reading them back needs (its size): fdatasync,
    which leaves out its times."""
    getattr(os, "fdatasync", os.fsync)(fd)


def sync_file(path: Path) -> None:
    """Flush a file's bytes to the disk (when this process is durable)."""
    if not _DURABLE:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        _flush(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the names renamed into it) to the disk, where the file
    system allows it."""
    if not _DURABLE:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> bool:
    """Flush everything written to the file system `path` is on, in one call (Linux's
    syncfs: one journal commit for a whole batch of files, where a flush per file pays one
    each); False where the call is not available (the caller then flushes file by file)."""
    if not _DURABLE:
        return True
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    return True


def sync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder` (a staged output, before its rename)."""
    if not _DURABLE:
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            sync_file(path)
        elif path.is_dir() and not path.is_symlink():
            sync_folder(path)
    sync_folder(folder)


def named(exc: OSError, path: Path) -> OSError:
    """The error with the file it happened to (a write's "No space left on device" names
    none by itself)."""
    if exc.filename is None and exc.errno is not None:
        return OSError(exc.errno, exc.strerror, str(path))
    return exc


def write_all(fd: int, data: bytes, path: Path, *, flush: bool | None = None) -> None:
    """Write every byte to an open file, flushed (`flush`; None: when this process is
    durable); an error names `path`."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if _DURABLE if flush is None else flush:
            _flush(fd)
    except OSError as exc:
        raise named(exc, path) from None


def temp_path(dst: Path) -> Path:
    """The name a file is written under before it is renamed to `dst`."""
    return dst.with_name(dst.name + TEMP_SUFFIX)


def _write_temp(dst: Path, write: Callable[[Path], object], *, flush: bool | None) -> Path:
    """`write(tmp)` under dst's temporary name, flushed (`flush`; None: when this process is
    durable); the temporary name is returned (it is removed again on any failure)."""
    tmp = temp_path(dst)
    try:
        write(tmp)
        if flush or (flush is None and _DURABLE):
            sync_file(tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise named(exc, tmp) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_temp(dst: Path, data: bytes, *, flush: bool | None = None) -> Path:
    """Bytes under dst's temporary name, flushed (`flush`; None: when this process is
    durable): for a caller that renames it into place itself (after recording it)."""
    tmp = temp_path(Path(dst))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data, tmp, flush=flush)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def place(tmp: Path, dst: Path) -> None:
    """Rename a flushed temporary file into place (its folder is flushed by the caller)."""
    os.replace(tmp, dst)


def write_atomic(dst: Path | Remote, data: bytes) -> None:
    """Write bytes under a temporary name, flush, rename, flush the folder: dst only ever
    appears whole, and stays whole after a power cut. In a store, one put: an object
    appears whole when the put completes."""
    if isinstance(dst, Remote):
        try:
            dst.write_bytes(data)
        except OSError as exc:
            raise named(exc, dst) from None  # type: ignore[arg-type]
        return
    dst = Path(dst)
    tmp = write_temp(dst, data)
    try:
        if command_gone():
            tmp.unlink(missing_ok=True)
            os._exit(1)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_folder(dst.parent)


def copy_temp(
    src: Path,
    dst: Path,
    *,
    link: bool = False,
    check: Callable[[Path], None] | None = None,
    flush: bool | None = None,
) -> Path:
    """Copy src byte for byte (a hard link when asked and possible) under dst's temporary
    name, flushed as write_temp says; `check(tmp)` may refuse what was copied. The temporary
    name is returned."""

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

    return _write_temp(Path(dst), put, flush=flush)
