"""How a run is carried out, not what it learns: progress on a terminal and in logs, the
cores used, your callbacks. Nothing here changes a score."""

from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balancer.common.checks import flag
from balancer.common.errors import TrainError, TrainValueError
from balancer.common.limits import WORKERS

from . import backend
from .config import TrainConfig


def keras_verbosity(*, progress: bool) -> int:
    """Keras' own bar on a terminal; elsewhere (logs) `EpochReport` writes a line per epoch."""
    return 1 if progress and sys.stderr.isatty() else 0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def epoch_report(total: int, *, label: str = "", bar: Any = None) -> Any:
    """A Keras callback saying, after each epoch, `{label}epoch n/N (its own time), val F1 x,
    at most ~t left at the last epoch's pace`: on a tqdm `bar`'s postfix when one is given,
    else as a line on stderr (logs). The first epoch also traces the step, so the estimate
    is the latest epoch's time times the epochs left; "at most": early stopping may end the
    run sooner."""
    keras = backend.keras()

    class EpochReport(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            took = time.monotonic() - self.started
            f1 = (logs or {}).get("val_f1")
            score = "" if f1 is None else f", val F1 {float(f1):.3f}"
            left = total - (epoch + 1)
            eta = (
                f", at most ~{_duration(took * left)} left at this epoch's pace" if left > 0 else ""
            )
            text = f"epoch {epoch + 1}/{total} ({_duration(took)}){score}{eta}"
            if bar is not None:
                bar.set_postfix_str(text)
            else:
                print(label + text, file=sys.stderr, flush=True)

    return EpochReport()


@dataclass(frozen=True)
class RunControl:
    """How a run is carried out, not what it learns (none of it changes a score): progress
    output, the cores used, your Keras callbacks, TensorBoard logs, one compiled model
    shared by a cv's folds or a study's runs, and the label a line per epoch starts with in
    logs ("fold 2/5: ")."""

    progress: bool = True
    workers: int | None = None  # reading threads, and a study's copy-making processes (None:
    # one per core this process may use)
    callbacks: tuple = ()
    tensorboard: bool = False  # TensorBoard logs in RUN/logs
    reuse_model: bool = True  # a cv's folds and a study's runs trace the training step once
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("progress", "tensorboard", "reuse_model"):
            object.__setattr__(self, name, flag(getattr(self, name), name))
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
        if self.workers is not None:
            WORKERS.check(self.workers, "workers", TrainValueError)
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise TrainError(
                "tensorboard needs TensorBoard: pip install 'balanced-aug[tensorboard]'",
                parameters=("tensorboard",),
            )

    def callbacks_for(self, folder: Path, config: TrainConfig) -> tuple:
        """Yours, then TensorBoard's (into folder/logs), then the epoch lines for logs."""
        keras = backend.keras()
        logs = (keras.callbacks.TensorBoard(str(folder / "logs")),) if self.tensorboard else ()
        lines: tuple = ()
        if self.progress and not keras_verbosity(progress=self.progress):
            lines = (epoch_report(config.total_epochs, label=self.label),)
        return (*self.callbacks, *logs, *lines)
