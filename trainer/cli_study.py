"""`train study`: the paper's experiments on your data (transform ranking, ablation).

Lazy imports: each command imports the study library when it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from balancer.common.cli import (
    json_option,
    on_interrupt,
    out_option,
    overwrite_option,
    quiet_option,
    tool_app,
)
from balancer.common.limits import COUNT

from .cli_options import (
    GO_ON,
    STOP_WITHIN,
    WORKERS_OPTION,
    existing_from,
    logs_to_stderr,
    with_train_options,
)
from .config import FOLDS, SIGNIFICANCE, TOP, TrainConfig

study_app = tool_app(help="The paper's experiments on your data: transform ranking, ablation.")


STUDY_ONLY = ("model", "loss")  # lists there


def records(table: Any) -> list[dict]:
    """A summary's rows as JSON values: a missing number (the baseline's gain) is null, not
    NaN, which JSON does not have."""
    return json.loads(table.to_json(orient="records"))


def budget_option() -> Any:
    """--budget: what every arm of a study gets the same of."""
    return typer.Option(
        "steps",
        help="What every arm gets the same of: steps (the baseline's optimizer steps on the fold; an arm with more files trains fewer epochs) or epochs (more files, more steps).",
    )


def significance_option() -> Any:
    """--significance: the family-wise level of the test behind a suggestion."""
    return typer.Option(
        SIGNIFICANCE,
        help="Family-wise level of the test behind a ✓ (one-sided corrected resampled t-test, Holm over the arms).",
    )


@study_app.command("transforms")
@with_train_options(exclude=(*STUDY_ONLY, "epochs", "keep"))
def study_transforms_cmd(
    src: Path = typer.Argument(
        ..., metavar="SRC", help="Class folder of originals (a balanced folder: its originals)."
    ),
    out: Path = out_option("Study folder (resumed when it holds the same study)."),
    epochs: int = typer.Option(30, help="Epochs per run (the paper's Tables 2-3: 30)."),
    keep: str = typer.Option(
        "last",
        help="last: every run trains all --epochs and is scored at the last (the paper's Tables 2-3); best: early stopping on an inner selection part (--val-split of each fold's training originals).",
    ),
    folds: int = typer.Option(5, help=f"Folds ({FOLDS}; grouped by source, stratified)."),
    model: str = typer.Option(
        "efficientnet-b0", help="A model, or several comma-separated (each trains every fold)."
    ),
    loss: str = typer.Option("focal", help="focal, ce, or both comma-separated."),
    transforms: str = typer.Option(
        "all", help="Transforms to rank, NAME[=MAGNITUDE],... or 'all'."
    ),
    top: int = typer.Option(
        5, help=f"How many of the best to suggest for `balance build` ({TOP})."
    ),
    budget: str = budget_option(),
    significance: float = significance_option(),
    overwrite: bool = overwrite_option("Replace an earlier study in OUT."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = quiet_option("No progress bar."),
    as_json: bool = json_option("Print the summary as JSON."),
    **train: Any,
) -> None:
    """Rank the transforms by the macro F1 each one adds (the paper's Tables 2-3).

    Each transform alone doubles every fold's training set once; the ranking is by mean
    macro F1 (ties: accuracy, then name). Only transforms whose gain over the baseline,
    fold by fold, passes a one-sided corrected resampled t-test at a family-wise
    --significance (Holm over the arms) are suggested for `balance build`; with fewer
    than 3 folds none is.

    \b
    Example:
      train study transforms photos/ --out study-t --folds 5 --model efficientnet-b0,vgg16
    """
    from .control import RunControl
    from .study import StudySpec, parse_list, study_transforms

    spec = StudySpec.of_transforms(
        TrainConfig(**train, epochs=epochs, keep=keep),
        transforms,
        folds=folds,
        models=parse_list(model, "--model"),
        losses=parse_list(loss, "--loss"),
        budget=budget,
        significance=significance,
    )
    with logs_to_stderr(), on_interrupt(GO_ON, deadline=STOP_WITHIN):
        result = study_transforms(
            src,
            out,
            spec,
            top=top,
            existing=existing_from(overwrite=overwrite, default="resume"),
            control=RunControl(progress=not quiet, workers=workers),
        )
    if as_json:
        print(
            json.dumps(
                {
                    "summary": records(result["summary"]),
                    "ranking": list(result["ranking"].arm),
                    "suggested": result["suggested"],
                },
                indent=2,
            )
        )
        return
    print((Path(out) / "results.md").read_text(encoding="utf-8"))
    if result["suggested"]:
        print(f"suggested: balance build SRC --out OUT --nmin N --transforms {result['suggested']}")
    else:
        print(
            "the study cannot tell: no transform's gain over the baseline passes the test "
            f"(family-wise level {significance:g}; results.md says what these folds can detect)"
        )


@study_app.command("ablation")
@with_train_options(exclude=STUDY_ONLY)
def study_ablation_cmd(
    src: Path = typer.Argument(..., metavar="SRC", help="Class folder of originals (imbalanced)."),
    nmin: int = typer.Option(
        ..., help=f"N_min: each training fold's classes are brought up to it ({COUNT})."
    ),
    out: Path = out_option("Study folder (resumed when it holds the same study)."),
    transforms: str = typer.Option("paper", help="The chosen set T ('paper': the paper's)."),
    every: str = typer.Option(
        "all",
        help="The 'all transforms' arm: 'all', or with magnitude overrides ('all,crop=24,cutout=12').",
    ),
    folds: int = typer.Option(5, help=f"Folds ({FOLDS}; grouped by source, stratified)."),
    model: str = typer.Option(
        "efficientnet-b0", help="A model, or several comma-separated (each trains every fold)."
    ),
    loss: str = typer.Option("focal", help="focal, ce, or both comma-separated."),
    budget: str = budget_option(),
    significance: float = significance_option(),
    overwrite: bool = overwrite_option("Replace an earlier study in OUT."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = quiet_option("No progress bar."),
    as_json: bool = json_option("Print the summary as JSON."),
    **train: Any,
) -> None:
    """Baseline, class weight, ROS, ROS + all transforms, ROS + T on the same folds: the
    paper's Table 4, and class weights to compare over-sampling with (five arms).

    Every fold is split first; copies are made from each fold's training originals only.

    \b
    Example:
      train study ablation photos/ --nmin 1500 --out study-a --folds 5
    """
    from .control import RunControl
    from .study import StudySpec, parse_list, run_study

    spec = StudySpec.of_ablation(
        TrainConfig(**train),
        nmin=nmin,
        transforms=transforms,
        every=every,
        folds=folds,
        models=parse_list(model, "--model"),
        losses=parse_list(loss, "--loss"),
        budget=budget,
        significance=significance,
    )
    with logs_to_stderr(), on_interrupt(GO_ON, deadline=STOP_WITHIN):
        summary = run_study(
            src,
            out,
            spec,
            existing=existing_from(overwrite=overwrite, default="resume"),
            control=RunControl(progress=not quiet, workers=workers),
        )
    if as_json:
        print(json.dumps(records(summary), indent=2))
    else:
        print((Path(out) / "results.md").read_text(encoding="utf-8"))
