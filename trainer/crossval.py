"""k-fold cross-validation grouped by source: no augmented copy of a validation image trains."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from balancer.common.checks import member, optional
from balancer.common.errors import ToolWarning, TrainValueError
from balancer.common.ownership import Claim, Existing, claim
from balancer.common.storage import Place, location
from balancer.manifest import CSV_LINE_END

from . import backend
from .balancing import Arm, Balancing, training_table
from .callbacks import epoch_rule
from .config import FOLDS, TrainConfig
from .control import RunControl
from .data import Folder, Parts, grouped_folds, inner_selection, list_folder, originals_only
from .evaluation import read_metrics
from .outputs import CV, RUN
from .records import FoldRow, RunMetrics
from .reuse import Reuse
from .training import train_run


def mean_std(values: Sequence[float] | pd.Series) -> dict:
    """{mean, std} of the values (std with ddof=1; 0 for one value)."""
    values = np.asarray(values, dtype=float)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
    }


def cross_validate(
    data: str | Place,
    out: str | Place,
    config: TrainConfig | None = None,
    *,
    folds: int = 5,
    balance: Balancing | None = None,
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> dict:
    """Train one model per fold (StratifiedGroupKFold over the originals, grouped by source).

    With `balance`, each fold's training part is balanced from its own originals (every
    class up to N_min, one transform of T per copy), as the paper's method runs inside each
    fold: the copies are made from their originals as their batches are, never written.
    Without it, DATA trains as it is (a balanced folder keeps each copy with its original,
    but its folds are no longer balanced, which a warning shows).
    Writes OUT/fold-<k>/ (k from 1; a full run folder each, appearing whole), cv.csv (one
    row per fold) and cv.json (per fold and mean +- std of accuracy and macro F1, and the
    classes a fold had no validation image of). By default a folder holding the same
    cross-validation of the same data is resumed: finished folds are read back, not
    trained again; Existing.OVERWRITE replaces it. The folds share one compiled model
    (`control.reuse_model`), reset to its start for each: its step is traced once.
    """
    config = optional(config, TrainConfig, "config", "TrainConfig(epochs=30)") or TrainConfig()
    control = optional(control, RunControl, "control", "RunControl(workers=4)") or RunControl()
    existing = member(existing, Existing, "existing", TrainValueError)
    FOLDS.check(folds, "folds", TrainValueError)
    balance = optional(balance, Balancing, "balance", "Balancing(nmin=1500)")
    config.check_weights()
    folder = list_folder(data, progress=control.progress)
    config = config.resolved(len(folder.table))
    settings = {
        "counted_from": 1,  # fold-1 is the first fold (folders of 0.x began at fold-0)
        **backend.maker(),
        "data": str(folder.root.resolve()),
        "data_digest": folder.digest(),
        "folds": folds,
        "config": config.to_dict(),
        "balance": None if balance is None else balance.record(),
    }
    with claim(out, CV, inputs={"data folder": location(data)}, existing=existing) as c:
        c.check_resume(settings, "settings or data")
        c.begin({"settings": settings})
        return _cross_validate(c, folder, config, settings, control)


def _cross_validate(
    c: Claim, folder: Folder, config: TrainConfig, settings: dict, control: RunControl
) -> dict:
    folds, balance, progress = settings["folds"], settings["balance"], control.progress
    splits = list(grouped_folds(folder.table, folds, config.seed))
    reuse = Reuse(enabled=control.reuse_model)
    if balance is None and folder.has_manifest:
        _say_unbalanced(splits, folder.class_names)
    share = config.val_split if config.chooses else None
    rows: list[FoldRow] = []
    for k, (train, val) in enumerate(splits, start=1):
        train, select = inner_selection(train, share, config.seed + k - 1)
        run = c.path / f"fold-{k}"
        if not (run / RUN.record).is_file():
            if balance is not None:
                train = _balanced(folder, train, balance, k=k, config=config)
            if progress:
                chosen = "" if select is None else f", {len(select)} to choose the epoch on"
                print(
                    f"fold {k}/{folds}: {len(train)} training files{chosen}, {len(val)} scored",
                    file=sys.stderr,
                )
            with c.staged(run.name, RUN) as tmp:
                train_run(
                    Parts(train, select, val),
                    folder.class_names,
                    config,
                    tmp,
                    control=replace(control, label=f"fold {k}/{folds}: "),
                    extra={"fold": k, "folds": folds},
                    reuse=reuse,
                )
        rows.append(_fold_row(read_metrics(run / RUN.record), k, folds, progress=progress))
    table = pd.DataFrame(rows)
    text = table.to_csv(index=False, lineterminator=CSV_LINE_END)
    result = c.complete(
        {
            "settings": settings,
            "folds": rows,
            "accuracy": mean_std(table.accuracy),
            "macro_f1": mean_std(table.macro_f1),
            "config": config.to_dict(),
            "grouped_by_source": folder.has_manifest,
            "epoch_rule": epoch_rule(config, scored_apart=True),
            "class_names": folder.class_names,
            "macro_f1_over": "every class of the data; a class with no validation image in a "
            "fold counts as 0 there (as early stopping's F1 counts it)",
        },
        files={"cv.csv": text.encode("utf-8")},
    )
    return {**result, "out": str(c.path)}


def _balanced(
    folder: Folder, train: pd.DataFrame, balance: dict, *, k: int, config: TrainConfig
) -> pd.DataFrame:
    """Fold k's training part balanced from its own originals (`cv --nmin`): its copies are
    made when their batches are, never written."""
    return training_table(
        Arm("ROS + T", balance["transforms"], balance=True, redraw=bool(balance.get("redraw"))),
        originals_only(train),
        folder.scan,
        class_names=folder.class_names,
        nmin=balance["nmin"],
        seed=config.seed + k - 1,
    )


def _fold_row(m: RunMetrics, k: int, folds: int, *, progress: bool) -> FoldRow:
    """cv.csv's row of fold k, from its run's metrics (a class it could not score named)."""
    absent = m.get("absent_classes") or []
    if absent and progress:
        print(
            f"fold {k}/{folds}: no validation image of {', '.join(absent)}: "
            "each counts as 0 in its macro F1",
            file=sys.stderr,
        )
    return {
        "fold": k,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "weighted_f1": m["weighted_f1"],
        "train_files": m["data"]["train"]["files"],
        "selection_files": m["data"].get("selection", {}).get("files", 0),
        "validation_files": m["data"]["validation"]["files"],
        "epochs_run": m["epochs_run"],
        "scored_epoch": m["scored_epoch"],
        "absent_classes": " ".join(absent),
    }


def _say_unbalanced(splits: list, class_names: list[str]) -> None:
    """A warning when a balanced folder's folds are not balanced any more: the class whose
    training count varies most across folds, with its counts."""
    counts = {c: [int((train.label == c).sum()) for train, _ in splits] for c in class_names}
    spread = {c: max(v) - min(v) for c, v in counts.items()}
    worst = max(spread, key=lambda c: spread[c])
    sizes = [len(train) for train, _ in splits]
    per_fold = [{c: counts[c][k] for c in class_names} for k in range(len(splits))]
    unequal = any(len(set(f.values())) > 1 for f in per_fold)
    if spread[worst] == 0 and not unequal:
        return
    warnings.warn(
        "cross-validating a balanced folder keeps every copy with its original, but its "
        f"folds' training parts are no longer balanced (class '{worst}': "
        f"{'/'.join(map(str, counts[worst]))} training images in the {len(sizes)} folds); "
        "`train cv SRC --nmin N --transforms T` balances inside each fold instead",
        ToolWarning,
        stacklevel=3,
    )
