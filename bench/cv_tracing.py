"""What a cv pays for tracing the training step: once (the folds share one compiled model)
against once per fold (a fresh build each), on this CPU, in the same run.

    python bench/cv_tracing.py [--model efficientnet-b0] [--folds 3] [--images 30]

A small photo-like folder (written once under bench/corpus-cv/), graph mode (as `train cv`
runs by default), one epoch per fold, so the time is mostly tracing. Prints both times,
the ratio, and whether the two cvs scored the same.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def corpus(root: Path, n: int) -> Path:
    import numpy as np

    from balancer.common.opencv import cv2
    from bench.corpus import photo

    rng = np.random.default_rng(3)
    for i in range(n):
        f = root / f"class_{i % 3}" / f"{i:04d}.jpg"
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(f), photo(rng, 96, 128), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-b0")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--size", type=int, default=32)
    args = ap.parse_args()
    from trainer.config import TrainConfig
    from trainer.crossval import cross_validate

    data = corpus(Path("bench/corpus-cv"), args.images)
    config = TrainConfig(
        model=args.model, weights="none", image_size=args.size, epochs=1, batch=8, cache="on"
    )
    times, scores = {}, {}
    work = Path(tempfile.mkdtemp(prefix="cv-tracing-"))
    try:
        for name, reuse in (("shared model", True), ("fresh per fold", False)):
            start = time.perf_counter()
            result = cross_validate(
                data, work / name, config, folds=args.folds, progress=False, reuse_model=reuse
            )
            times[name] = time.perf_counter() - start
            scores[name] = [f["macro_f1"] for f in result["folds"]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.model} at {args.size} px, {args.folds}-fold cv of {args.images} images, 1 epoch:")
    for name, seconds in times.items():
        print(f"  {name:<15} {seconds:7.1f} s")
    print(f"  fresh / shared  {times['fresh per fold'] / times['shared model']:5.2f} x")
    same = scores["shared model"] == scores["fresh per fold"]
    print(f"  same scores: {same}")


if __name__ == "__main__":
    main()
