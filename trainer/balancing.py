"""A fold's training part balanced with the balancer library, from its originals alone.

`cv --nmin` and the studies split first (grouped by source), then make copies from each
fold's training originals only, so a validation image or a copy of one never trains.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from balancer.common.errors import ToolWarning
from balancer.common.imageio import DIGEST_BYTES, stamp_of
from balancer.journal import Journal
from balancer.manifest import COLUMNS, MANIFEST, manifest_row
from balancer.plan import class_targets, make_plan
from balancer.source import Scan
from balancer.writing import run_items, unchanged_copies, unchanged_warning

from .data import STAMP, class_counts


@dataclass(frozen=True)
class Arm:
    """One way of making the training set from a fold's training originals."""

    name: str
    transforms: dict | None = None  # None: no copies; {}: plain copies (ROS); else one each
    balance: bool = False  # True: up to N_min per class (ROS); False: one copy per image
    class_weight: bool = False  # True: no copies, balanced class weights in the loss instead


def training_table(
    arm: Arm,
    train: pd.DataFrame,
    found: Scan,
    *,
    cache: Path,
    class_names: list[str],
    nmin: int | None,
    seed: int,
    workers: int,
) -> pd.DataFrame:
    """The fold's training originals plus the arm's copies, made from them alone."""
    if arm.transforms is None:
        return train
    counts = class_counts(train, class_names)
    counts = {c: n for c, n in counts.items() if n}
    targets = (
        class_targets(counts, nmin=nmin) if arm.balance else {c: 2 * n for c, n in counts.items()}
    )
    by_path = {im.path: im for ims in found.images.values() for im in ims}
    images = {c: [by_path[f] for f in train.file[train.label == c]] for c in counts}
    copies = [
        it for it in make_plan(images, targets, arm.transforms, seed) if it.origin == "augmented"
    ]
    if arm.transforms:
        journal = Journal(cache / MANIFEST, COLUMNS, manifest_row)
        written = run_items(found.root, cache, copies, workers, journal=journal, progress=False)
        journal.finish(copies, written)
        unchanged = unchanged_copies(copies, written)
        if unchanged:
            warnings.warn(unchanged_warning(unchanged), ToolWarning, stacklevel=2)
        paths = [str(cache / it.file_name) for it in copies]
        files = [f"{cache.name}/{it.file_name}" for it in copies]
        stamps = [stamp_of(os.stat(p)) for p in paths]  # as written: a change is noticed
        digests = [written[it.file_name].sha256[: 2 * DIGEST_BYTES] for it in copies]
    else:  # plain random over-sampling: the same original file, listed again
        paths = [str(found.root / it.source) for it in copies]
        files = [it.source for it in copies]
        stamps = [by_path[it.source].stamp for it in copies]
        digests = [by_path[it.source].digest.hex() for it in copies]
    extra = pd.DataFrame(
        {
            "path": paths,
            "file": files,
            "label": [it.label for it in copies],
            "source": [it.source for it in copies],
            "origin": "augmented",
        }
    )
    extra[STAMP] = pd.DataFrame(stamps, columns=STAMP, dtype="int64")
    extra["digest"] = digests
    return pd.concat([train, extra], ignore_index=True)
