"""The callbacks that shape a run and that a resumed run restores: early stopping, the
plateau schedule, the best epoch's checkpoint, the state saver, and history.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import backend
from .config import MONITORS, TrainConfig


def progress_callbacks(
    config: TrainConfig, folder: Path, settings: dict, phase: dict
) -> tuple[dict, Any, Any]:
    """The callbacks with a state a resumed run needs ({name: callback}: early stopping, the
    plateau schedule), the best epoch's checkpoint, and the saver that records them."""
    keras = backend.keras()
    from . import resume

    mode = MONITORS[config.monitor]
    early_stopping = resume.resumable(keras.callbacks.EarlyStopping, ("wait", "best", "best_epoch"))
    stateful = {
        "early_stopping": early_stopping(
            monitor=config.monitor, mode=mode, patience=config.patience
        )
    }
    if config.lr_schedule == "plateau":  # a tenth of the rate after a third of the patience
        plateau = resume.resumable(
            keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter")
        )
        stateful["plateau"] = plateau(
            monitor=config.monitor,
            mode=mode,
            factor=0.1,
            patience=max(1, config.patience // 3),
            min_lr=config.lr / 1000,
        )
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
