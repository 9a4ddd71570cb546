"""Chunked work on joblib's process pool, with a tqdm bar over items (not chunks).

Lazy imports: tqdm and Dask load only in the process that shows a bar or uses a cluster; the
worker guard is imported in the worker."""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from joblib import Parallel, delayed, parallel_config

from .atomic import durable, set_durable
from .checks import flag
from .errors import BalanceError, BalanceValueError, ToolWarning
from .limits import WORKERS
from .storage import Remote

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """Worker processes on this machine: all cores by default, never more than the cores
    (each worker costs memory and more than one per core only adds switching)."""
    cores = default_workers()
    if workers is None:
        return cores
    WORKERS.check(workers, "workers")
    if workers > cores:
        warnings.warn(
            f"--workers {workers} is more than the {cores} cores here; using {cores}",
            ToolWarning,
            stacklevel=2,
        )
        return cores
    return workers


BACKENDS = ("loky", "dask")


@dataclass(frozen=True)
class RunOptions:
    """How a command runs, not what it makes: where its work runs and whether it shows
    progress. Checked once when made; `pool(run)` resolves the worker count once."""

    workers: int | None = None  # None: every core here (or every thread of the Dask cluster)
    backend: str = "loky"  # 'loky' (this machine's cores) or 'dask'
    scheduler: str | None = None  # with 'dask': the scheduler's address; None: a local cluster
    progress: bool = True
    durable: bool = True  # flush each file to the disk before it is relied on (atomic.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "progress", flag(self.progress, "progress"))
        object.__setattr__(self, "durable", flag(self.durable, "durable"))
        if self.backend not in BACKENDS:
            raise BalanceValueError(
                f"unknown backend '{self.backend}'; choose {' or '.join(BACKENDS)}",
                parameters=("backend",),
            )
        if self.scheduler and self.backend != "dask":
            raise BalanceValueError(
                "scheduler goes with backend dask", parameters=("scheduler", "backend")
            )
        if self.workers is not None:
            WORKERS.check(self.workers, "workers")


QUIET = RunOptions(progress=False)


def chunked(
    items: Sequence, workers: int, largest: int = 64, *, key: Callable | None = None
) -> list[Sequence]:
    """Chunks big enough to amortise the pool's overhead, small enough to balance load.

    With `key`, chunks end where the key changes, unless a run of one key reaches `largest`:
    a build's copies of one original stay in one task, which decodes the original once (or
    once per `largest` copies, so one original with thousands of copies still uses every
    core)."""
    size = max(1, min(largest, math.ceil(len(items) / (max(1, workers) * 8))))
    if key is None:
        return [items[i : i + size] for i in range(0, len(items), size)]
    chunks, start = [], 0
    for i in range(1, len(items) + 1):
        n = i - start
        if i == len(items) or n >= largest or (n >= size and key(items[i]) != key(items[i - 1])):
            chunks.append(items[start:i])
            start = i
    return chunks


_REMOTE = False  # True while a Dask pool is open: workers are not this process's children


def remote() -> bool:
    """Whether the pool's workers may be on other machines (a Dask pool is open)."""
    return _REMOTE


def _indexed(fn: Callable, index: int, chunk: Sequence, guard: Any = None) -> tuple[int, list]:
    if guard is not None:
        from .atomic import stop_writes_when_parent_dies

        stop_writes_when_parent_dies(guard)
    return index, fn(chunk)


def run_chunks(
    fn: Callable[[Sequence], list],
    chunks: Sequence[Sequence],
    workers: int,
    *,
    progress: bool = True,
    desc: str = "",
) -> Iterator[tuple[int, list]]:
    """Yield (chunk index, fn(chunk)) as chunks finish, in any order.

    `fn` must be picklable (a module-level function or a functools.partial of one).
    The bar is hidden with progress=False and whenever stderr is not a terminal. Local
    workers stop writing (and exit) as soon as this process is gone, even by SIGKILL.
    """
    from tqdm.auto import tqdm  # not in the workers, which import this module too

    total = sum(len(c) for c in chunks)
    guard = None if _REMOTE else os.getpid()
    with tqdm(
        total=total, desc=desc, unit="img", disable=None if progress else True, leave=False
    ) as bar:
        if workers <= 1 or len(chunks) <= 1:
            results = (_indexed(fn, i, c) for i, c in enumerate(chunks))
        else:
            results = Parallel(n_jobs=workers, return_as="generator_unordered", batch_size=1)(
                delayed(_indexed)(fn, i, c, guard) for i, c in enumerate(chunks)
            )
        for index, result in results:
            bar.update(len(chunks[index]))
            yield index, result


@dataclass
class Pool:
    """Where run_chunks runs: `workers` parallel slots, and the Dask client if any."""

    workers: int
    client: Any = None
    progress: bool = True

    def check_shared(self, *paths: Path) -> None:
        """Every Dask worker must see these paths (SRC, OUT's parent): a clear error, no hang."""
        if self.client is None:
            return
        seen = self.client.run(_missing, [str(p) for p in paths])
        for worker, missing in sorted(seen.items()):
            if missing:
                raise BalanceError(
                    f"Dask worker {worker} cannot see {missing[0]}: SRC and OUT must "
                    "be on storage every worker sees, at the same path"
                )


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.isdir(p)]


@contextmanager
def pool(run: RunOptions) -> Iterator[Pool]:
    """Run joblib on the run's backend inside the block: 'loky' (this machine's cores) or
    'dask' (the cluster at its scheduler, or a LocalCluster of its workers). The worker
    count is resolved here, once: a remote cluster's threads are not this machine's cores."""
    backend, scheduler, workers = run.backend, run.scheduler, run.workers
    was_durable = durable()
    set_durable(run.durable)
    try:
        with _pool(backend, scheduler, workers, progress=run.progress) as p:
            yield p
    finally:
        set_durable(was_durable)


@contextmanager
def _pool(
    backend: str, scheduler: str | None, workers: int | None, *, progress: bool
) -> Iterator[Pool]:
    if backend == "loky":
        yield Pool(resolve_workers(workers), progress=progress)
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise BalanceError(
            "--backend dask needs the dask extra: pip install 'balanced-aug[dask]'"
        ) from None
    with ExitStack() as stack:
        try:
            if scheduler:
                client = stack.enter_context(Client(scheduler, timeout="10s"))
            else:
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=resolve_workers(workers),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                )
                client = stack.enter_context(Client(cluster))
        except OSError as exc:
            raise BalanceError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        stack.enter_context(parallel_config(backend="dask"))
        global _REMOTE
        _REMOTE = True
        try:
            yield Pool(sum(client.nthreads().values()), client, progress=progress)
        finally:
            _REMOTE = False


IN_FLIGHT = 4  # requests a worker keeps in flight per core: reads and writes overlap


def in_process(*places: object, workers: int) -> int:
    """The workers a pool may use for these places: 1 (this process) when one of them is a
    store only this process sees (memory://)."""
    alone = any(isinstance(p, Remote) and not p.shared for p in places)
    return 1 if alone else workers


def prefetched(fn: Callable[[T], R], items: Sequence[T], depth: int | None = None) -> Iterator[R]:
    """fn(item) for each item, in order, with up to `depth` calls running ahead on threads:
    a store's latency overlaps the work on what came back, and at most `depth` results wait."""
    depth = IN_FLIGHT if depth is None else depth
    if depth <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(depth) as ex:
        pending: list[Future[R]] = []
        feed = iter(items)
        pending.extend(ex.submit(fn, item) for item in itertools.islice(feed, depth))
        while pending:
            result = pending.pop(0).result()
            pending.extend(ex.submit(fn, item) for item in itertools.islice(feed, 1))
            yield result
