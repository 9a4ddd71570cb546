"""k-fold cross-validation grouped by source: no augmented copy of a validation image trains."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from balancer.atomic import write_atomic
from balancer.errors import TrainError
from balancer.manifest import CSV_LINE_END
from balancer.ownership import Claim, Existing, claim

from .config import FOLDS, TrainConfig
from .data import Folder, grouped_folds, list_folder
from .evaluation import read_metrics
from .outputs import CV, RUN
from .training import train_run


def mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
    }


def cross_validate(
    data: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    folds: int = 5,
    existing: Existing = Existing.RESUME,
    progress: bool = True,
) -> dict:
    """Train one model per fold (StratifiedGroupKFold over the originals, grouped by source).

    Writes OUT/fold-<k>/ (a full run folder each, appearing whole), cv.csv (one row per
    fold) and cv.json (per fold and mean +- std of accuracy and macro F1). By default a
    folder holding the same cross-validation of the same data is resumed: finished folds
    are read back, not trained again; Existing.OVERWRITE replaces it.
    """
    config = config or TrainConfig()
    FOLDS.check(folds, "--folds", TrainError)
    config.check_weights()
    folder = list_folder(data, progress=progress)
    settings = {
        "data": str(folder.root.resolve()),
        "data_digest": folder.digest(),
        "folds": folds,
        "config": config.to_dict(),
    }
    with claim(out, CV, inputs={"data folder": Path(data)}, existing=existing) as c:
        c.check_resume(settings, "settings or data")
        c.begin({"settings": settings})
        return _cross_validate(c, folder, config, settings, progress)


def _cross_validate(
    c: Claim, folder: Folder, config: TrainConfig, settings: dict, progress: bool
) -> dict:
    folds = settings["folds"]
    rows = []
    for k, (train, val) in enumerate(grouped_folds(folder.table, folds, config.seed)):
        run = c.path / f"fold-{k}"
        if not (run / RUN.record).is_file():
            if progress:
                print(
                    f"fold {k + 1}/{folds}: {len(train)} training, {len(val)} validation files",
                    file=sys.stderr,
                )
            with c.staged(run.name) as tmp:
                train_run(
                    train,
                    val,
                    folder.class_names,
                    config,
                    tmp,
                    progress=progress,
                    extra={"fold": k, "folds": folds},
                )
        m = read_metrics(run / RUN.record)
        rows.append(
            {
                "fold": k,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "weighted_f1": m["weighted_f1"],
                "train_files": len(train),
                "validation_files": len(val),
                "epochs_run": m["epochs_run"],
            }
        )
    table = pd.DataFrame(rows)
    text = table.to_csv(index=False, lineterminator=CSV_LINE_END)
    write_atomic(c.path / "cv.csv", text.encode("utf-8"))
    result = c.complete(
        {
            "settings": settings,
            "folds": rows,
            "accuracy": mean_std(table.accuracy),
            "macro_f1": mean_std(table.macro_f1),
            "config": config.to_dict(),
            "grouped_by_source": folder.has_manifest,
            "class_names": folder.class_names,
        }
    )
    return {**result, "out": str(c.path)}
