"""k-fold cross-validation grouped by source: no augmented copy of a validation image trains."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from balancer.manifest import CSV_LINE_END
from .config import TrainConfig, TrainError
from .data import grouped_folds, list_folder
from .outputs import CV, output_folder, stamp, staged, write_json
from .training import train_run


def mean_std(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def cross_validate(data: str | Path, out: str | Path, config: TrainConfig | None = None,
                   folds: int = 5, overwrite: bool = False, progress: bool = True) -> dict:
    """Train one model per fold (StratifiedGroupKFold over the originals, grouped by source).

    Writes OUT/fold-<k>/ (a full run folder each), cv.csv (one row per fold) and cv.json
    (per fold and mean +- std of accuracy and macro F1).
    """
    config = config or TrainConfig()
    if folds < 2:
        raise TrainError(f"--folds must be at least 2 (got {folds})")
    with output_folder(Path(out), CV, overwrite, {"data folder": Path(data)}) as out:
        return _cross_validate(data, out, config, folds, progress)


def _cross_validate(data, out: Path, config: TrainConfig, folds: int, progress: bool) -> dict:
    folder = list_folder(data, progress=progress)
    rows = []
    with staged(out) as tmp:
        for k, (train, val) in enumerate(grouped_folds(folder.table, folds, config.seed)):
            run = tmp / f"fold-{k}"
            run.mkdir()
            m = train_run(train, val, folder.class_names, config, run, progress,
                          extra={"fold": k, "folds": folds})
            rows.append({"fold": k, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                         "weighted_f1": m["weighted_f1"], "train_files": len(train),
                         "validation_files": len(val), "epochs_run": m["epochs_run"]})
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "cv.csv", index=False, lineterminator=CSV_LINE_END)
        result = {"folds": rows, "accuracy": mean_std(table.accuracy),
                  "macro_f1": mean_std(table.macro_f1), "config": config.to_dict(),
                  "grouped_by_source": folder.has_manifest, "class_names": folder.class_names}
        write_json(tmp / "cv.json", stamp(CV, result))
    result["out"] = str(out)
    return result
