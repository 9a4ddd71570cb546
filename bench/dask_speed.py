"""`balance build` on this machine's loky pool vs a Dask LocalCluster, in one run.

    .venv/bin/pip install -e '.[dask]'      # once
    .venv/bin/python bench/dask_speed.py

Same corpus, options and worker count (one process per core); the LocalCluster is started
before timing, as a long-lived cluster would be. Prints copies/s and the ratio; the two
outputs are compared byte for byte.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balancer import BuildSettings, build
from balancer.common.parallel import RunOptions
from bench.balance_speed import NMIN, copies_needed
from bench.corpus import make_corpus


def best_seconds(run, out: Path, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        run(out)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    from distributed import LocalCluster

    root = make_corpus(Path("bench/corpus"))
    cores = len(os.sched_getaffinity(0))
    n = copies_needed(root, NMIN)
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    settings = BuildSettings(nmin=NMIN, transforms="rotate")
    try:
        loky = best_seconds(
            lambda out: build(root, out, settings, run=RunOptions(workers=cores, progress=False)),
            work / "loky",
        )
        with LocalCluster(
            n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            dask = best_seconds(
                lambda out: build(
                    root,
                    out,
                    settings,
                    run=RunOptions(
                        backend="dask", scheduler=cluster.scheduler_address, progress=False
                    ),
                ),
                work / "dask",
            )
        same = all(
            (work / "dask" / p.relative_to(work / "loky")).read_bytes() == p.read_bytes()
            for p in (work / "loky").rglob("*")
            if p.is_file()
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n} copies (rotate), {cores} worker processes each")
    print(f"loky (local pool)       {n / loky:7.1f} copies/s")
    print(f"Dask LocalCluster       {n / dask:7.1f} copies/s")
    print(f"Dask / loky             {loky / dask:7.2f}   outputs byte-identical: {same}")


if __name__ == "__main__":
    main()
