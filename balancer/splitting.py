"""Stratified train/val/test split of a source folder, so only the training part is balanced."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .common.checks import flag, instance
from .common.errors import BalanceError, BalanceValueError
from .common.limits import SPLIT_FRACTION
from .common.ownership import Existing, OutputKind, check_claim, claim
from .common.parallel import RunOptions, pool
from .common.storage import Place
from .journal import Written, csv_listing, journal_for
from .manifest import MANIFEST, is_balanced_folder
from .plan import Item, check_seed, class_rng, plan_class
from .reports import SplitRecord
from .source import check_source, scan
from .store_writing import check_link
from .writing import Writing, run_items

SPLIT_MANIFEST = "split.csv"
SPLIT_RECORD = "split.json"
SPLIT_COLUMNS = ["file_name", "label", "source", "split", "size", "sha256"]
PARTS = ("train", "val", "test")

SPLIT_OUTPUT = OutputKind(
    "balance split output",
    SPLIT_RECORD,
    "split",
    listing=csv_listing(SPLIT_MANIFEST, "split_sha256"),
    listing_file=SPLIT_MANIFEST,
    shape=SplitRecord,
    not_classes="its parts (train/, val/, test/) are class folders: give one of them",
    class_parts=True,
)


def split_row(item: Item, written: Written) -> dict:
    """A file's row of split.csv: where it went, what it was, its size and sha256."""
    return {
        "file_name": item.file_name,
        "label": item.label,
        "source": item.source,
        "split": item.file_name.split("/", 1)[0],
        "size": written.size,
        "sha256": written.sha256,
    }


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
    """A split's outcome: the output folder, files per part and class, what was skipped."""

    out: Place
    counts: dict[str, dict[str, int]]  # label -> {train, val, test}
    warnings: list[str] = field(default_factory=list)
    skipped: list = field(default_factory=list)


def split(
    src: str | Place,
    out: str | Place,
    *,
    test: float = 0.2,
    val: float = 0.0,
    seed: int = 0,
    link: bool = False,
    existing: Existing = Existing.ERROR,
    run: RunOptions = RunOptions(),
) -> SplitResult:
    """Copy SRC into OUT/train, OUT/val (when val > 0) and OUT/test, stratified per class.

    Each class is shuffled with its own generator (seed, class name); a class too small for
    every part keeps at least one training image and is named in the warnings. OUT/split.csv
    records every file's part, OUT/split.json the run. JPEG/PNG are copied byte for byte,
    other formats (and photos with an EXIF rotation) are re-encoded. A killed split is
    finished with Existing.RESUME or replaced with Existing.OVERWRITE. A balanced folder is
    refused: its copies would land in another part than their originals.
    """
    link = flag(link, "link")
    run = instance(run, RunOptions, "run", "RunOptions(workers=4)")
    SPLIT_FRACTION.check(test, "test")
    SPLIT_FRACTION.check(val, "val")
    if test + val >= 1:
        raise BalanceValueError(
            f"test + val must stay below 1 (got {test} + {val})", parameters=("test", "val")
        )
    if test == 0 and val == 0:
        raise BalanceValueError(
            "nothing to split: give test and/or val", parameters=("test", "val")
        )
    check_seed(seed)
    root = check_source(src)
    if is_balanced_folder(root):
        raise BalanceError(
            f"{root} is a balanced folder ({MANIFEST}): its copies would be split apart from "
            "their originals; split the source before balancing, then balance the training part"
        )
    inputs = {"source folder": root}
    check_link(check_claim(out, SPLIT_OUTPUT, inputs=inputs, existing=existing)[0], link=link)
    with pool(run) as p:
        found = scan(root, workers=p.workers, progress=p.progress)
        with claim(out, SPLIT_OUTPUT, inputs=inputs, existing=existing) as c:
            settings = {"source_digest": found.digest(), "test": test, "val": val, "seed": seed}
            c.check_resume(settings, "settings or source")
            result, items = _plan_split(found, c.path, test=test, val=val, seed=seed)
            record = {"source": str(found.root), "settings": settings, "counts": result.counts}
            c.begin(record)
            journal = journal_for(c.path, SPLIT_MANIFEST, SPLIT_COLUMNS, split_row)
            written = run_items(
                found.root,
                c.path,
                items,
                p.workers,
                Writing(link=link),
                journal=journal,
                progress=p.progress,
            )
            digest = journal.finish(items, written)
            c.complete({**record, "split_sha256": digest})
            return result


def _plan_split(found: Any, out: Place, *, test: float, val: float, seed: int) -> Any:
    """(result, items): each class shuffled with its own generator."""
    result = SplitResult(out, {}, skipped=found.skipped)
    items = []
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
    return result, items
