"""Run folders that appear whole or not at all, and the files and plots written into them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from balancer.errors import (
    UserError,  # noqa: F401 (the base of every refusal)
)
from balancer.ownership import TOOL, OutputKind, owned_record
from balancer.plotting import pyplot

RUN_FILES = {
    "model.keras",
    "history.csv",
    "files.csv",
    "metrics.json",
    "confusion_matrix.png",
    "curves.png",
}
EVALUATION_FILES = {"metrics.json", "confusion_matrix.png"}


def _plain_file(entry: Path) -> bool:
    return entry.is_file() and not entry.is_symlink()


def _owned(entry: Path, kind: OutputKind) -> bool:
    try:
        owned_record(entry, kind)
        return True
    except UserError:
        return False


EVALUATION = OutputKind(
    "train evaluation folder",
    "metrics.json",
    "evaluation",
    lambda record, e: e.name in EVALUATION_FILES and _plain_file(e),
    resumable=False,
)
RUN = OutputKind(
    "train run folder",
    "metrics.json",
    "run",
    lambda record, e: (
        _plain_file(e)
        if e.name in RUN_FILES
        else e.name.startswith("eval-") and not e.is_symlink() and _owned(e, EVALUATION)
    ),
    resumable=False,
)
CV = OutputKind(
    "train cv folder",
    "cv.json",
    "cv",
    lambda record, e: (
        _plain_file(e)
        if e.name in ("cv.json", "cv.csv")
        else staging(e) or e.name.startswith("fold-") and not e.is_symlink() and _owned(e, RUN)
    ),
)


def staging(entry: Path) -> bool:
    """A run folder being written (`staged`), left behind by a killed command."""
    return (
        entry.name.startswith(".")
        and entry.name.endswith(".partial")
        and entry.is_dir()
        and not entry.is_symlink()
    )


STUDY = OutputKind(
    "train study folder",
    "study.json",
    "study",
    lambda record, e: (
        _plain_file(e)
        if e.name in ("study.json", "results.csv", "results.md", "results.png")
        else e.name in ("runs", "data") and e.is_dir() and not e.is_symlink()
    ),
)


def stamp(kind: OutputKind, record: dict) -> dict:
    """The record with the fields that prove, by content, which output it belongs to."""
    return {"tool": TOOL, "kind": kind.kind, **record}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `out`; rename it to `out` when the block succeeds.

    On any failure (including Ctrl-C) the temporary folder is removed and `out` is untouched.
    The folder gets the permissions the umask gives (mkdtemp's are 0700).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def plot_confusion(matrix, class_names: list[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (recall on the diagonal), counts in the cells."""
    import numpy as np

    plt = pyplot()
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * n + 2), max(3.5, 0.6 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="true",
    )
    fig.suptitle(
        title or "confusion matrix", fontsize=10
    )  # over the whole figure, clear of the bar
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history, path: Path) -> None:
    """Loss, accuracy and macro F1 per epoch, training against validation."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy", "f1"), strict=False):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(
                    history["epoch"] + 1,
                    history[prefix + key],
                    style,
                    label=("validation " if prefix else "training ") + key,
                )
        ax.set(xlabel="epoch", title="macro F1" if key == "f1" else key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
