"""The door on a store, which has no flock and no rename: a lock object written with a
conditional put, and outputs told apart from inputs by their URLs.

The lock object (OUT/.balanced-aug.lock) names the host, the process and a token. It is
created only where none exists (S3's If-None-Match, GCS's generation 0, a local or memory
file system's exclusive create); a second command on OUT is refused with the holder named.
A lock left by a killed command on this machine (its process is gone) is taken over; one
from another machine is named, with the object to delete once that command is known gone.
On a store that offers no conditional put, one writer per output is assumed, and said.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import OVERWRITE_FILE, BalanceError, ToolWarning, UserError
from ..storage import LOCK_NAME, Remote
from .proof import clear, prove
from .records import TOOL, OutputKind, record_names, tool_record


def check_remote_inputs(out: Remote, inputs: Mapping[str, Path | Remote | None]) -> None:
    """Refuse an output in a store that is, contains or lies inside one of the inputs."""
    for what, path in inputs.items():
        if not isinstance(path, Remote):
            continue
        if path == out:
            raise BalanceError(f"the output {out} is the {what}; choose another")
        if out.is_relative_to(path):
            raise BalanceError(
                f"the output {out} lies inside the {what} {path}; choose a place outside it"
            )
        if path.is_relative_to(out):
            raise BalanceError(
                f"the output folder {out} contains the {what} {path}; choose a folder outside it"
            )


def claim_object(
    target: Remote, *, inputs: Mapping[str, Path | Remote | None], overwrite: bool, what: str
) -> Remote:
    """claim_file for an object: not a record's name, not inside an input or a tool's
    output, and an existing object replaced only with overwrite=True."""
    if target.name in record_names():
        raise BalanceError(f"{target.name} is the name of a record the tools write; choose another")
    check_remote_inputs(target, inputs)
    for above in target.parents:
        found = tool_record(above)
        if found:
            raise BalanceError(
                f"the {what} {target} lies inside {above}, an output of {TOOL} "
                f"({found[0]}); write it elsewhere"
            )
    if target.is_dir():
        raise BalanceError(f"the {what} {target} is a folder")
    if target.is_file() and not overwrite:
        raise BalanceError(f"{target} exists; {OVERWRITE_FILE} replaces it")
    return target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _holder(lock: Remote) -> dict:
    try:
        found = json.loads(lock.read_bytes())
        return found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _stale(holder: Mapping) -> bool:
    """A lock this machine's killed command left: its process is gone."""
    pid = holder.get("pid")
    return (
        holder.get("tool") == TOOL
        and holder.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and not _alive(pid)
    )


def object_writer(out: Remote) -> str | None:
    """'process N on HOST' while OUT's lock object is there (a killed command's, on this
    machine, does not count), else None."""
    holder = _holder(out / LOCK_NAME)
    if not holder or _stale(holder):
        return None
    return f"process {holder.get('pid')} on {holder.get('host')}"


@contextmanager
def locked_object(out: Remote) -> Iterator[Remote]:
    """Hold OUT's lock object inside the block (see the module's doc)."""
    lock = out / LOCK_NAME
    mine = {
        "tool": TOOL,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": uuid.uuid4().hex,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    data = json.dumps(mine).encode()
    for _ in range(3):
        made = lock.create(data)
        if made is None:
            warnings.warn(
                f"{out.fs.protocol} offers no conditional put: one command at a time is "
                f"assumed to write {out}",
                ToolWarning,
                stacklevel=3,
            )
            lock.write_bytes(data)
            break
        if made:
            break
        holder = _holder(lock)
        if not _stale(holder):
            who = f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
            raise BalanceError(
                f"{out} is in use by {who} (its lock object {lock}); wait for it to finish, "
                f"or delete that object once that command is gone"
            )
        lock.unlink(missing_ok=True)  # a killed command's, on this machine
    else:
        raise BalanceError(f"cannot take the lock object {lock}: another command keeps taking it")
    try:
        yield out
    finally:
        if _holder(lock).get("token") == mine["token"]:
            lock.unlink(missing_ok=True)


@contextmanager
def staged_in_store(target: Remote, kind: OutputKind | None) -> Iterator[Path]:
    """A whole output made in a local temporary folder, then put in the store when the block
    succeeds: an earlier output there (proven ours when claimed) cleared of its own objects,
    every file put, its record last, so it is complete only once all is there. A failure
    leaves the store as it was; so does a kill (the progress a local run keeps for
    `--resume` is not kept: a killed run in a store starts again)."""
    with tempfile.TemporaryDirectory(prefix=".balanced-aug.") as tmp:
        local = Path(tmp, target.name or "output")
        local.mkdir()
        yield local
        if kind is not None and any(e.name != LOCK_NAME for e in target.iterdir()):
            with suppress(UserError):  # nothing there is provably ours: nothing is removed
                clear(target, prove(target, kind, lenient=True), kind)
        record, progress = (kind.record, kind.progress) if kind is not None else (None, None)
        kept = Path(progress).parts[0] if progress else None  # what a resume needed: not put
        files = [
            p.relative_to(local).as_posix()
            for p in sorted(local.rglob("*"))
            if p.is_file() and p.relative_to(local).parts[0] != kept
        ]
        for name in sorted(files, key=lambda name: name == record):
            (target / name).write_bytes((local / name).read_bytes())
