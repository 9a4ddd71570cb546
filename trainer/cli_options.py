"""The options the `train` commands share, each declared once: every TrainConfig field as
an option (its range in its help), the reading threads, and what an interrupted command says."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import typer

from balancer.common.cli import (
    workers_option,
)
from balancer.common.limits import WORKERS

from .config import (
    CACHE_SHARE,
    LIMITS,
    MAX_BATCH,
    MIN_BATCH,
    MODELS,
    MONITORS,
    SCRATCH_LR,
    STEPS_PER_EPOCH,
    TUNING_LR,
    TrainConfig,
)

RESUMABLE = (
    "the run folder appears only when training ends; the same command with "
    "--resume continues from the last finished epoch"
)


GO_ON = "finished runs are kept: run the same command again to go on"
STOP_WITHIN = 10.0  # seconds after Ctrl-C: a train command has ended by then, whatever Keras does


WORKERS_OPTION = workers_option(
    f"Threads that read images ({WORKERS}; default: one per core; a study's copies use as many processes). Scores do not depend on it."
)


def existing_from(*, overwrite: bool, default: str = "error") -> Any:
    """The one value a library call takes for what to do with an existing output."""
    from balancer.common.ownership import Existing

    return Existing.OVERWRITE if overwrite else Existing(default)


def logs_to_stderr() -> contextlib.AbstractContextManager:
    """Keras' epoch lines and any other chatter go to stderr: stdout is for results (--json)."""
    return contextlib.redirect_stdout(sys.stderr)


_D = TrainConfig()


# The options every training command takes (fit, cv, the studies): one declaration each.
TRAIN_OPTIONS = {
    "model": (str, typer.Option(_D.model, help=f"One of {', '.join(MODELS)}.")),
    "image_size": (
        int | None,
        typer.Option(
            None,
            help=f"Input side in px ({LIMITS['image_size']}; default: the model's native size, 224 for B0).",
        ),
    ),
    "weights": (
        str,
        typer.Option(
            _D.weights,
            help="imagenet (downloaded once, then cached by Keras: `train weights` lists the files), none, or PATH to a weights file (Keras' own .h5 files included).",
        ),
    ),
    "freeze_base": (
        bool,
        typer.Option(False, "--freeze-base", help="Train the head only (the base stays ImageNet)."),
    ),
    "fine_tune_epochs": (
        int,
        typer.Option(
            0,
            help=f"With --freeze-base: then unfreeze and train N more epochs at lr/10 ({LIMITS['fine_tune_epochs']}).",
        ),
    ),
    "dropout": (
        float,
        typer.Option(_D.dropout, help=f"Dropout before the softmax head ({LIMITS['dropout']})."),
    ),
    "loss": (str, typer.Option(_D.loss, help="focal (Keras CategoricalFocalCrossentropy) or ce.")),
    "alpha": (
        str,
        typer.Option(
            _D.alpha,
            help="Focal alpha, or 'balanced' for a per-class alpha from inverse class frequency.",
        ),
    ),
    "gamma": (float, typer.Option(_D.gamma, help=f"Focal gamma ({LIMITS['gamma']}).")),
    "lr": (
        float | None,
        typer.Option(
            _D.lr,
            help=f"Adam learning rate ({LIMITS['lr']}; for the global batch: scale it yourself when you scale the batch). Default: {TUNING_LR:g} from ImageNet weights or a file (fine-tuning), {SCRATCH_LR:g} with --weights none (from scratch).",
        ),
    ),
    "lr_schedule": (
        str,
        typer.Option(
            _D.lr_schedule,
            help="constant, cosine (to 0 over the run) or plateau (a tenth after a third of --patience without improvement).",
        ),
    ),
    "warmup_epochs": (
        int,
        typer.Option(
            _D.warmup_epochs,
            help=f"Raise the learning rate linearly from 0 over these first epochs ({LIMITS['warmup_epochs']}).",
        ),
    ),
    "class_weight": (
        str,
        typer.Option(
            _D.class_weight,
            help="none, or balanced: each class weighs n / (classes x its count) in the loss (the cheapest baseline beside over-sampling).",
        ),
    ),
    "batch": (
        int | None,
        typer.Option(
            _D.batch,
            help=f"Global batch size ({LIMITS['batch']}), split across GPUs/replicas. Default: {MAX_BATCH}, or for a small data set the largest power of 2 that gives {STEPS_PER_EPOCH} steps an epoch (at least {MIN_BATCH}).",
        ),
    ),
    "epochs": (int, typer.Option(_D.epochs, help=f"Most epochs ({LIMITS['epochs']}).")),
    "patience": (
        int,
        typer.Option(
            _D.patience,
            help=f"Stop after this many epochs without improvement ({LIMITS['patience']}); the best weights are kept.",
        ),
    ),
    "monitor": (
        str,
        typer.Option(_D.monitor, help=f"What early stopping watches: {', '.join(MONITORS)}."),
    ),
    "keep": (
        str,
        typer.Option(
            _D.keep,
            help="The weights scored: best (early stopping, the best epoch on the part held out to choose it: fit's validation part, a cv or study fold's inner selection part) or last (every epoch trains; nothing is chosen).",
        ),
    ),
    "val_split": (
        float,
        typer.Option(
            _D.val_split,
            help=f"Share of originals held out to choose the epoch ({LIMITS['val_split']}; grouped by source): fit's validation part when no --val folder is given; in cv and studies, each fold's inner selection part.",
        ),
    ),
    "seed": (
        int,
        typer.Option(
            _D.seed, help=f"Seed for splits, shuffling and initialisation ({LIMITS['seed']})."
        ),
    ),
    "cache": (
        str,
        typer.Option(
            _D.cache,
            help=f"Keep the decoded inputs in memory after the first epoch: auto (when they take at most {CACHE_SHARE:.0%} of the memory available; one line says which), on or off.",
        ),
    ),
    "resize": (
        str,
        typer.Option(
            _D.resize,
            help="How an image becomes the square input: stretch (Keras' default; undoes most of a width/height copy's change), crop (the centred square) or pad (black bars).",
        ),
    ),
    "precision": (
        str,
        typer.Option(
            _D.precision,
            help="auto (mixed on GPU: bfloat16 where the GPU has it, else float16 with loss scaling; float32 on CPU), mixed or float32.",
        ),
    ),
    "jit": (
        str,
        typer.Option(
            _D.jit,
            help="Compile the training step: auto (XLA on GPU with TensorFlow; always with JAX), on (also torch.compile with PyTorch), off.",
        ),
    ),
    "eager": (
        bool,
        typer.Option(
            False,
            "--eager",
            help="Run Keras eagerly: skips ~30 s of graph tracing per model on CPU, so only for smoke runs on tiny data.",
        ),
    ),
}


def with_train_options(fn: Callable | None = None, *, exclude: tuple[str, ...] = ()) -> Any:
    """Add TRAIN_OPTIONS (less `exclude`) to a command whose signature ends in **train."""

    def add(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann)
            for name, (ann, option) in TRAIN_OPTIONS.items()
            if name not in exclude
        ]
        fn.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        return fn

    return add(fn) if fn else add
