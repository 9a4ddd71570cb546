"""Make an imbalanced class folder from scikit-learn's bundled digits (no download).

    python examples/digits/make_digits.py data/digits

writes data/digits/train/<digit>/*.jpg with an imbalance ratio of about 54 (like the paper's
SE30K8: the largest class 54 times the smallest) and data/digits/test/<digit>/*.jpg, a
balanced held-out folder from the images left over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from sklearn.datasets import load_digits


def class_sizes(n_classes: int, largest: int, ratio: float) -> list[int]:
    """Geometric class sizes from `largest` down to largest / ratio."""
    return [max(1, round(largest * ratio ** (-i / (n_classes - 1)))) for i in range(n_classes)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=32, help="image side in px")
    ap.add_argument("--largest", type=int, default=162, help="images in the largest class")
    ap.add_argument("--ratio", type=float, default=54.0, help="imbalance ratio")
    ap.add_argument("--test-per-class", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    sizes = class_sizes(10, args.largest, args.ratio)
    for digit, n_train in enumerate(sizes):
        idx = rng.permutation(np.flatnonzero(digits.target == digit))
        if n_train + args.test_per_class > len(idx):
            raise SystemExit(f"digit {digit} has only {len(idx)} images")
        for split, chosen in (
            ("train", idx[:n_train]),
            ("test", idx[n_train : n_train + args.test_per_class]),
        ):
            folder = args.out / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
                big = cv2.resize(pixels, (args.size, args.size), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(
                    str(folder / f"digit{digit}_{i:04d}.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
    print(
        f"{args.out}/train: "
        + ", ".join(f"{d}:{n}" for d, n in enumerate(sizes))
        + f" (ratio {sizes[0] / sizes[-1]:.0f}); {args.out}/test: "
        f"{args.test_per_class} per class"
    )


if __name__ == "__main__":
    main()
