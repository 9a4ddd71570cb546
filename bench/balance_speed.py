"""`balance build` against the floor (a bare OpenCV loop x cores) and Augmentor, in one run.

    .venv/bin/pip install Augmentor psutil     # once (the `bench` extra)
    .venv/bin/python bench/balance_speed.py

Every figure is copies written per second, measured here and now; the ratios are what count.
- floor: one process doing exactly the per-copy work (read, decode, one rotate, JPEG encode
  at the same quality, write), timed on a sample, times the number of cores: the ideal,
  which assumes N processes run N times as fast as one;
- hand-written loop: that same loop on every core at once (a forked multiprocessing pool,
  the same copies), timed from start to end: what such a script gets on this machine;
- balance build: the whole command, end to end (it also checks every original and copies
  the originals: work the floor does not do), with all cores and with one (`-j 1`: per
  core, against the floor in one process);
- Augmentor: `Pipeline.sample(n, multi_threaded=True)` with rotate_without_crop, the same number
  of copies. It saves with PIL's default JPEG quality (75), so `balance build --quality 75`
  is timed too for a like-for-like row.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balancer.common.imageio import decode, encode
from balancer.common.opencv import cv2
from balancer.transforms import TRANSFORMS, parse_transforms
from bench.corpus import make_corpus

NMIN = 600


def copies_needed(root: Path, nmin: int) -> int:
    return sum(max(0, nmin - len(list(d.glob("*.jpg")))) for d in root.iterdir() if d.is_dir())


def floor_loop(root: Path, out: Path, copies: range, quality: int, names: list[str]) -> int:
    """The bare per-copy loop (OpenCV single-threaded, as in the pool): read, decode, one
    transform (the set's in turn), encode, write; for the copies numbered in `copies`."""
    cv2.setNumThreads(1)
    files = sorted(root.glob("*/*.jpg"))
    rng = np.random.default_rng(copies.start)
    out.mkdir(parents=True, exist_ok=True)
    for i in copies:
        image = decode(files[i % len(files)].read_bytes()).image
        changed, _ = TRANSFORMS[names[i % len(names)]](image, rng)
        (out / f"{i}.jpg").write_bytes(encode(changed, "jpeg", quality))
    return len(copies)


def floor_rate(root: Path, out: Path, n: int, quality: int, names: list[str]) -> float:
    """Copies/s of the bare loop in this one process."""
    start = time.perf_counter()
    floor_loop(root, out, range(n), quality, names)
    return n / (time.perf_counter() - start)


def hand_written_rate(
    root: Path, out: Path, n: int, quality: int, names: list[str], cores: int
) -> float:
    """Copies/s of the bare loop run as a hand-written script would run it on every core:
    a forked multiprocessing pool (its workers inherit OpenCV and NumPy already imported),
    each process taking every `cores`-th copy; timed from the pool's start to its end."""
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        shares = [(root, out, range(k, n, cores), quality, names) for k in range(cores)]
        done = sum(pool.starmap(floor_loop, shares))
    return done / (time.perf_counter() - start)


def timed(cmd: list[str], out: Path | None = None) -> float:
    """Wall time of one run of `cmd` (with `--out out` when given).

    Every run writes a new folder, all removed only after the timing: on this VM's disk,
    deleting a few hundred MB makes the writes that follow several times slower (the freed
    blocks are discarded in the background), which would bias the runs."""
    run = [*cmd, "--out", str(out)] if out is not None else cmd
    start = time.perf_counter()
    subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def augmentor_seconds(root: Path, out: Path, n: int) -> float:
    code = (
        "import sys, Augmentor\n"
        "p = Augmentor.Pipeline(sys.argv[1], output_directory=sys.argv[2])\n"
        "p.rotate_without_crop(probability=1.0, max_left_rotation=45, max_right_rotation=45)\n"
        "p.sample(int(sys.argv[3]), multi_threaded=True)\n"
    )
    return timed([sys.executable, "-c", code, str(root), str(out), str(n)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("bench/corpus"))
    ap.add_argument("--floor-sample", type=int, default=800)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--skip-augmentor", action="store_true")
    ap.add_argument("--transforms", default="rotate", help="the set T, for the floor and build")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    root = make_corpus(args.corpus)
    n = copies_needed(root, NMIN)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    balance = [
        str(Path(sys.executable).with_name("balance")),
        "build",
        str(root),
        "--nmin",
        str(NMIN),
        "--transforms",
        args.transforms,
        "--quiet",
    ]
    names = list(parse_transforms(args.transforms))
    # Each round times every contender once, so a slow spell of this VM hits them all alike;
    # the table shows each one's best round, the ratios are also given round by round.
    floor1, hand, one, full_name = (
        "floor, 1 process",
        f"hand-written loop, {cores} processes",
        "balance build, 1 worker",
        f"balance build, {cores} workers",
    )
    contenders = {
        floor1: lambda k: floor_rate(root, work / f"floor-{k}", args.floor_sample, 95, names),
        hand: lambda k: hand_written_rate(root, work / f"hand-{k}", n, 95, names, cores),
        one: lambda k: n / timed([*balance, "-j", "1"], work / f"one-{k}"),
        full_name: lambda k: n / timed(balance, work / f"all-{k}"),
    }
    if not args.skip_augmentor and args.transforms == "rotate":
        contenders["balance build --quality 75"] = lambda k: (
            n / timed([*balance, "--quality", "75"], work / f"q75-{k}")
        )
        contenders["Augmentor (JPEG q75, threads)"] = lambda k: (
            n / augmentor_seconds(root.resolve(), work / f"aug-{k}", n)
        )
    rounds: list[dict[str, float]] = []
    try:
        for k in range(args.repeat):
            rounds.append({name: rate(k) for name, rate in contenders.items()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = {name: max(r[name] for r in rounds) for name in contenders}
    rows[f"floor x {cores} cores"] = rows[floor1] * cores

    def ratio(text: str, top: str, bottom: str, scale: float = 1.0, goal: str = "") -> None:
        each = sorted(r[top] / (r[bottom] * scale) for r in rounds)
        best = rows[top] / (rows[bottom] * scale)
        print(
            f"{text:34} {best:5.2f}   rounds: median {statistics.median(each):.2f}, "
            f"{each[0]:.2f}-{each[-1]:.2f}  {goal}"
        )

    print(f"{n} copies of ~500x375 JPEGs ({args.transforms}), {cores} cores, {args.repeat} rounds")
    print(f"{'':34} {'copies/s':>9} (best round)")
    for name, rate in rows.items():
        print(f"{name:34} {rate:9.1f}")
    ratio(f"balance build / floor x {cores}", full_name, floor1, cores, "(goal >= 1.0)")
    ratio("balance build / hand-written loop", full_name, hand)
    ratio(f"hand-written loop / floor x {cores}", hand, floor1, cores)
    ratio("per core: 1 worker / floor", one, floor1)
    if "Augmentor (JPEG q75, threads)" in rows:
        aug = "Augmentor (JPEG q75, threads)"
        ratio("floor x cores / Augmentor", floor1, aug, 1 / cores)
        ratio("balance build / Augmentor", full_name, aug, 1.0, "(q95 vs its q75; goal >= 5)")
        ratio("balance build q75 / Augmentor", "balance build --quality 75", aug)


if __name__ == "__main__":
    main()
