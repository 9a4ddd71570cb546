"""The trainer's outputs: the kinds of folder it writes (proven by their records), and plots.

Every folder goes through the balancer's one door (`balancer.common.ownership.claim`): a run folder
is staged and renamed into place whole; cv and study folders are written in place, a
running record first and the complete one last, each fold or arm a staged run folder.

Lazy imports: NumPy and matplotlib load only when a picture is drawn.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from balancer.common.atomic import TEMP_SUFFIX
from balancer.common.errors import ToolWarning
from balancer.common.ownership import OutputKind, inline_listing, is_staging, prove
from balancer.common.ownership.proof import prove_files
from balancer.common.plotting import pyplot, save_figure
from balancer.common.storage import Place
from balancer.journal import csv_listing
from balancer.manifest import MANIFEST

from .records import FolderRecord, RunMetrics


def _proven_part(entry: Place, kind: OutputKind) -> bool:
    """A part of an output that is an output of its own (a run's evaluation, a cv's fold):
    proven by its own record, or one line naming what in it is not ours."""
    prove(entry, kind)
    return True


EVALUATION = OutputKind(
    "train evaluation folder",
    "metrics.json",
    "evaluation",
    listing=lambda out, record: inline_listing(record),
    resumable=False,
    shape=RunMetrics,
    not_classes="an evaluation folder holds reports, not classes",
)


def _leftover_state(entry: Place) -> bool:
    """`resume/` left in a run folder by a kill right after the folder was put in place: its
    state.json names every other file in it (the run is whole; the state goes next time)."""
    state_file = entry / "state.json"
    if entry.is_symlink() or not entry.is_dir() or not state_file.is_file():
        return False
    try:
        state = json.loads(state_file.read_bytes())
        named = {"state.json", state["weights"], state["seeds"], state["best_weights"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(
        f.is_file() and not f.is_symlink() and (f.name in named or f.name.endswith(TEMP_SUFFIX))
        for f in entry.iterdir()
    )


RUN = OutputKind(
    "train run folder",
    "metrics.json",
    "run",
    listing=lambda out, record: inline_listing(record),
    holds=lambda record, e: (
        (e.name.startswith("eval-") and _proven_part(e, EVALUATION))
        or (e.name == "resume" and _leftover_state(e))
    ),
    staging=(".*.partial",),  # an evaluation being written
    progress="resume/state.json",  # an interrupted fit that --resume continues
    shape=RunMetrics,
    not_classes="a run folder holds a model and its reports, not classes",
)
CV = OutputKind(
    "train cv folder",
    "cv.json",
    "cv",
    listing=lambda out, record: inline_listing(record),
    holds=lambda record, e: (
        (re.fullmatch(r"fold-\d+", e.name) is not None and _proven_part(e, RUN))
        or (e.name == "data" and _copies(e, 1))  # --nmin: each fold's copies
    ),
    staging=(".*.partial",),
    shape=FolderRecord,
    not_classes="a cv folder holds one run folder per fold, not classes",
)


def _study_runs(runs: Place) -> bool:
    """runs/<model>-<loss>/<arm>/fold-<k>: every leaf a proven run folder (or our staging)."""

    def level(folder: Place, depth: int) -> bool:
        if folder.is_symlink() or not folder.is_dir():
            return False
        for entry in folder.iterdir():
            if is_staging(entry):
                continue
            if depth == 2:
                if not (re.fullmatch(r"fold-\d+", entry.name) and _proven_part(entry, RUN)):
                    return False
            elif not level(entry, depth + 1):
                return False
        return True

    return level(runs, 0)


def _copies(data: Place, depth: int) -> bool:
    """The copies made for each fold: folders `depth` deep (data/fold-<k>/[<arm>/]), each
    holding the journal of its copies (manifest.csv) and the class folders it lists."""

    def level(folder: Place, below: int) -> bool:
        if folder.is_symlink() or not folder.is_dir():
            return False
        if below == 0:
            listing = csv_listing(MANIFEST, "")(folder, {"status": "running"})
            prove_files(folder, listing, finished=False, own={MANIFEST}, what="fold's copies")
            return True
        return all(level(entry, below - 1) for entry in folder.iterdir())

    return level(data, depth)


STUDY = OutputKind(
    "train study folder",
    "study.json",
    "study",
    listing=lambda out, record: inline_listing(record),
    holds=lambda record, e: (
        (e.name == "runs" and _study_runs(e)) or (e.name == "data" and _copies(e, 2))
    ),
    staging=("runs/*/*/.*.partial",),
    shape=FolderRecord,
    not_classes="a study folder holds runs and results, not classes",
)


def draw_plots(folder: Path, **plots: Callable[[Path], None]) -> list[str]:
    """Draw each picture (name -> draw(path)) into folder/<name>.png; a picture that fails
    is a warning, never the loss of what was already written. Returns the warnings."""
    failed = []
    for name, draw in plots.items():
        try:
            draw(folder / f"{name}.png")
        except Exception as exc:  # MemoryError included: the run matters more than its picture
            failed.append(
                f"could not draw {name}.png ({type(exc).__name__}: {exc}); "
                "the model and metrics.json are written"
            )
            warnings.warn(failed[-1], ToolWarning, stacklevel=2)
    return failed


MAX_CELL_COUNTS = 30  # classes up to which every cell shows its count
MAX_TICK_NAMES = 60  # classes up to which the axes name every class
MAX_INCHES = 16.0  # a figure's side: 1,000 classes draw as fast as 100


def plot_confusion(
    matrix: Sequence[Sequence[int]], class_names: list[str], path: Path, title: str = ""
) -> None:
    """Row-normalised confusion matrix (recall on the diagonal). Up to MAX_CELL_COUNTS classes
    every cell shows its count and up to MAX_TICK_NAMES the axes name every class; beyond,
    the picture keeps its size and shows the colours alone (metrics.json has the numbers)."""
    import numpy as np

    plt = pyplot()
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = (min(MAX_INCHES, max(4, 0.6 * n + 2)), min(MAX_INCHES, max(3.5, 0.6 * n + 1.5)))
    fig, ax = plt.subplots(figsize=size)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    if n <= MAX_TICK_NAMES:
        ax.set(xticks=range(n), yticks=range(n), xticklabels=class_names, yticklabels=class_names)
        plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
        ax.set(xlabel="predicted", ylabel="true")
    else:
        ax.set(xlabel=f"predicted (class index, {n} classes)", ylabel="true (class index)")
    fig.suptitle(title or "confusion matrix", fontsize=10)  # over the whole figure
    if n <= MAX_CELL_COUNTS:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    save_figure(fig, path)


def plot_curves(history: pd.DataFrame, path: Path) -> None:
    """Loss, accuracy and macro F1 per epoch, training against validation (a run that held
    nothing out has Keras' "NA" there, and no validation line)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy", "f1"), strict=False):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history and history[prefix + key].notna().any():
                ax.plot(
                    history["epoch"],
                    history[prefix + key],
                    style,
                    label=("validation " if prefix else "training ") + key,
                )
        ax.set(xlabel="epoch", title="macro F1" if key == "f1" else key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    save_figure(fig, path)
