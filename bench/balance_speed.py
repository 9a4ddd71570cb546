"""`balance build` against the floor (a bare OpenCV loop x cores) and Augmentor, in one run.

    .venv/bin/pip install Augmentor psutil     # once (the `bench` extra)
    .venv/bin/python bench/balance_speed.py

Every figure is copies written per second, measured here and now; the ratios are what count.
- floor: one process doing exactly the per-copy work (read, decode, one rotate, JPEG encode
  at the same quality, write), timed on a sample, times the number of cores;
- balance build: the whole command with all cores, end to end (it also checks every original
  and copies the originals: work the floor does not do);
- Augmentor: `Pipeline.sample(n, multi_threaded=True)` with rotate_without_crop, the same number
  of copies. It saves with PIL's default JPEG quality (75), so `balance build --quality 75`
  is timed too for a like-for-like row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from balancer.imageio import decode, encode  # noqa: E402
from balancer.opencv import cv2
from balancer.transforms import TRANSFORMS, parse_transforms  # noqa: E402
from bench.corpus import make_corpus  # noqa: E402

NMIN = 600


def copies_needed(root: Path, nmin: int) -> int:
    return sum(max(0, nmin - len(list(d.glob("*.jpg")))) for d in root.iterdir() if d.is_dir())


def floor_rate(root: Path, out: Path, n: int, quality: int, names: list[str]) -> float:
    """Copies/s of the bare loop in this one process (OpenCV single-threaded, as in the pool):
    read, decode, one transform (the set's in turn), encode, write."""
    cv2.setNumThreads(1)
    files = sorted(root.glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i in range(n):
        image = decode(files[i % len(files)].read_bytes()).image
        changed, _ = TRANSFORMS[names[i % len(names)]](image, rng)
        (out / f"{i}.jpg").write_bytes(encode(changed, "jpeg", quality))
    return n / (time.perf_counter() - start)


def timed(cmd: list[str], out: Path | None = None, repeat: int = 1) -> float:
    """Best wall time of `repeat` runs (this VM's timings vary by +-20% from run to run).

    Each run writes a new folder (out-0, out-1, ...), all removed only after the timing: on
    this VM's disk, deleting a few hundred MB makes the writes that follow several times
    slower (the freed blocks are discarded in the background), which would bias the runs."""
    best = float("inf")
    for k in range(repeat):
        run = [*cmd, "--out", f"{out}-{k}"] if out is not None else cmd
        start = time.perf_counter()
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


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
    rows = {}
    try:
        rows["floor, 1 process"] = max(
            floor_rate(
                root, work / "floor", args.floor_sample, 95, list(parse_transforms(args.transforms))
            )
            for _ in range(args.repeat)
        )
        rows[f"floor x {cores} cores"] = rows["floor, 1 process"] * cores
        out = work / "out"
        rows[f"balance build, {cores} workers"] = n / timed(balance, out, args.repeat)
        if not args.skip_augmentor and args.transforms == "rotate":
            rows["balance build --quality 75"] = n / timed(
                balance + ["--quality", "75"], work / "q75", args.repeat
            )
            rows["Augmentor (JPEG q75, threads)"] = n / augmentor_seconds(
                root.resolve(), work / "aug", n
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor, build = rows[f"floor x {cores} cores"], rows[f"balance build, {cores} workers"]
    print(f"{n} copies of ~500x375 JPEGs ({args.transforms}), {cores} cores")
    print(f"{'':34} {'copies/s':>9}")
    for name, rate in rows.items():
        print(f"{name:34} {rate:9.1f}")
    print(f"balance build / floor:       {build / floor:.2f}   (goal >= 1.0)")
    if "Augmentor (JPEG q75, threads)" in rows:
        aug = rows["Augmentor (JPEG q75, threads)"]
        print(f"floor / Augmentor:           {floor / aug:.2f}")
        print(
            f"balance build / Augmentor:   {build / aug:.2f}   (q95 vs Augmentor's q75; goal >= 5)"
        )
        print(f"balance q75 / Augmentor:     {rows['balance build --quality 75'] / aug:.2f}")


if __name__ == "__main__":
    main()
