"""Scores (scikit-learn), and evaluate/predict with a finished run folder.

Lazy imports: scikit-learn, Keras and the input pipeline load only when a run is scored."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from balancer.common.checks import member, optional
from balancer.common.errors import TrainError, TrainValueError
from balancer.common.ownership import (
    TOOL,
    Existing,
    claim,
    list_files,
    read_json_record,
    same_place,
    stamp,
    write_json,
)
from balancer.common.shapes import shape_problems
from balancer.common.storage import Place, Remote, location, relative

from . import backend
from .config import TrainConfig
from .control import RunControl
from .data import label_indices, list_folder, originals_only
from .outputs import EVALUATION, draw_plots, plot_confusion
from .records import RunMetrics, Scores


def scores(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> Scores:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support, confusion matrix.

    Macro F1 is over every class of the data (the same class set in every fold and run): a
    class with no image here counts as 0, as Keras' F1Score counts it, so the number early
    stopping watches is the number reported. Such a class is named in `absent_classes`, and
    its own precision, recall and F1 are missing (None), not 0: nothing measured them (its
    `predicted` count says how many images were taken for it). A class never predicted has
    no precision either (0 of 0).
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    labels = list(range(len(class_names)))
    present = set(np.asarray(y_true).tolist())
    predicted = np.bincount(np.asarray(y_pred, dtype=np.int64), minlength=len(labels))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)

    def measured(value: np.ndarray, i: int, *, needs_prediction: bool = False) -> float | None:
        known = i in present and (predicted[i] > 0 or not needs_prediction)
        return float(value) if known else None

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "absent_classes": [name for i, name in enumerate(class_names) if i not in present],
        "per_class": {
            name: {
                "precision": measured(p[i], i, needs_prediction=True),
                "recall": measured(r[i], i),
                "f1": measured(f[i], i),
                "support": int(s[i]),
                "predicted": int(predicted[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def absent_note(metrics: dict) -> str:
    """' (no image of c, d: each counted as 0)' when classes had nothing to score, else ''."""
    absent = metrics.get("absent_classes") or []
    return f" (no image of {', '.join(absent)}: each counted as 0)" if absent else ""


def summary(metrics: dict, worst: int = 3) -> str:
    """A short table: accuracy, macro F1 and the classes with the lowest F1."""
    per = sorted(
        ((k, v) for k, v in metrics["per_class"].items() if v["f1"] is not None),
        key=lambda kv: kv[1]["f1"],
    )[:worst]
    lines = [
        f"accuracy   {metrics['accuracy']:.4f}",
        f"macro F1   {metrics['macro_f1']:.4f} over {len(metrics['per_class'])} classes"
        + absent_note(metrics),
        "worst classes (F1, recall, support):",
    ]
    lines += [f"  {name:<16} {m['f1']:.3f}  {m['recall']:.3f}  {m['support']}" for name, m in per]
    return "\n".join(lines)


# What the readers of a record use: missing, it is damaged; present, each field is checked
# against the writer's TypedDict (trainer.records).
NEEDED = ("accuracy", "macro_f1", "weighted_f1", "class_names")
NEEDED_BY_KIND = {"run": (*NEEDED, "config", "epochs_run", "per_class", "data")}


def read_metrics(path: Place, kind: str = "run") -> RunMetrics:
    """A metrics.json the trainer wrote, checked against `RunMetrics` for what its readers use;
    TrainError (one line) for one that is not JSON, is another tool's or kind's, or has wrong
    types."""
    info = read_json_record(path, TrainError)
    if info.get("tool") != TOOL or info.get("kind") != kind:
        raise TrainError(f"{path} is not the record of a train {kind} folder")
    problems = shape_problems(info, RunMetrics, required=NEEDED_BY_KIND.get(kind, NEEDED))
    if "class_names" not in problems and len(info["class_names"]) < 2:
        problems.append("class_names")
    parts = info.get("data", {}).get
    if (
        kind == "run"
        and "data" not in problems
        and not all(isinstance(parts(k), dict) for k in ("train", "validation"))
    ):
        problems.append("data")
    if problems:
        raise TrainError(f"{path} is damaged: {', '.join(problems)} missing or of the wrong type")
    return cast("RunMetrics", info)  # checked above


class Run:
    """A finished run folder: the model, its config and its class names. `workers`: the
    threads that read images for it (None: one per core this process may use)."""

    def __init__(self, folder: str | Place, workers: int | None = None):
        self.folder = location(folder)
        self.workers = workers
        meta = self.folder / "metrics.json"
        if not (self.folder / "model.keras").is_file() or not meta.is_file():
            raise TrainError(f"{self.folder} is not a run folder (no model.keras or metrics.json)")
        info = read_metrics(meta)
        try:
            self.config = TrainConfig.from_dict(info["config"])
        except (TypeError, ValueError) as exc:
            raise TrainError(f"{meta} is damaged: its config says {exc}") from None
        self.class_names: list[str] = info["class_names"]
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The run's Keras model, loaded once (one line when the file is damaged)."""
        if self._model is None:
            keras = backend.keras()
            from . import models  # noqa: F401  (registers the model's ImageInput layer)

            path = self.folder / "model.keras"
            try:
                self._model = _load_model(keras, path)
            except Exception as exc:  # a truncated, empty or foreign file: Keras' many errors
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise TrainError(f"cannot load {path} ({type(exc).__name__}: {first})") from None
            outputs = self._model.output_shape[-1] if self._model.outputs else None
            if outputs != len(self.class_names):
                raise TrainError(
                    f"{path} predicts {outputs} classes, its metrics.json names "
                    f"{len(self.class_names)}: the run folder is inconsistent"
                )
        return self._model

    def probabilities(self, paths: Sequence[str]) -> np.ndarray:
        """Each class's probability for each image file (rows in the order of `paths`)."""
        from .pipeline import Batching, ImageBatches, predict
        from .runtime import pad_to

        c = self.config
        return predict(
            self.model,
            ImageBatches(
                paths,
                None,
                Batching(
                    n_classes=len(self.class_names),
                    size=c.size,
                    batch=c.global_batch,
                    resize=c.resize,
                    pad_to=pad_to(),
                    threads=self.workers,
                ),
            ),
        )


def _load_model(keras: Any, path: Place) -> Any:
    """keras.models.load_model of a file, or of an object fetched to a local one first (Keras
    reads a .keras archive from a local file)."""
    if not isinstance(path, Remote):
        return keras.models.load_model(path, compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp, path.name)
        local.write_bytes(path.read_bytes())
        return keras.models.load_model(local, compile=False)


def evaluate(
    run: str | Place,
    data: str | Place,
    out: str | Place | None = None,
    *,
    existing: Existing = Existing.ERROR,
    control: RunControl | None = None,
) -> dict:
    """Score a run on a labelled folder (originals only, when it has a manifest).

    Writes metrics.json and confusion_matrix.png to `out` (default RUN/eval-<folder name>),
    a folder that appears whole; an earlier evaluation there is replaced only with
    existing=Existing.OVERWRITE.
    """
    control = optional(control, RunControl, "control", "RunControl(workers=4)")
    control = control or RunControl(progress=False)
    existing = member(existing, Existing, "existing", TrainValueError)
    r, data = Run(run, workers=control.workers), location(data)
    target = location(out or r.folder / f"eval-{data.resolve().name}").resolve()
    inputs: dict[str, Place | None] = {"data folder": data}
    if not (same_place(target.parent, r.folder) and target.name.startswith("eval-")):
        inputs["run folder"] = r.folder  # RUN/eval-<name> is where a run keeps its evaluations
    folder = list_folder(data, progress=control.progress)
    table = originals_only(folder.table)
    y_true = label_indices(table, r.class_names)
    with claim(target, EVALUATION, inputs=inputs, existing=existing) as c:
        y_pred = r.probabilities(table.path.tolist()).argmax(axis=1)
        metrics: dict[str, Any] = dict(scores(y_true, y_pred, r.class_names))
        metrics["data"] = {
            "folder": str(data.resolve()),
            "files": len(table),
            "skipped": [s.as_dict() for s in folder.skipped],
        }
        with c.staged() as tmp:
            title = (
                f"{data.name}: accuracy {metrics['accuracy']:.3f}, "
                f"macro F1 {metrics['macro_f1']:.3f}{absent_note(metrics)}"
            )
            draw_plots(
                tmp,
                confusion_matrix=lambda path: plot_confusion(
                    metrics["confusion_matrix"], r.class_names, path, title=title
                ),
            )
            metrics["files"] = list_files(tmp, leave_out={EVALUATION.record})
            write_json(tmp / EVALUATION.record, stamp(EVALUATION, metrics))  # lists the rest
    metrics["out"] = str(c.path)
    return metrics


def predict(
    run: str | Place, path: str | Place, top_k: int = 1, *, control: RunControl | None = None
) -> pd.DataFrame:
    """Predicted class and probability (top k) for an image file or every image under a folder.

    Files that cannot be read are left out and listed in the result's attrs["skipped"].
    `control.workers`: the reading threads.
    """
    control = optional(control, RunControl, "control", "RunControl(workers=4)")
    r = Run(run, workers=(control or RunControl()).workers)
    if top_k < 1:
        raise TrainValueError(f"top_k must be at least 1 (got {top_k})", parameters=("top_k",))
    path = location(path)
    walked: list[dict] = []
    if not path.exists() and not path.is_symlink():
        raise TrainError(f"no such file or folder: {path}")
    if path.is_dir() and not path.is_symlink():
        root, candidates, walked = path, *_images_under(path)
    elif path.is_file():  # a file named directly (a link to one is followed: it was named)
        root, candidates = path.parent, [path]
    else:
        why = "a symbolic link to nothing" if path.is_symlink() else "a FIFO, socket or device"
        raise TrainError(f"{path} is not an image file ({why})")
    files, skipped = _readable(candidates, root)
    skipped = walked + skipped
    if not files:
        first = f" ({skipped[0]['path']}: {skipped[0]['reason']})" if skipped else ""
        raise TrainError(f"no readable images in {path}{first}")
    probs = r.probabilities([str(f.resolve()) for f in files])
    k = min(top_k, len(r.class_names))
    order = np.argsort(-probs, axis=1)[:, :k]
    rows = []
    for f, p, top in zip(files, probs, order, strict=False):
        row = {
            "file": relative(f, root),
            "predicted": r.class_names[top[0]],
            "probability": float(p[top[0]]),
        }
        for rank, idx in enumerate(top[1:], start=2):
            row[f"class_{rank}"], row[f"probability_{rank}"] = r.class_names[idx], float(p[idx])
        rows.append(row)
    result = pd.DataFrame(rows)
    result.attrs["skipped"] = skipped
    return result


def _images_under(folder: Place) -> tuple[list[Place], list[dict]]:
    """Image files under folder at any depth, and the entries left out with a reason, by the
    balancer's one folder rule (no symbolic links followed, hidden files and junk ignored)."""
    from balancer.source import walk_images

    images: list[Place] = []
    skipped = []
    for kind, rel, detail in walk_images(folder, folder):
        if kind == "image":
            images.append(folder / rel)
        elif kind == "skipped":
            skipped.append({"path": rel, "reason": detail})
    return images, skipped


def _readable(files: list[Place], root: Place) -> tuple[list[Place], list[dict]]:
    """Split files into those that read whole, and the rest with a reason."""
    from balancer.common.imageio import BadImage, load
    from balancer.source import Skipped

    good, bad = [], []
    for f in files:
        try:
            load(f.resolve(), check_only=True)  # a link named directly: its file
            good.append(f)
        except BadImage as exc:
            bad.append(Skipped(relative(f, root), str(exc)).as_dict())
    return good, bad
