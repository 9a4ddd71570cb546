"""Stratified train/val/test split of a source folder, so only the training part is balanced."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .build import check_output, run_items
from .errors import BalanceError
from .manifest import write_csv
from .plan import Item, plan_class
from .parallel import default_workers
from .scan import scan

SPLIT_MANIFEST = "split.csv"


def split_counts(n: int, test: float, val: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for a class of n: rounded shares, at least one in each asked-for
    part while there are images left; training keeps at least one, then test, then val."""
    def share(fraction: float, left: int) -> int:
        return 0 if fraction == 0 else min(left - 1, max(1, round(n * fraction)))

    n_test = share(test, n)
    n_val = share(val, n - n_test)
    return n - n_test - n_val, n_val, n_test


@dataclass
class SplitResult:
    out: Path
    counts: dict[str, dict[str, int]]  # label -> {train, val, test}
    warnings: list[str] = field(default_factory=list)
    skipped: list = field(default_factory=list)


def split(src: str | Path, out: str | Path, test: float = 0.2, val: float = 0.0, seed: int = 0,
          link: bool = False, workers: int | None = None, overwrite: bool = False,
          progress: bool = True) -> SplitResult:
    """Copy SRC into OUT/train, OUT/val (when val > 0) and OUT/test, stratified per class.

    Each class is shuffled with its own generator (seed, class name); a class too small for
    every part keeps at least one training image and is named in the warnings. OUT/split.csv
    records every file's part. JPEG/PNG are copied byte for byte, other formats become PNG.
    """
    if not 0 <= test < 1 or not 0 <= val < 1 or test + val >= 1:
        raise BalanceError(f"--test and --val must be fractions with test + val < 1 "
                           f"(got test={test}, val={val})")
    if test == 0 and val == 0:
        raise BalanceError("nothing to split: give --test and/or --val")
    workers = workers or default_workers()
    found = scan(src, workers, progress)
    out = check_output(found.root, out, overwrite=overwrite, marker=SPLIT_MANIFEST)
    result = SplitResult(out, {}, skipped=found.skipped)
    items, rows = [], []
    for label, images in found.images.items():
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        order = rng.permutation(len(images))
        n_train, n_val, n_test = split_counts(len(images), test, val)
        result.counts[label] = {"train": n_train, "val": n_val, "test": n_test}
        if (test > 0 and n_test == 0) or (val > 0 and n_val == 0):
            result.warnings.append(f"class '{label}' has {len(images)} image(s): too few to split "
                                   f"(train {n_train}, val {n_val}, test {n_test})")
        parts = np.repeat(["train", "val", "test"], [n_train, n_val, n_test])
        for part in ("train", "val", "test"):
            chosen = [images[i] for i, p in zip(order, parts) if p == part]
            for it in plan_class(label, chosen, len(chosen), {}, seed):
                items.append(Item(f"{part}/{it.file_name}", it.label, it.source, it.origin, it.action))
                rows.append({"file_name": f"{part}/{it.file_name}", "label": label,
                             "source": it.source, "split": part})
    run_items(found.root, out, items, workers, link=link, progress=progress, replace=overwrite)
    rows.sort(key=lambda r: r["file_name"])
    write_csv(out / SPLIT_MANIFEST, rows, ["file_name", "label", "source", "split"])
    return result
