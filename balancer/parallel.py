"""Chunked work on joblib's process pool, with a tqdm bar over items (not chunks)."""
from __future__ import annotations

import math
import os
from typing import Callable, Iterator, Sequence

from joblib import Parallel, delayed
from tqdm.auto import tqdm


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chunked(items: Sequence, workers: int, largest: int = 64) -> list[Sequence]:
    """Chunks big enough to amortise the pool's overhead, small enough to balance load."""
    size = max(1, min(largest, math.ceil(len(items) / (max(1, workers) * 8))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _indexed(fn, index, chunk):
    return index, fn(chunk)


def run_chunks(fn: Callable[[Sequence], list], chunks: Sequence[Sequence], workers: int,
               progress: bool = True, desc: str = "") -> Iterator[tuple[int, list]]:
    """Yield (chunk index, fn(chunk)) as chunks finish, in any order.

    `fn` must be picklable (a module-level function or a functools.partial of one).
    The bar is hidden with progress=False and whenever stderr is not a terminal.
    """
    total = sum(len(c) for c in chunks)
    with tqdm(total=total, desc=desc, unit="img", disable=None if progress else True,
              leave=False) as bar:
        if workers <= 1 or len(chunks) <= 1:
            results = (_indexed(fn, i, c) for i, c in enumerate(chunks))
        else:
            results = Parallel(n_jobs=workers, return_as="generator_unordered", batch_size=1)(
                delayed(_indexed)(fn, i, c) for i, c in enumerate(chunks))
        for index, result in results:
            bar.update(len(chunks[index]))
            yield index, result

