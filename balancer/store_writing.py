"""Make a plan's files in a store (s3://, gs://, az://, memory://): the same bytes as on a
local disk, by the same `made`, where a store has no rename and no append.

Each worker reads the originals and writes the files itself (nothing but the plan and the
rows pass through this process): a chunk puts its todo object in the journal
(`balancer.journal.ObjectJournal`), then its files, then its rows. An object appears whole
when its put completes, so no temporary name is needed; the todo object is what proves an
object under a final name ours before its row does. A resumed run keeps an object whose row
it has and whose bytes, read back, have that row's size and sha256. On each worker a few
reads of originals and a few puts are in flight while it renders (`parallel.IN_FLIGHT`).
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from .common import imageio, parallel
from .common.atomic import command_gone
from .common.errors import BalanceError
from .common.parallel import chunked, in_process, prefetched, run_chunks
from .common.storage import Place, Remote, joined
from .journal import ObjectJournal, Written
from .plan import Item
from .writing import Writing, failure, made, read_original

Task = tuple[int, Item, "Written | None"]


def run_items_in_store(
    root: Path | Remote,
    out: Remote,
    items: list[Item],
    workers: int,
    writing: Writing,
    *,
    journal: ObjectJournal,
    progress: bool = True,
) -> dict[str, Written]:
    """Make every item's object in `out`; {file_name: Written} (see the module's doc)."""
    check_link(out, link=writing.link)
    done = journal.resume()
    tasks = sorted(
        ((i, it, done.get(it.file_name)) for i, it in enumerate(items)),
        key=lambda t: (t[1].source, t[1].file_name),
    )
    workers = in_process(root, out, workers=workers)
    chunks = chunked(tasks, workers, key=lambda t: t[1].source)
    src = root if isinstance(root, Remote) else str(root)
    work = partial(_work_chunk, src, journal, writing, uuid.uuid4().hex[:12])
    written: dict[str, Written] = {}
    for _, results in run_chunks(work, chunks, workers, progress=progress, desc="writing"):
        written.update((items[i].file_name, w) for i, w in results)
    return written


def check_link(out: Place, *, link: bool) -> None:
    """--link makes hard links on one disk: refused, before anything is written, for a
    store."""
    if link and isinstance(out, Remote):
        raise BalanceError(f"--link hard-links files on one disk: it cannot write to {out}")


def _proven(obj: Remote, expect: Written) -> bool:
    """Whether the object in place has the size and sha256 its row records (read back)."""
    try:
        data = obj.read_bytes()
    except OSError:
        return False
    return len(data) == expect.size and hashlib.sha256(data).hexdigest() == expect.sha256


def _work_chunk(
    src: str | Remote, journal: ObjectJournal, writing: Writing, token: str, tasks: list[Task]
) -> list[tuple[int, Written]]:
    """A chunk's objects: its todo object, each file kept (proven) or made and put (a few
    puts in flight), then its rows; (index in the plan, Written) for each."""
    out = journal.out
    key = f"{token}-{hashlib.sha256(tasks[0][1].file_name.encode()).hexdigest()[:16]}"
    journal.begin_chunk(key, [it.file_name for _, it, _ in tasks])
    checks = [(out / it.file_name, expect) for _, it, expect in tasks if expect is not None]
    kept = iter(prefetched(lambda c: _proven(*c), checks))
    results: dict[int, Written] = {}
    todo: list[Task] = []
    for index, item, expect in tasks:
        if expect is not None and next(kept):
            results[index] = expect
        else:
            todo.append((index, item, expect))
    _make_all(src, out, writing, todo, results)
    journal.end_chunk(key, [(item, results[index]) for index, item, _ in tasks])
    return sorted(results.items())


def _make_all(
    src: str | Remote, out: Remote, writing: Writing, todo: list[Task], results: dict
) -> None:
    """Make and put each item's file: originals read ahead, puts behind, both on threads."""
    sources = list(dict.fromkeys((it.source, it.digest) for _, it, _ in todo))
    reads = prefetched(_read, [(joined(src, s), d) for s, d in sources])
    current: tuple[str | None, bytes | Exception] = (None, b"")
    cache: list = [None, None]
    puts: list[tuple[Future, Item]] = []
    with ThreadPoolExecutor(parallel.IN_FLIGHT) as ex:
        try:
            for index, item, _ in todo:
                if command_gone():
                    raise SystemExit(1)
                if current[0] != item.source:
                    current = (item.source, next(reads))
                data_or_error = current[1]
                written, data = made(item, partial(_given, data_or_error), cache, writing)
                results[index] = written
                puts.append((ex.submit((out / item.file_name).write_bytes, data), item))
                while len(puts) > parallel.IN_FLIGHT:
                    _wait(puts.pop(0), out)
            while puts:
                _wait(puts.pop(0), out)
        except (imageio.BadImage, OSError) as exc:
            raise failure(item, exc, out / item.file_name) from None


def _read(source: tuple[Path | Remote, bytes]) -> bytes | Exception:
    try:
        return read_original(*source)
    except imageio.BadImage as exc:  # raised when its item is made, in order
        return exc


def _given(data: bytes | Exception) -> bytes:
    if isinstance(data, Exception):
        raise data
    return data


def _wait(put: tuple[Future, Item], out: Remote) -> None:
    future, item = put
    try:
        future.result()
    except OSError as exc:
        raise failure(item, exc, out / item.file_name) from None
