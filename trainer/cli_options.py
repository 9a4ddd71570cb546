"""The options the `train` commands share, each declared once: every TrainConfig field as
an option (its range in its help), the reading threads, and what an interrupted command says.

Lazy imports: the ownership module loads only when a command runs."""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import typer

from balancer.common.cli import (
    workers_option,
)
from balancer.common.limits import WORKERS

from .config import CHOICES, FIELD_DOCS, LIMITS, TrainConfig

RESUMABLE = (
    "the run folder appears only when training ends; the same command with "
    "--resume continues from the last finished epoch"
)


GO_ON = "finished runs are kept: run the same command again to go on"
STOP_WITHIN = 10.0  # seconds after Ctrl-C: a train command has ended by then, whatever Keras does


WORKERS_OPTION = workers_option(
    f"Threads that read images ({WORKERS}; default: one per core; a study's copies use as many processes). Scores do not depend on it."
)


REDRAW_OPTION = typer.Option(
    None,
    help="With --nmin: 'epoch' draws each copy's transform anew every epoch (online augmentation); left out, each copy is drawn as planned (the folder's copies).",
)
TRANSFORMS_OPTION = typer.Option(
    "paper", help="With --nmin: the transforms of the copies (as `balance build`)."
)


def balancing(nmin: int | None, transforms: str, redraw: str | None) -> Any:
    """The Balancing of the --nmin, --transforms and --redraw options (None without --nmin)."""
    from balancer.common.errors import TrainError

    from .balancing import Balancing

    if nmin is None:
        if redraw is not None:
            raise TrainError("--redraw needs --nmin: it redraws the copies --nmin makes")
        return None
    return Balancing(nmin=nmin, transforms=transforms, redraw=redraw)


def existing_from(*, overwrite: bool, default: str = "error") -> Any:
    """The one value a library call takes for what to do with an existing output."""
    from balancer.common.ownership import Existing

    return Existing.OVERWRITE if overwrite else Existing(default)


def logs_to_stderr() -> contextlib.AbstractContextManager:
    """Keras' epoch lines and any other chatter go to stderr: stdout is for results (--json)."""
    return contextlib.redirect_stdout(sys.stderr)


def _option(f: Any) -> tuple[Any, Any]:
    """A TrainConfig field as a typer option: its type, its default, its doc (FIELD_DOCS)
    and, where it has one, its range (LIMITS); a flag for a bool."""
    kind: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool}
    annotation = kind[str(f.type).replace(" | None", "")]
    if "None" in str(f.type):
        annotation = annotation | None
    text = FIELD_DOCS[f.name]
    if f.name in LIMITS:
        text += f" Range: {LIMITS[f.name]}."
    if f.name in CHOICES and f.name != "model":  # the model's doc names its families
        text += f" One of: {', '.join(CHOICES[f.name])}."
    if f.type == "bool":
        return bool, typer.Option(f.default, f"--{f.name.replace('_', '-')}", help=text)
    return annotation, typer.Option(f.default, help=text)


# The options every training command takes (fit, cv, the studies): one per TrainConfig field,
# each described once (FIELD_DOCS).
TRAIN_OPTIONS = {f.name: _option(f) for f in fields(TrainConfig)}


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
