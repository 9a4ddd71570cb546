"""k-fold cross-validation grouped by source: no augmented copy of a validation image trains."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balancer.errors import TrainError
from balancer.manifest import CSV_LINE_END
from balancer.ownership import claimed, clear, write_json

from .config import TrainConfig
from .data import grouped_folds, list_folder
from .outputs import CV, staged, staging, stamp
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
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Train one model per fold (StratifiedGroupKFold over the originals, grouped by source).

    Writes OUT/fold-<k>/ (a full run folder each, appearing whole), cv.csv (one row per
    fold) and cv.json (per fold and mean +- std of accuracy and macro F1). Running the same
    command again resumes: finished folds are read back, not trained again.
    """
    config = config or TrainConfig()
    if folds < 2:
        raise TrainError(f"--folds must be at least 2 (got {folds})")
    settings = {"data": str(Path(data).resolve()), "folds": folds, "config": config.to_dict()}
    guard: dict[str, Any] = dict(
        inputs={"data folder": Path(data)}, resume=not overwrite, overwrite=overwrite
    )
    with claimed(out, CV, **guard) as (out, old):
        _open_cv(out, old, settings, overwrite)
        return _cross_validate(data, out, config, settings, progress)


def _open_cv(out: Path, old: dict | None, settings: dict, overwrite: bool) -> None:
    """Start, resume (same settings) or replace (overwrite) the cv folder `out`."""
    if old is not None:
        if overwrite:
            clear(out, CV, old)
        elif old.get("settings") != settings:
            raise TrainError(
                f"{out} holds a cross-validation with other settings: "
                "use --overwrite or another --out"
            )
    for entry in out.iterdir():  # a killed fold's half-written run folder
        if staging(entry):
            shutil.rmtree(entry)
    write_json(out / CV.record, stamp(CV, {"status": "running", "settings": settings}))


def _cross_validate(data, out: Path, config: TrainConfig, settings: dict, progress: bool) -> dict:
    folder = list_folder(data, progress=progress)
    folds = settings["folds"]
    rows = []
    for k, (train, val) in enumerate(grouped_folds(folder.table, folds, config.seed)):
        run = out / f"fold-{k}"
        if not (run / "metrics.json").exists():
            if progress:
                print(
                    f"fold {k + 1}/{folds}: {len(train)} training, {len(val)} validation files",
                    file=sys.stderr,
                )
            with staged(run) as tmp:
                train_run(
                    train,
                    val,
                    folder.class_names,
                    config,
                    tmp,
                    progress=progress,
                    extra={"fold": k, "folds": folds},
                )
        m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
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
    table.to_csv(out / "cv.csv", index=False, lineterminator=CSV_LINE_END)
    result = {
        "status": "complete",
        "settings": settings,
        "folds": rows,
        "accuracy": mean_std(table.accuracy),
        "macro_f1": mean_std(table.macro_f1),
        "config": config.to_dict(),
        "grouped_by_source": folder.has_manifest,
        "class_names": folder.class_names,
    }
    write_json(out / CV.record, stamp(CV, result))
    result["out"] = str(out)
    return result
