"""The shapes of what the trainer writes and returns, as TypedDicts: a reader of metrics.json,
cv.json or results.csv (and mypy) knows each field and its type from here."""

from __future__ import annotations

from typing import Any, TypedDict

from balancer.common.shapes import OutputRecord


class _Measured(TypedDict):
    precision: float | None  # None: no image of the class there, or none predicted as it
    recall: float | None  # None: no image of the class was there to recall
    f1: float | None
    support: int  # images of the class


class ClassScores(_Measured, total=False):
    """One class's scores on a validation or test set."""

    predicted: int  # images predicted as the class (run folders of 0.x lack it)


class Scores(TypedDict):
    """What `evaluation.scores` measures (the core of every metrics.json)."""

    accuracy: float
    macro_f1: float  # over every class of the data; an absent class counts 0
    weighted_f1: float
    absent_classes: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    class_names: list[str]


class RunMetrics(Scores, total=False):
    """A run folder's metrics.json: the scores with the best weights, and how they came."""

    epochs_run: int
    best_epoch: int  # counted from 1; when the best epoch was kept
    scored_epoch: int  # the epoch whose weights were scored
    epoch_rule: str  # what chose that epoch, and on which part
    config: dict[str, Any]  # TrainConfig.to_dict()
    data: dict[str, Any]  # files per split, class and origin
    cache: dict[str, Any]
    backend: str
    gpus: int
    precision: str
    strategy: str
    replicas: int
    skipped: list[dict[str, str]]
    warnings: list[str]
    fold: int  # a cv fold's, counted from 1
    folds: int
    study: str
    arm: str
    files: dict[str, dict[str, Any]]  # every other file of the folder: {path: {size, sha256}}
    out: str


class FolderRecord(OutputRecord, total=False):
    """cv.json and study.json: who wrote them, the settings (the resume key), whether the
    folder is finished, and its own files with their size and sha256."""

    files: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]  # cv.json: a FoldRow per fold
    accuracy: dict[str, float]  # cv.json: mean and std
    macro_f1: dict[str, float]


class ResumeState(TypedDict):
    """resume/state.json: what a killed `train fit` continues from (trainer.resume)."""

    settings: dict[str, Any]
    epochs_done: int
    stopped: bool
    phase: int
    phase1_epochs: int | None
    weights: str
    seeds: str
    best_weights: str | None
    checkpoint_best: float | None
    callbacks: dict[str, Any]


class FoldRow(TypedDict):
    """One row of cv.csv and of cv.json's `folds`."""

    fold: int
    accuracy: float
    macro_f1: float
    weighted_f1: float
    train_files: int
    selection_files: int  # the inner part that chose the epoch (0: nothing was chosen)
    validation_files: int  # the fold scored
    epochs_run: int
    scored_epoch: int  # the epoch whose weights were scored, counted from 1
    absent_classes: str  # space-separated


class StudyRow(TypedDict):
    """The fixed columns of one row of a study's results.csv (one run); `f1_<class>` columns
    follow, one per class (None where a fold had no image of it)."""

    arm: str
    fold: int
    model: str
    loss: str
    accuracy: float
    macro_f1: float
    weighted_f1: float
    epochs_run: int
    scored_epoch: int
    steps: int  # optimizer steps taken (epochs run x batches an epoch)
    train_files: int
    selection_files: int
    validation_files: int  # the fold scored
    absent_classes: str
    config: str  # the run's TrainConfig as JSON
