"""A killed `train fit` continues from its last finished epoch (`--resume`), as if never killed.

Keras' BackupAndRestore is the anchor: at every epoch's end the model's and the optimizer's
variables are saved and a resumed fit starts at the next epoch. What it leaves out is saved
here too, so a resumed run ends with the same scores as an uninterrupted one: the dropout
layers' random streams (Keras' seed-generator states are not in `save_weights`), early
stopping's count and best value, the best epoch's weights and score, the training phase (a
frozen base, then fine-tuning) and the number of history rows. The (seed, epoch) rule of the
input pipeline gives the shuffle order back from the epoch alone.

Everything lives in `resume/` inside the staged run folder, written so that a kill at any
moment leaves the last complete state readable: each epoch's files under new names, then
`state.json` (atomic) naming them, then the older files removed. The folder goes only once
the whole run folder is in place (`ownership.staged`): a kill at any moment, the last epoch
and the writing of the run folder included, leaves either this state or the finished run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from balancer.common.atomic import write_atomic
from balancer.common.errors import OVERWRITE, RESUME, TrainError
from balancer.common.ownership import differences, write_json
from balancer.common.shapes import shape_problems

from . import backend
from .config import TrainConfig
from .records import ResumeState

FOLDER = "resume"
STATE = f"{FOLDER}/state.json"  # relative to the run folder being written


def seed_states(model: Any) -> list:
    """The model's random-stream variables (dropout's seed generators), in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def load(folder: Path, settings: dict) -> dict | None:
    """The saved state of an interrupted run in `folder`, None when there is none; one line
    when it belongs to other settings or data, or cannot be read."""
    path = folder / STATE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise TrainError(f"{path} cannot be read: {OVERWRITE} starts the run again") from None
    damaged = shape_problems(state, ResumeState)
    if damaged:
        raise TrainError(
            f"{path} is damaged ({', '.join(damaged)} missing or of the wrong type): "
            f"{OVERWRITE} starts the run again"
        )
    saved = state["settings"]
    if saved != settings:
        raise TrainError(
            f"{RESUME} with other settings or data than the interrupted run "
            f"({differences(saved, settings)}): {OVERWRITE} starts again"
        )
    return state


def starting_point(state: dict | None) -> tuple[dict, int, bool]:
    """(phase, epochs done, whether early stopping had ended the phase) to start from."""
    if state is None:
        return {"phase": 1, "phase1_epochs": None}, 0, False
    phase = {"phase": state["phase"], "phase1_epochs": state["phase1_epochs"]}
    return phase, state["epochs_done"], state["stopped"]


def where(state: dict, config: TrainConfig) -> str:
    """'resuming from epoch 3 of 10 (...)', or that training had ended (the run was killed
    while its folder was written)."""
    phase, done, stopped = starting_point(state)
    fine_tune = config.freeze_base and config.fine_tune_epochs > 0
    last = phase["phase"] == 2 or not fine_tune  # in the phase that ends the run
    end = (phase["phase1_epochs"] or 0) + config.fine_tune_epochs if phase["phase"] == 2 else 0
    if last and (stopped or done >= (end or config.epochs)):
        return f"resuming: training had ended after epoch {done}; writing the run folder"
    return f"resuming from epoch {done + 1} of {config.total_epochs} (1-{done} were saved)"


def restore(
    folder: Path, state: dict, model: Any, *, checkpoint: Any, saver: Any, stateful: dict
) -> None:
    """Put the model, its optimizer, its random streams, the best epoch's weights and score,
    the stateful callbacks' counts (early stopping, a plateau schedule) and the history back
    as they were when `state` was saved."""
    if state["checkpoint_best"] is not None:
        checkpoint.best = saver.best_seen = state["checkpoint_best"]
    saver.best_file = state["best_weights"]
    for name, cb in stateful.items():
        cb.restored = state["callbacks"].get(name)
    truncate_history(folder / "history.csv", state["epochs_done"])
    base = folder / FOLDER
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(base / state["weights"])
    for variable, value in zip(seed_states(model), np.load(base / state["seeds"]), strict=True):
        variable.assign(value)
    if state.get("best_weights"):
        shutil.copyfile(base / state["best_weights"], folder / "best.weights.h5")


def callback(folder: Path, settings: dict, *, stateful: dict, checkpoint: Any, phase: dict) -> Any:
    """The Keras callback that saves the state at every epoch's end; it must come last, after
    the callbacks whose state it records (`stateful`: {name: callback made by `resumable`}).
    `phase` is shared with the caller: {"phase": 1 or 2, "phase1_epochs": epochs the first
    phase ran, once it ended}."""
    keras = backend.keras()
    base = folder / FOLDER

    class SaveProgress(keras.callbacks.Callback):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.best_seen = checkpoint.best
            self.best_file: str | None = None
            self.done = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            base.mkdir(exist_ok=True)
            done = epoch + 1
            weights, seeds = f"epoch-{done:05d}.weights.h5", f"epoch-{done:05d}.seeds.npy"
            self.model.save_weights(base / weights)
            np.save(base / seeds, np.stack([v.numpy() for v in seed_states(self.model)]))
            if checkpoint.best != self.best_seen:  # this epoch is the best so far
                self.best_seen = checkpoint.best
                self.best_file = f"best-{done:05d}.weights.h5"
                shutil.copyfile(folder / "best.weights.h5", base / self.best_file)
            self.done = done
            state = {
                "settings": settings,
                "epochs_done": done,
                "stopped": bool(self.model.stop_training),  # early stopping ended the phase
                **phase,
                "weights": weights,
                "seeds": seeds,
                "best_weights": self.best_file,
                "checkpoint_best": _number(checkpoint.best),
                "callbacks": {name: cb.state() for name, cb in stateful.items()},
            }
            write_json(base / "state.json", state)
            keep = {weights, seeds, self.best_file, "state.json"}
            for old in base.iterdir():
                if old.name not in keep:
                    old.unlink(missing_ok=True)

    return SaveProgress()


def _number(value: Any) -> Any:
    """A monitored value as JSON keeps it (None stays None)."""
    return None if value is None else float(value)


def resumable(cls: type, attributes: tuple[str, ...]) -> Any:
    """A Keras callback class whose counts (`attributes`) a resumed run puts back: Keras
    resets them when a fit begins, so they are set again right after."""

    class Resumable(cls):
        restored: dict | None = None

        def on_train_begin(self, logs: dict | None = None) -> None:
            super().on_train_begin(logs)
            if self.restored:
                for name, value in self.restored.items():
                    setattr(self, name, value)
                self.restored = None

        def state(self) -> dict:
            return {name: _plain(getattr(self, name)) for name in attributes}

    Resumable.__name__ = f"Resumable{cls.__name__}"
    return Resumable


def _plain(value: Any) -> Any:
    """A callback's count or best value as JSON keeps it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(value)


def truncate_history(path: Path, rows: int) -> None:
    """Keep the header and the first `rows` epochs of history.csv (an epoch logged after the
    last saved state is run again)."""
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines(keepends=True)  # bytes: each line's end kept as is
    write_atomic(path, b"".join(lines[: 1 + rows]))


def key(config: TrainConfig, parts: dict[str, pd.DataFrame], class_names: list[str]) -> dict:
    """What a resumed run must share with the interrupted one: the tool's version and the
    backend, the config, the classes and every file of every part (its name and the digest
    of its bytes)."""

    def digest(table: pd.DataFrame) -> str:
        h = hashlib.sha256()
        for name, content in zip(table.file, table.digest, strict=True):
            h.update(f"{name}\0{content}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()[:16]

    return {
        **backend.maker(),
        "config": config.to_dict(),
        "classes": list(class_names),
        **{name: digest(table) for name, table in parts.items()},
    }
