"""How fast the trainer reads a camera photo into a model input, on one core.

    python bench/reader_speed.py [--images 24] [--size 224] [--rounds 3] [--no-keras]

Photo-like 4000x3000 JPEGs (12 megapixels, quality 90 by default, about 3.5 MB: textured at
every scale, with sensor noise), written once under bench/corpus-12mp-q<quality>/. On one core (OpenCV and
TensorFlow told to use one thread), images/s of:
  reader      the trainer's reader: the JPEG decoded at the DCT scale it needs (1/8 here),
              then an area resize to size x size (balancer.common.square.model_input);
  bare        cv2.imread (full decode) + INTER_AREA resize: the anti-aliased reference;
  linear      cv2.imread + INTER_LINEAR (the trainer's reader before: bilinear, aliased);
  keras       keras.utils.image_dataset_from_directory over the same files (full decode,
              bilinear resize), iterated in batches of 32.
Each round times every contender once, interleaved; ratios are the median over rounds.
Goals (issue 22): reader >= 4 x bare with a mean difference <= 4 grey levels; reader >= 5 x
keras.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from balancer.common.opencv import cv2
from balancer.common.square import model_input


def corpus(root: Path, n: int, quality: int) -> list[Path]:
    """n 12-megapixel photo-like JPEGs in 2 classes, written once."""
    from bench.corpus import photo

    files = [root / f"class_{i % 2}" / f"{i:04d}.jpg" for i in range(n)]
    rng = np.random.default_rng(12)
    for f in files:
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f.name + ".part.jpg")
            cv2.imwrite(str(tmp), photo(rng, 3000, 4000), [cv2.IMWRITE_JPEG_QUALITY, quality])
            tmp.rename(f)
    return files


def bare(path: Path, size: int, interpolation: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return cv2.cvtColor(
        cv2.resize(image, (size, size), interpolation=interpolation), cv2.COLOR_BGR2RGB
    )


def rate(files: list[Path], read) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    out = [read(f) for f in files]
    return len(files) / (time.perf_counter() - start), out


def keras_rate(root: Path, n: int, size: int) -> float:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    ds = keras.utils.image_dataset_from_directory(
        root, image_size=(size, size), batch_size=32, shuffle=False, verbose=False
    )
    start = time.perf_counter()
    seen = sum(int(x.shape[0]) for x, _ in ds)
    assert seen == n, seen
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-keras", action="store_true")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality of the photos")
    ap.add_argument("--corpus", type=Path, default=None, help="default bench/corpus-12mp-q<Q>")
    args = ap.parse_args()
    args.corpus = args.corpus or Path(f"bench/corpus-12mp-q{args.quality}")
    with contextlib.suppress(AttributeError, OSError):  # one core, for every thread
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    files = corpus(args.corpus, args.images, args.quality)
    mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
    size = args.size
    rounds: dict[str, list[float]] = {"reader": [], "bare": [], "linear": [], "keras": []}
    diffs = {}
    for _ in range(args.rounds):
        r, ours = rate(files, lambda f: model_input(f, size))
        b, ref = rate(files, lambda f: bare(f, size, cv2.INTER_AREA))
        lin, old = rate(files, lambda f: bare(f, size, cv2.INTER_LINEAR))
        rounds["reader"].append(r)
        rounds["bare"].append(b)
        rounds["linear"].append(lin)
        if not args.no_keras:
            rounds["keras"].append(keras_rate(args.corpus, len(files), size))
        diffs = {
            "reader": np.mean(
                [
                    np.abs(a.astype(int) - c.astype(int)).mean()
                    for a, c in zip(ours, ref, strict=True)
                ]
            ),
            "linear": np.mean(
                [
                    np.abs(a.astype(int) - c.astype(int)).mean()
                    for a, c in zip(old, ref, strict=True)
                ]
            ),
        }
    print(
        f"{len(files)} JPEGs of 4000x3000 (quality {args.quality}, {mb:.1f} MB each) to "
        f"{size}x{size}, one core, "
        f"{args.rounds} interleaved rounds (median):"
    )
    med = {k: statistics.median(v) for k, v in rounds.items() if v}
    for name, value in med.items():
        print(f"  {name:<7} {value:7.1f} images/s")
    print(f"  reader / bare    {med['reader'] / med['bare']:5.2f} x   (goal >= 4)")
    if "keras" in med:
        print(f"  reader / keras   {med['reader'] / med['keras']:5.2f} x   (goal >= 5)")
    print(f"  reader / linear  {med['reader'] / med['linear']:5.2f} x")
    print(f"  mean |reader - bare|  {diffs['reader']:.2f} grey levels (goal <= 4)")
    print(
        f"  mean |linear - bare|  {diffs['linear']:.2f} grey levels (the bilinear shrink aliases)"
    )


if __name__ == "__main__":
    main()
