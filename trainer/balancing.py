"""A training set balanced from a source's originals, made on the fly from the plan.

`train fit SRC --nmin`, `cv --nmin` and the studies plan copies with the balancer's own
plan (`balancer.plan`) and never write them: each copy is a row whose image the input
pipeline renders from its original with the writer's own function (`balancer.recipe`),
when the batch is made. cv and the studies split first (grouped by source) and plan each
fold's copies from its training originals only, so a validation image or a copy of one
never trains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from balancer.builder import BuildSettings
from balancer.common.errors import TrainValueError
from balancer.common.limits import COUNT
from balancer.plan import Item, class_targets, make_plan
from balancer.recipe import Recipe, check_redraw
from balancer.source import Scan
from balancer.transforms import PAPER_SET, check_spec

from .data import COLUMNS, STAMP, class_counts

MADE = "made"  # a table column: how a row's image is made (Made), None where its file is read


class Made(NamedTuple):
    """A row whose image is rendered: its plan item, and the transforms each epoch draws its
    copy anew from (None: the plan's draw, every epoch)."""

    item: Item
    redraw: Mapping[str, float | None] | None = None


@dataclass(frozen=True, kw_only=True)
class Balancing:
    """How a run balances its source on the fly: every class up to `nmin`, one transform of
    `transforms` per copy ('crop,rotate=30' or a dict, as `balance build`), each copy drawn
    as planned or (redraw="epoch") anew every epoch. Checked once when made."""

    nmin: int
    transforms: str | Mapping[str, float | None] = PAPER_SET
    redraw: str | None = None

    def __post_init__(self) -> None:
        COUNT.check(self.nmin, "nmin", TrainValueError)
        object.__setattr__(self, "transforms", check_spec(self.transforms))
        check_redraw(self.redraw, TrainValueError)

    @property
    def chosen(self) -> dict[str, float | None]:
        """The transform set T: {name: magnitude}."""
        return dict(self.transforms)  # type: ignore[arg-type]  # a dict after __post_init__

    def record(self) -> dict:
        """As a run's or a cv's record holds it (what a resume must share)."""
        return {
            "nmin": self.nmin,
            "transforms": self.chosen,
            **({"redraw": self.redraw} if self.redraw else {}),
        }

    def settings(self, seed: int) -> BuildSettings:
        """The build settings whose plan this balancing trains on."""
        return BuildSettings(nmin=self.nmin, transforms=self.chosen, seed=seed)


@dataclass(frozen=True)
class Arm:
    """One way of making the training set from a fold's training originals."""

    name: str
    transforms: dict | None = None  # None: no copies; {}: plain copies (ROS); else one each
    balance: bool = False  # True: up to N_min per class (ROS); False: one copy per image
    class_weight: bool = False  # True: no copies, balanced class weights in the loss instead
    redraw: bool = False  # True: each copy's transform drawn anew every epoch (online)


def plan_rows(
    items: list[Item], found: Scan, *, redraw: Mapping[str, float | None] | None = None
) -> pd.DataFrame:
    """A table row per plan item (COLUMNS and MADE): an original, or a plain copy, is read
    from its file; a transformed copy is made from its original (`redraw`: anew each epoch).
    A made copy's `digest` stands for what makes it (its original's bytes, transform, seed
    and redraw), so a resumed run notices another recipe."""
    by_path = found.by_path()
    rows = []
    for it in items:
        im = by_path[it.source]
        made = it.action == "augment"
        digest = im.digest.hex()
        if made:
            what = f"{digest}\0{it.transform}\0{it.magnitude}\0{it.seed}\0{redraw}"
            digest = hashlib.sha256(what.encode()).hexdigest()[:32]
        rows.append(
            (
                str(found.root / it.source),
                it.file_name,
                it.label,
                it.source,
                it.origin,
                *im.stamp,
                digest,
                Made(it, redraw) if made else None,
            )
        )
    table = pd.DataFrame(rows, columns=[*COLUMNS, MADE])
    return table.astype(dict.fromkeys(STAMP, "int64"))


def recipe_table(found: Scan, settings: BuildSettings, *, redraw: str | None) -> pd.DataFrame:
    """Every file `balance build` would write with `settings`, as table rows in the order a
    scan of that folder lists them (so training sees what it would see from the folder)."""
    recipe = Recipe.from_scan(found, settings)
    table = plan_rows(list(recipe.items), found, redraw=settings.chosen if redraw else None)
    return table.sort_values(["label", "file"], kind="stable").reset_index(drop=True)


def training_table(
    arm: Arm,
    train: pd.DataFrame,
    found: Scan,
    *,
    class_names: list[str],
    nmin: int | None,
    seed: int,
) -> pd.DataFrame:
    """The fold's training originals plus the arm's copies, planned from them alone."""
    if arm.transforms is None:
        return train
    counts = class_counts(train, class_names)
    counts = {c: n for c, n in counts.items() if n}
    targets = (
        class_targets(counts, nmin=nmin) if arm.balance else {c: 2 * n for c, n in counts.items()}
    )
    by_path = found.by_path()
    images = {c: [by_path[f] for f in train.file[train.label == c]] for c in counts}
    copies = [
        it for it in make_plan(images, targets, arm.transforms, seed) if it.origin == "augmented"
    ]
    redraw = arm.transforms if arm.redraw else None
    extra = plan_rows(copies, found, redraw=redraw)
    return pd.concat([train.assign(**{MADE: None}), extra], ignore_index=True)
