"""The callbacks that shape a run and that a resumed run restores: early stopping, the
plateau schedule, the best epoch's checkpoint, the state saver, and history.csv; and which
epoch a run is scored at, by what rule."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from balancer.common import interrupts
from balancer.common.errors import ToolWarning

from . import backend, resume
from .config import MONITORS, TrainConfig


def epoch_end_held() -> tuple[Any, Any]:
    """Two Keras callbacks, the first and the last of a fit: Ctrl-C is held over each epoch's
    end (the checkpoint, the history, the resume state: saving weights goes through NumPy
    code that can turn an interrupt into a TypeError) and raised once the state is saved."""
    keras = backend.keras()

    class Hold(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_train_begin(self, logs: dict | None = None) -> None:
            interrupts.release()  # nothing is held from an earlier fit

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            interrupts.hold()

    class Release(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            interrupts.release()

        def on_train_end(self, logs: dict | None = None) -> None:
            interrupts.release()

    return Hold(), Release()


class NoCheckpoint:
    """What a run that keeps its last epoch has for a best checkpoint: nothing to restore."""

    best = None


def progress_callbacks(
    config: TrainConfig, folder: Path, settings: dict, phase: dict
) -> tuple[dict, Any, Any]:
    """The callbacks with a state a resumed run needs ({name: callback}: early stopping, the
    plateau schedule), the best epoch's checkpoint (NoCheckpoint when the run keeps its last
    epoch: nothing is chosen), and the saver that records them."""
    keras = backend.keras()
    mode = MONITORS[config.monitor]
    stateful: dict[str, Any] = {}
    if config.keep == "best":
        early_stopping = resume.resumable(
            keras.callbacks.EarlyStopping, ("wait", "best", "best_epoch")
        )
        stateful["early_stopping"] = early_stopping(
            monitor=config.monitor, mode=mode, patience=config.patience
        )
    if config.lr_schedule == "plateau":  # a tenth of the rate after a third of the patience
        plateau = resume.resumable(
            keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter")
        )
        stateful["plateau"] = plateau(
            monitor=config.monitor,
            mode=mode,
            factor=0.1,
            patience=max(1, config.patience // 3),
            min_lr=config.rate / 1000,
        )
    checkpoint: Any = NoCheckpoint()
    if config.keep == "best":
        checkpoint = keras.callbacks.ModelCheckpoint(
            str(folder / "best.weights.h5"),
            monitor=config.monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
        )
    saver = resume.callback(folder, settings, stateful=stateful, checkpoint=checkpoint, phase=phase)
    return stateful, checkpoint, saver


def history_log(path: Path) -> Any:
    """Keras' CSVLogger, appending, with epochs counted from 1 as Keras' console counts them
    (and metrics.json's best_epoch, the curves and the epoch lines)."""
    keras = backend.keras()

    class History(keras.callbacks.CSVLogger):  # type: ignore[name-defined]
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch + 1, logs)

    return History(str(path), append=True)


EPOCH_RULES = {
    "last": "the last epoch: every epoch trained, nothing was chosen",
    "selection": "the best {monitor} on the inner selection part (early stopping, patience "
    "{patience}); the scored part chose nothing",
    "validation": "the best {monitor} on the validation part, which is also the part "
    "scored: this score is the selected one, optimistic; `train evaluate` on an untouched "
    "test part is the honest figure",
}


def epoch_rule(config: TrainConfig, *, scored_apart: bool) -> str:
    """What chose the epoch a run is scored at, and on which part (EPOCH_RULES)."""
    part = "inner selection part" if scored_apart else "validation part"
    if config.keep == "last":
        plateau = config.lr_schedule == "plateau"
        return EPOCH_RULES["last"] + (
            f" but the learning rate, which the plateau schedule chose on the {part}" * plateau
        )
    rule = EPOCH_RULES["selection" if scored_apart else "validation"]
    return rule.format(monitor=config.monitor, patience=config.patience)


def kept_epoch(history: pd.DataFrame, config: TrainConfig, *, scored_apart: bool) -> dict:
    """Epochs run, the epoch whose weights were scored (counted from 1; and the best one
    when it was chosen), and the rule that chose it."""
    found = {
        "epochs_run": len(history),
        "epoch_rule": epoch_rule(config, scored_apart=scored_apart),
    }
    if config.keep == "last":
        return {**found, "scored_epoch": int(history.epoch.iloc[-1])}
    column = history[config.monitor]
    best = int(
        history.epoch[column.idxmax() if MONITORS[config.monitor] == "max" else column.idxmin()]
    )
    return {**found, "best_epoch": best, "scored_epoch": best}


COLLAPSED_EPOCHS = 3  # epochs running with one predicted class before a run says it collapsed


def collapse_watch(config: TrainConfig, *, label: str = "", epochs: int = COLLAPSED_EPOCHS) -> Any:
    """A Keras callback that warns once when the part that chooses (else training) is
    predicted as one class for `epochs` epochs running, saying what it likely is and what to
    try: training predicting one class too is a collapsed model; training predicting several
    while validation gets one is, from scratch, BatchNorm's moving statistics lagging."""
    keras = backend.keras()

    class CollapseWatch(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.running, self.said = 0, getattr(self, "said", False)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            part = "validation" if "val_classes_predicted" in logs else "training"
            seen = logs.get("val_classes_predicted", logs.get("classes_predicted"))
            self.running = self.running + 1 if seen is not None and seen <= 1 else 0
            if self.running < epochs or self.said:
                return
            self.said = True
            trained = int(logs.get("classes_predicted") or 0)
            span = f"epochs {epoch + 2 - self.running}-{epoch + 1}"
            settings = f"lr {config.rate:g}, batch {config.global_batch}"
            if part == "validation" and trained > 1:
                why = (
                    f" while training predicts {trained}: from scratch, BatchNorm's moving "
                    "statistics can lag for a few hundred steps, so give --patience enough "
                    "epochs; if it lasts, try"
                )
            else:
                also = " and so is training" if part == "validation" else ""
                why = f"{also}: the model has collapsed onto one class. Try"
            warnings.warn(
                f"{label}{part} is predicted as a single class for {self.running} epochs "
                f"running ({span}; {settings}){why} a smaller --batch, another --lr, more "
                "--epochs, or --class-weight balanced",
                ToolWarning,
                stacklevel=2,
            )

    return CollapseWatch()
