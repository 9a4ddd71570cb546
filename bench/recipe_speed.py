"""Online (a recipe's copies made as batches are) against the written folder, in the trainer.

    python bench/recipe_speed.py [--originals 24] [--nmin 60] [--size 224] [--rounds 3]
                                 [--megapixel-originals 6]

Photo-like JPEGs (bench.corpus.photo) in two classes, written once under bench/corpus-recipe/: a
500x375 corpus (the paper's photos) and a 4000x3000 one (12 megapixels). Each is balanced
to --nmin per class with the paper's transforms twice: by `balance build` into a folder,
and as a recipe (balancer.recipe; nothing written). Both are read through the trainer's own
input pipeline (trainer.pipeline.ImageBatches, one thread per core, batches of 32, no
cache) to size x size model inputs; each round times every contender once, interleaved,
and the ratios are the median over rounds. `online` is the recipe as planned, `redrawn` the
recipe with --redraw epoch (a new draw every epoch, so each epoch is timed fresh).

Goal (issue 32): online >= 0.5 x folder at 500x375. A copy costs a full decode of its
original and a warp at full size, where a written copy costs only a decode, which the
reader scales down in the DCT for a large JPEG: the 12-megapixel line names that cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from balancer import BuildSettings, RunOptions, build
from balancer.common.opencv import cv2
from balancer.source import scan

CACHE = Path(__file__).resolve().parent / "corpus-recipe"


def corpus(root: Path, originals: int, h: int, w: int) -> Path:
    """`originals` photos in class a and a quarter as many in class b, written once."""
    from bench.corpus import photo

    rng = np.random.default_rng(32)
    for label, n in (("a", originals), ("b", max(1, originals // 4))):
        for i in range(n):
            f = root / label / f"{i:04d}.jpg"
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_name(f.name + ".part.jpg")
                cv2.imwrite(str(tmp), photo(rng, h, w), [cv2.IMWRITE_JPEG_QUALITY, 90])
                tmp.rename(f)
    return root


def contenders(src: Path, settings: BuildSettings, size: int) -> dict:
    """name -> a function that reads every file once through the trainer's pipeline."""
    from trainer.balancing import MADE, recipe_table
    from trainer.data import label_indices, list_folder
    from trainer.pipeline import Batching, ImageBatches

    folder = src.parent / f"{src.name}-balanced"
    if not (folder / "balance.json").exists():
        build(src, folder, settings, run=RunOptions(progress=False))
    found = scan(src, progress=False)
    written = list_folder(folder)
    names = written.class_names
    batching = Batching(n_classes=len(names), size=size, batch=32)

    def reader(table, **kw):
        batches = ImageBatches(table.path, label_indices(table, names), batching, **kw)

        def read() -> int:
            for k in range(len(batches)):
                batches[k]
            batches.on_epoch_end()  # the next epoch: a fresh draw for the redrawn recipe
            return len(batches.paths)

        return read

    planned = recipe_table(found, settings, redraw=None)
    redrawn = recipe_table(found, settings, redraw="epoch")
    return {
        "folder": reader(written.table),
        "online": reader(planned, made=list(planned[MADE])),
        "redrawn": reader(redrawn, made=list(redrawn[MADE])),
    }


def jpeg_gap(src: Path, settings: BuildSettings) -> tuple[float, float]:
    """(mean, largest) over the copies of the mean |recipe pixels - written file's pixels|:
    what JPEG encoding at the build's quality changes (`encoded=True` closes the gap)."""
    from balancer.common.imageio import load
    from balancer.common.square import rgb8
    from balancer.recipe import BalancedDataset

    folder = src.parent / f"{src.name}-balanced"
    ds = BalancedDataset.from_source(src, settings)
    gaps = [
        np.abs(ds[i][0].astype(int) - rgb8(load(folder / it.file_name).image)).mean()
        for i, it in enumerate(ds.recipe.items)
        if it.action == "augment"
    ]
    return float(np.mean(gaps)), float(np.max(gaps))


def measure(label: str, src: Path, settings: BuildSettings, size: int, rounds: int) -> None:
    runs = contenders(src, settings, size)
    seen: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, read in runs.items():
            start = time.perf_counter()
            n = read()
            seen[name].append(n / (time.perf_counter() - start))
    med = {name: statistics.median(v) for name, v in seen.items()}
    print(
        f"{label}: {n} files ({settings.nmin} per class), {size} px inputs, {os.cpu_count()} cores"
    )
    for name, value in med.items():
        print(f"  {name:<8} {value:8.1f} images/s   {value / med['folder']:5.2f} x folder")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--originals", type=int, default=24, help="500x375 photos in class a")
    ap.add_argument("--megapixel-originals", type=int, default=6, help="12 MP photos in class a")
    ap.add_argument("--nmin", type=int, default=60)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = BuildSettings(nmin=args.nmin, transforms="paper")
    small = corpus(CACHE / f"recipe-500x375-{args.originals}", args.originals, 375, 500)
    measure("500x375", small, settings, args.size, args.rounds)
    mean, worst = jpeg_gap(small, settings)
    print(
        f"  a copy before encoding vs its written JPEG (q{settings.quality}): mean "
        f"{mean:.2f} grey levels per pixel, {worst:.2f} for the worst copy"
    )
    big_n = args.megapixel_originals
    big = corpus(CACHE / f"recipe-12mp-{big_n}", big_n, 3000, 4000)
    measure(
        "12 MP",
        big,
        BuildSettings(nmin=max(4, args.nmin // 4), transforms="paper"),
        args.size,
        args.rounds,
    )
    print("goal: online >= 0.5 x folder at 500x375")


if __name__ == "__main__":
    main()
