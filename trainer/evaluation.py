"""Scores (scikit-learn), and evaluate/predict with a finished run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from balancer.errors import TrainError
from balancer.ownership import claimed, write_json

from . import backend
from .config import TrainConfig
from .data import label_indices, list_folder, originals_only
from .outputs import EVALUATION, plot_confusion, staged, stamp


def scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support, confusion matrix.

    Macro F1 averages over the classes present in y_true (a class with no image to score
    would count as 0 and drag the mean down); those absent are listed in `absent_classes`.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(range(len(class_names)))
    present = sorted(set(np.asarray(y_true).tolist()))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "absent_classes": [name for i, name in enumerate(class_names) if i not in present],
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def summary(metrics: dict, worst: int = 3) -> str:
    """A short table: accuracy, macro F1 and the classes with the lowest F1."""
    absent = metrics.get("absent_classes", [])
    per = sorted(
        ((k, v) for k, v in metrics["per_class"].items() if k not in absent),
        key=lambda kv: kv[1]["f1"],
    )[:worst]
    scored = (
        f" (over {len(metrics['per_class']) - len(absent)} classes; not scored, no image: "
        f"{', '.join(absent)})"
        if absent
        else ""
    )
    lines = [
        f"accuracy   {metrics['accuracy']:.4f}",
        f"macro F1   {metrics['macro_f1']:.4f}{scored}",
        "worst classes (F1, recall, support):",
    ]
    lines += [f"  {name:<16} {m['f1']:.3f}  {m['recall']:.3f}  {m['support']}" for name, m in per]
    return "\n".join(lines)


class Run:
    """A finished run folder: the model, its config and its class names."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta = self.folder / "metrics.json"
        if not (self.folder / "model.keras").exists() or not meta.exists():
            raise TrainError(f"{self.folder} is not a run folder (no model.keras or metrics.json)")
        info = json.loads(meta.read_text(encoding="utf-8"))
        self.config = TrainConfig.from_dict(info["config"])
        self.class_names: list[str] = info["class_names"]
        self._model = None

    @property
    def model(self):
        if self._model is None:
            keras = backend.keras()
            from . import models  # noqa: F401  (registers the model's ImageInput layer)

            self._model = keras.models.load_model(self.folder / "model.keras", compile=False)
        return self._model

    def probabilities(self, paths) -> np.ndarray:
        from .pipeline import ImageBatches, predict
        from .runtime import pad_to

        c = self.config
        return predict(
            self.model,
            ImageBatches(
                paths,
                None,
                n_classes=len(self.class_names),
                size=c.size,
                batch=c.batch,
                resize=c.resize,
                pad_to=pad_to(),
            ),
        )


def evaluate(
    run: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Score a run on a labelled folder (originals only, when it has a manifest).

    Writes metrics.json and confusion_matrix.png to `out` (default RUN/eval-<folder name>).
    """
    r = Run(run)
    target = Path(out or r.folder / f"eval-{Path(data).resolve().name}").resolve()
    inputs = {"data folder": Path(data)}
    if not (target.parent == r.folder.resolve() and target.name.startswith("eval-")):
        inputs["run folder"] = r.folder  # RUN/eval-<name> is where a run keeps its evaluations
    with claimed(target, EVALUATION, inputs=inputs, overwrite=overwrite) as (target, _):
        return _evaluate(r, data, target, progress)


def _evaluate(r: Run, data, target: Path, progress: bool) -> dict:
    folder = list_folder(data, progress=progress)
    table = originals_only(folder.table)
    y_true = label_indices(table, r.class_names)
    y_pred = r.probabilities(table.path.tolist()).argmax(axis=1)
    metrics = scores(y_true, y_pred, r.class_names)
    metrics["data"] = {
        "folder": str(Path(data).resolve()),
        "files": len(table),
        "skipped": [s.as_dict() for s in folder.skipped],
    }
    with staged(target) as tmp:
        write_json(tmp / "metrics.json", stamp(EVALUATION, metrics))
        plot_confusion(
            metrics["confusion_matrix"],
            r.class_names,
            tmp / "confusion_matrix.png",
            title=f"{Path(data).name}: accuracy {metrics['accuracy']:.3f}, "
            f"macro F1 {metrics['macro_f1']:.3f}",
        )
    metrics["out"] = str(target)
    return metrics


def predict(run: str | Path, path: str | Path, top_k: int = 1) -> pd.DataFrame:
    """Predicted class and probability (top k) for an image file or every image under a folder.

    Files that cannot be read are left out and listed in the result's attrs["skipped"].
    """
    r = Run(run)
    if top_k < 1:
        raise TrainError(f"--top-k must be at least 1 (got {top_k})")
    path = Path(path)
    if path.is_file():
        root, candidates = path.parent, [path]
    elif path.is_dir():
        root, candidates = path, _images_under(path)
    else:
        raise TrainError(f"no such file or folder: {path}")
    files, skipped = _readable(candidates, root)
    if not files:
        raise TrainError(f"no readable images in {path}")
    probs = r.probabilities([str(f) for f in files])
    k = min(top_k, len(r.class_names))
    order = np.argsort(-probs, axis=1)[:, :k]
    rows = []
    for f, p, top in zip(files, probs, order, strict=False):
        row = {
            "file": f.relative_to(root).as_posix(),
            "predicted": r.class_names[top[0]],
            "probability": float(p[top[0]]),
        }
        for rank, idx in enumerate(top[1:], start=2):
            row[f"class_{rank}"], row[f"probability_{rank}"] = r.class_names[idx], float(p[idx])
        rows.append(row)
    result = pd.DataFrame(rows)
    result.attrs["skipped"] = skipped
    return result


def _images_under(folder: Path) -> list[Path]:
    """Image files under folder at any depth, hidden files and folders left out."""
    from balancer.source import IMAGE_EXTENSIONS, is_hidden

    return [
        f
        for f in sorted(folder.rglob("*"))
        if f.is_file()
        and f.suffix.lower() in IMAGE_EXTENSIONS
        and not any(is_hidden(part) for part in f.relative_to(folder).parts)
    ]


def _readable(files: list[Path], root: Path) -> tuple[list[Path], list[dict]]:
    """Split files into those that read whole, and the rest with a reason."""
    from balancer.imageio import BadImage, load
    from balancer.source import Skipped

    good, bad = [], []
    for f in files:
        try:
            load(f, check_only=True)
            good.append(f)
        except BadImage as exc:
            bad.append(Skipped(f.relative_to(root).as_posix(), str(exc)).as_dict())
    return good, bad
