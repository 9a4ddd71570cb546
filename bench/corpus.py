"""A reusable corpus of photo-like JPEGs (about 500x375), imbalanced over 8 classes.

Photo-like: smooth multi-scale noise with colour gradients and a few sharp-edged shapes, so
JPEG decode/encode costs what it costs on real photos (flat synthetic images are far cheaper).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from balancer.common.opencv import cv2

SIZES = [600, 350, 200, 120, 70, 40, 25, 15]  # 1,420 images, imbalance ratio 40


def photo(rng: np.random.Generator, h: int = 375, w: int = 500) -> np.ndarray:
    img = np.zeros((h, w, 3), np.float32)
    for octave, weight in ((4, 0.5), (16, 0.25), (64, 0.15), (250, 0.1)):
        small = rng.random(
            (max(2, h * octave // 500), max(2, w * octave // 500), 3), dtype=np.float32
        )
        img += weight * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(3, 8)):
        color = rng.random(3).tolist()
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, center, int(rng.integers(10, 90)), color, -1, cv2.LINE_AA)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def make_corpus(root: Path, sizes=SIZES, seed: int = 0) -> Path:
    """root/class_<k>/<i>.jpg; reused when it already holds the expected files."""
    root = Path(root)
    expected = sum(sizes)
    if root.exists() and len(list(root.glob("*/*.jpg"))) == expected:
        return root
    rng = np.random.default_rng(seed)
    for k, n in enumerate(sizes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(folder / f"{i:04d}.jpg"), photo(rng), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, nargs="?", default=Path("bench/corpus"))
    print(make_corpus(ap.parse_args().root))
