"""Stratified train/val/test split of a source folder, so only the training part is balanced."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import BalanceError
from .manifest import write_csv
from .ownership import TOOL, OutputKind, claimed, files_only, write_json
from .parallel import resolve_workers
from .plan import check_seed, class_rng, plan_class
from .source import scan
from .writing import is_written, prepare_folders, run_items, sweep

SPLIT_MANIFEST = "split.csv"
SPLIT_RECORD = "split.json"
PARTS = ("train", "val", "test")


def _split_holds(record: dict, entry: Path) -> bool:
    if entry.name in (SPLIT_MANIFEST, SPLIT_RECORD):
        return entry.is_file() and not entry.is_symlink()
    classes = record.get("counts")
    if entry.name not in PARTS or entry.is_symlink() or not entry.is_dir():
        return False
    return isinstance(classes, dict) and all(
        c.name in classes and files_only(c, is_written) for c in entry.iterdir()
    )


SPLIT_OUTPUT = OutputKind("balance split output", SPLIT_RECORD, "split", _split_holds)


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


def split(
    src: str | Path,
    out: str | Path,
    *,
    test: float = 0.2,
    val: float = 0.0,
    seed: int = 0,
    link: bool = False,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> SplitResult:
    """Copy SRC into OUT/train, OUT/val (when val > 0) and OUT/test, stratified per class.

    Each class is shuffled with its own generator (seed, class name); a class too small for
    every part keeps at least one training image and is named in the warnings. OUT/split.csv
    records every file's part, OUT/split.json the run. JPEG/PNG are copied byte for byte,
    other formats (and photos with an EXIF rotation) are re-encoded. A killed split is
    finished with resume=True or replaced with overwrite=True.
    """
    if (
        not (math.isfinite(test) and math.isfinite(val))
        or not 0 <= test < 1
        or not 0 <= val < 1
        or test + val >= 1
    ):
        raise BalanceError(
            f"--test and --val must be fractions with test + val < 1 (got test={test}, val={val})"
        )
    if test == 0 and val == 0:
        raise BalanceError("nothing to split: give --test and/or --val")
    check_seed(seed)
    workers = resolve_workers(workers)
    found = scan(src, workers=workers, progress=progress)
    guard: dict[str, Any] = dict(
        inputs={"source folder": found.root}, resume=resume, overwrite=overwrite
    )
    with claimed(out, SPLIT_OUTPUT, **guard) as (out, previous):
        return _split(
            found,
            out,
            previous,
            test=test,
            val=val,
            seed=seed,
            link=link,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
        )


def _split(
    found, out: Path, previous: dict | None, *, test, val, seed, link, workers, overwrite, progress
) -> SplitResult:
    settings = {"source_digest": found.digest(), "test": test, "val": val, "seed": seed}
    if previous is not None and not overwrite and previous.get("settings") != settings:
        raise BalanceError(
            f"--resume: {out} holds a split of other settings or of a changed "
            "source; use --overwrite to start again"
        )
    result = SplitResult(out, {}, skipped=found.skipped)
    items, rows = [], []
    for label, images in found.images.items():
        rng = class_rng(seed, label)
        order = rng.permutation(len(images))
        n_train, n_val, n_test = split_counts(len(images), test, val)
        result.counts[label] = {"train": n_train, "val": n_val, "test": n_test}
        if (test > 0 and n_test == 0) or (val > 0 and n_val == 0):
            result.warnings.append(
                f"class '{label}' has {len(images)} image(s): too few to split "
                f"(train {n_train}, val {n_val}, test {n_test})"
            )
        parts = np.repeat(["train", "val", "test"], [n_train, n_val, n_test])
        for part in ("train", "val", "test"):
            chosen = [images[i] for i, p in zip(order, parts, strict=False) if p == part]
            for it in plan_class(label, chosen, len(chosen), {}, seed):
                items.append(replace(it, file_name=f"{part}/{it.file_name}"))
                rows.append(
                    {
                        "file_name": f"{part}/{it.file_name}",
                        "label": label,
                        "source": it.source,
                        "split": part,
                    }
                )
    record = {
        "tool": TOOL,
        "kind": "split",
        "version": __version__,
        "status": "running",
        "source": str(found.root),
        "settings": settings,
        "counts": result.counts,
    }
    prepare_folders(out, items, SPLIT_OUTPUT, record, previous, overwrite)
    run_items(found.root, out, items, workers, link=link, progress=progress)
    sweep(out, items)
    rows.sort(key=lambda r: r["file_name"])
    write_csv(out / SPLIT_MANIFEST, rows, ["file_name", "label", "source", "split"])
    record["status"] = "complete"
    write_json(out / SPLIT_RECORD, record)
    return result
