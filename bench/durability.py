"""What flushing to the disk costs a build, and what a resume's check of every file costs.

    .venv/bin/python bench/durability.py [--rounds 3] [--nmin 600]

A build flushes every file (fdatasync) under its temporary name, and its journal, before
the rename, and each folder after; `--no-fsync` (RunOptions(durable=False)) skips them.
Both are timed in the same run, rounds interleaved, on the bench corpus (photo-like JPEGs,
N_min 600, rotate): copies per second and the ratio flushed / not flushed. Then a
`--resume` of the finished build, which reads and hashes every file against its journal
row, against the build itself.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balancer import BuildSettings, Existing, RunOptions, build
from bench.corpus import make_corpus


def timed_build(
    src: Path, out: Path, settings: BuildSettings, *, durable: bool, **kw: object
) -> tuple[float, int]:
    start = time.perf_counter()
    result = build(src, out, settings, run=RunOptions(progress=False, durable=durable), **kw)
    return time.perf_counter() - start, sum(c["copies"] for c in result.record["counts"].values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nmin", type=int, default=600)
    args = ap.parse_args()
    src = make_corpus(Path(__file__).resolve().parent / "corpus")
    settings = BuildSettings(nmin=args.nmin, transforms="rotate", seed=0)
    rates: dict[str, list[float]] = {"flushed": [], "not flushed": []}
    resume: list[float] = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        for r in range(args.rounds):
            for name in ("flushed", "not flushed") if r % 2 == 0 else ("not flushed", "flushed"):
                flushed = name == "flushed"
                out = Path(tmp) / f"{name.replace(' ', '-')}-{r}"
                seconds, copies = timed_build(src, out, settings, durable=flushed)
                rates[name].append(copies / seconds)
                if flushed:
                    again = {"existing": Existing.RESUME}
                    resumed, _ = timed_build(src, out, settings, durable=True, **again)
                    resume.append(resumed / seconds)
        shutil.rmtree(tmp, ignore_errors=True)
    for name, values in rates.items():
        print(
            f"{name:>12}: {statistics.median(values):7.0f} copies/s  (rounds: "
            + ", ".join(f"{v:.0f}" for v in values)
            + ")"
        )
    ratio = statistics.median(rates["flushed"]) / statistics.median(rates["not flushed"])
    print(f"flushed / not flushed: {ratio:.3f} x")
    print(
        f"resume of the finished build (every file hashed) / the build: "
        f"{statistics.median(resume):.3f} x the time"
    )


if __name__ == "__main__":
    main()
