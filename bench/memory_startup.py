"""Peak memory of `balance build` (whole process tree) at two sizes, and its start-up time.

    .venv/bin/pip install psutil     # once (the `bench` extra)
    .venv/bin/python bench/memory_startup.py

Memory: the sum of RSS over the CLI and all its worker processes, sampled every 20 ms, for
builds of about 2,300 and 20,000 outputs from the same corpus: flat means the data set is
streamed, never held. Start-up: `balance --help` against `python -c pass` (median of 15),
and proof that building never imports TensorFlow.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import make_corpus

BALANCE = str(Path(sys.executable).with_name("balance"))


def peak_tree_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak MB summed over the process tree, seconds)."""
    start = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed")
    return peak / 2**20, time.perf_counter() - start


def median_seconds(cmd: list[str], n: int = 15) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    root = make_corpus(Path("bench/corpus"))
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    try:
        print(f"{'outputs':>8} {'peak MB (tree)':>15} {'seconds':>8}")
        for nmin, outputs in ((230, 2330), (2500, 20000)):
            out = work / str(nmin)
            mb, secs = peak_tree_rss(
                [BALANCE, "build", str(root), "--out", str(out), "--nmin", str(nmin), "--quiet"]
            )
            print(f"{outputs:>8} {mb:>15.0f} {secs:>8.1f}")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bare = median_seconds([sys.executable, "-c", "pass"])
    helps = median_seconds([BALANCE, "--help"])
    typer_only = median_seconds([sys.executable, "-c", "import typer"])
    print(
        f"python -c pass {bare * 1000:.0f} ms, import typer {typer_only * 1000:.0f} ms, "
        f"balance --help {helps * 1000:.0f} ms: {helps / bare:.1f}x (goal <= 3x)"
    )
    probe = (
        "import sys; from balancer import build, scan, split, verify; "
        "import balancer.cli, balancer.stats, balancer.preview; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    print(f"TensorFlow/Keras modules loaded by the balancer: {loaded.strip()}")


if __name__ == "__main__":
    main()
