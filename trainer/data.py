"""File lists and leak-free grouped splits.

A folder with a balancer `manifest.csv` is read through it: every file has a `source`
(the original it was made from), splits are grouped by source so an original and all its
copies fall on the same side, and validation keeps originals only. A plain folder is the
special case where every file is its own source.

Lazy imports: scikit-learn loads only when folds are split.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from balancer.common.errors import ToolWarning, TrainError, TrainValueError, UserError
from balancer.common.storage import Place, location
from balancer.manifest import (
    MANIFEST,
    RECIPE,
    RECORD,
    is_balanced_folder,
    read_manifest,
    read_record,
)
from balancer.plan import class_rng
from balancer.source import Scan, Skipped, scan

STAMP = ["size", "mtime_ns", "ino", "ctime_ns"]  # imageio.Stamp, as columns
COLUMNS = ["path", "file", "label", "source", "origin", *STAMP, "digest"]


@dataclass
class Folder:
    """A class folder's usable files: columns path, file, label, source, origin, the stamp
    the scan saw (size, mtime_ns, ino, ctime_ns: a file that changes later is noticed) and
    `digest`, of the bytes the scan read (hex: files with the same bytes are one image)."""

    root: Place
    table: pd.DataFrame
    class_names: list[str]
    skipped: list[Skipped]
    has_manifest: bool
    scan: Scan  # the balancer's view of the folder (what its plans are made from)

    def digest(self) -> str:
        """Identifies the data by content (every file's name and bytes, and the manifest's
        bytes): a cv or study resumes only over the same."""
        h = hashlib.sha256(self.scan.digest().encode())
        if self.has_manifest:
            h.update((self.root / MANIFEST).read_bytes())
        return h.hexdigest()[:16]


def list_folder(
    folder: str | Place, *, workers: int | None = None, progress: bool = False
) -> Folder:
    """Every usable image of FOLDER/<class>/..., each checked by decoding it first.

    A balancer manifest.csv (with `source` and `origin`) groups each copy with its original;
    anyone else's manifest.csv (Hugging Face's metadata, say) leaves it a plain folder."""
    root = location(folder)
    if not root.exists():
        raise TrainError(f"data folder not found: {root}")
    _refuse_recipe(root)
    found = scan(root, workers=workers, progress=progress)
    rows = [
        (str(root / im.path), im.path, label, im.path, "original", *im.stamp, im.digest.hex())
        for label, images in found.images.items()
        for im in images
    ]
    skipped = [s for s in found.skipped if s.path not in (MANIFEST, RECORD)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    has_manifest = is_balanced_folder(root) and (root / MANIFEST).is_file()
    if has_manifest:
        try:
            m = read_manifest(root).set_index("file_name")
        except UserError as exc:
            raise TrainError(str(exc)) from None
        known = table.file.isin(m.index)
        table.loc[known, "source"] = m.loc[table.file[known], "source"].to_numpy()
        table.loc[known, "origin"] = m.loc[table.file[known], "origin"].to_numpy()
    elif (root / RECORD).is_file() or table.file.str.contains(COPY_NAME).any():
        table = group_copies_by_name(table)
        warnings.warn(
            f"{root} looks balanced but has no {MANIFEST}: copies are grouped with "
            "their originals by name (<stem>__aug<n>_<transform>)",
            ToolWarning,
            stacklevel=2,
        )
    class_names = sorted(table.label.unique())
    if len(class_names) < 2:
        raise TrainError(f"{root} has {len(class_names)} usable class folder(s); need at least 2")
    return Folder(root, table.reset_index(drop=True), class_names, skipped, has_manifest, found)


def _refuse_recipe(root: Place) -> None:
    """A recipe-only build holds no image: say what trains on it instead."""
    try:
        status = (read_record(root) or {}).get("status")
    except UserError:
        return  # a damaged record: the folder is read as any other
    if status == RECIPE:
        raise TrainError(
            f"{root} is a recipe (balance build --recipe-only): it holds no image; "
            f"`balance materialize {root}` writes them, or train on its source with the "
            "same --nmin, --transforms and --seed"
        )


def same_bytes_groups(table: pd.DataFrame) -> pd.Series:
    """Each file's group for splitting: its source, except that originals with the same bytes
    (one photo saved twice under two names: the same digest, not the same name) share one
    group, and so do their copies."""
    originals = table[table.origin == "original"]
    first: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for source, digest in sorted(zip(originals.source, originals.digest, strict=True)):
        group_of[source] = first.setdefault(digest, source)
    return table.source.map(lambda s: group_of.get(s, s))


COPY_NAME = r"__aug\d+_[a-z]+\.[A-Za-z]+$"  # what `balance build` calls a generated copy


def group_copies_by_name(table: pd.DataFrame) -> pd.DataFrame:
    """Without a manifest: a copy named <stem>__aug<n>_<transform>.<ext> belongs to the
    original <stem> of its class folder (the same group, so never on the other side of a split)."""
    stems = table.file.str.replace(r"\.[^./]+$", "", regex=True)
    is_copy = table.file.str.contains(COPY_NAME)
    group = stems.where(~is_copy, table.file.str.replace(COPY_NAME, "", regex=True))
    return table.assign(source=group, origin=np.where(is_copy, "augmented", "original"))


def grouped_folds(
    table: pd.DataFrame, folds: int, seed: int
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, validation) tables for each of `folds` folds, grouped by source.

    Folds are drawn over the originals with scikit-learn's StratifiedGroupKFold; training
    takes every file (originals and copies) whose source is not in the validation fold;
    validation takes originals only.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    table = _with_groups(table)
    originals = table[table.origin == "original"]
    if originals.group.nunique() < folds:
        raise TrainError(f"{originals.group.nunique()} original images cannot make {folds} folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only N members": expected
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(originals, originals.label, originals.group))
    for _, val_idx in splits:
        val_groups = set(originals.group.iloc[val_idx])
        val = originals[originals.group.isin(val_groups)]
        train = table[~table.group.isin(val_groups)]
        yield train.reset_index(drop=True), val.reset_index(drop=True)


def holdout(table: pd.DataFrame, val_split: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One (train, validation) split holding out `val_split` of each class's source images
    (to the nearest image), grouped by source; validation takes originals only.

    A class keeps at least one source image on each side when it has two; a class of one
    image trains (and the caller names it as absent from validation).
    """
    table = _with_groups(table)
    originals = table[table.origin == "original"]
    held: set[str] = set()
    for label in sorted(originals.label.unique()):
        groups = np.array(sorted(originals.group[originals.label == label].unique()))
        n = min(max(int(round(len(groups) * val_split)), 1), len(groups) - 1)
        held.update(groups[class_rng(seed, label).permutation(len(groups))[:n]])
    val = originals[originals.group.isin(held)]
    return table[~table.group.isin(held)].reset_index(drop=True), val.reset_index(drop=True)


class Parts(NamedTuple):
    """A run's data: `train` trains; `select` chooses the epoch (early stopping, the best
    epoch, a plateau schedule; None: nothing is chosen); `scored` is scored once with the
    weights kept (None: `select` is, as in `train fit`, whose validation part does both)."""

    train: pd.DataFrame
    select: pd.DataFrame | None
    scored: pd.DataFrame | None = None

    def named(self) -> dict[str, pd.DataFrame]:
        """The parts by the name files.csv gives them: train and validation (the part that
        chooses is the part scored), or train, selection (when something is chosen) and
        scored."""
        if self.scored is None:
            if self.select is None:
                raise TrainValueError("a run needs a part to score", parameters=("scored",))
            return {"train": self.train, "validation": self.select}
        chosen = {} if self.select is None else {"selection": self.select}
        return {"train": self.train, **chosen, "scored": self.scored}

    def checked(self, *, chooses: bool) -> pd.DataFrame:
        """The part scored, once the parts suit a config that `chooses` (or not) on held-out
        data: one that chooses needs a selection part."""
        if self.select is None and chooses:
            raise TrainValueError(
                "this config chooses on held-out data (keep 'best' or a plateau schedule): "
                "give it a part to choose on",
                parameters=("keep", "lr_schedule"),
            )
        return self.final

    @property
    def final(self) -> pd.DataFrame:
        """The part scored."""
        final = self.select if self.scored is None else self.scored
        if final is None:
            raise TrainValueError("a run needs a part to score", parameters=("scored",))
        return final


def inner_selection(
    train: pd.DataFrame, share: float | None, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(training, selection) of a fold's training part: with a `share`, that share of its
    originals held out by `holdout` (grouped by source, per class) for choosing the epoch,
    with their copies dropped, so nothing chosen ever looks at the fold that is scored;
    None: (train, None), nothing to choose."""
    if share is None:
        return train, None
    return holdout(train, share, seed)


def _with_groups(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a `group` column: what must stay on one side of a split (an original,
    its copies, and every other file with the same bytes as the original)."""
    return table if "group" in table else table.assign(group=same_bytes_groups(table))


def shared_files(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, str]]:
    """(file in a, file in b) pairs with the same bytes (the digests the scans took): an
    image that is in both tables."""
    left = dict(zip(a.digest, a.file, strict=True))
    right = dict(zip(b.digest, b.file, strict=True))
    return sorted((left[d], right[d]) for d in set(left) & set(right))


def originals_only(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that are not generated copies."""
    return table[table.origin == "original"].reset_index(drop=True)


def label_indices(table: pd.DataFrame, class_names: list[str]) -> np.ndarray:
    """Each row's class index in `class_names` (one line naming any unknown class)."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(table.label) - set(index))
    if unknown:
        raise TrainError(
            f"classes {', '.join(unknown)} are not among the model's classes "
            f"({', '.join(class_names)})"
        )
    return table.label.map(index).to_numpy(dtype=np.int32)


def class_counts(table: pd.DataFrame, class_names: list[str]) -> dict[str, int]:
    """Rows per class, every class of `class_names` included."""
    counts = table.label.value_counts()
    return {name: int(counts.get(name, 0)) for name in class_names}


def describe(table: pd.DataFrame, class_names: list[str]) -> dict:
    """Counts for metrics.json: files, originals, augmented copies, per class."""
    return {
        "files": len(table),
        "originals": int((table.origin == "original").sum()),
        "augmented": int((table.origin == "augmented").sum()),
        "per_class": class_counts(table, class_names),
    }
