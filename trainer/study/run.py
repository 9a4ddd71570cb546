"""Running a study: every fold is split first (grouped by source, over originals); copies are
made with the balancer library from that fold's training originals only, so a validation
image or a copy of one never trains. Each finished run is a run folder; a study resumes by
skipping them.

Lazy imports: Keras loads once the cheap checks have passed (trainer.models)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from balancer.common.checks import instance, member, optional
from balancer.common.errors import TrainValueError
from balancer.common.ownership import Claim, Existing, claim
from balancer.common.parallel import resolve_workers
from balancer.manifest import CSV_LINE_END

from ..balancing import training_table
from ..config import TOP, TrainConfig
from ..control import RunControl, epoch_report
from ..data import Folder, Parts, grouped_folds, inner_selection, list_folder, originals_only
from ..evaluation import read_metrics
from ..outputs import RUN, STUDY
from ..records import RunMetrics, StudyRow
from ..reuse import Reuse
from ..training import train_run
from .report import plot_study, ranking, results_markdown, suggested_transforms, summarize
from .significance import compare_arms, fold_gains
from .spec import StudySpec


def run_study(
    src: str | Path,
    out: str | Path,
    spec: StudySpec,
    *,
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> pd.DataFrame:
    """Train every arm x fold x model x loss; write results.csv, results.md and a plot.

    A study folder that holds the same study of the same data is resumed (finished runs are
    read, not redone); Existing.OVERWRITE replaces it.
    """
    spec = instance(spec, StudySpec, "spec", "StudySpec.of_ablation(...)")
    control = optional(control, RunControl, "control", "RunControl(workers=4)") or RunControl()
    existing = member(existing, Existing, "existing", TrainValueError)
    progress = control.progress
    control = replace(control, workers=resolve_workers(control.workers))
    folder = list_folder(src, workers=control.workers, progress=progress)
    spec = replace(spec, config=spec.config.resolved(len(folder.table)))
    settings = spec.key(folder)
    splits = _fold_parts(folder, spec)
    from ..models import build_model  # Keras loads here, once the cheap checks have passed

    for model in spec.models:  # fail now, not after hours, when the weights cannot be had
        build_model(replace(spec.config, model=model), len(folder.class_names))
    with claim(out, STUDY, inputs={"source folder": Path(src)}, existing=existing) as c:
        c.check_resume(settings, "study or data")
        c.begin({"settings": settings})  # only now: a bad source leaves nothing behind
        runs = spec.runs()
        bar = tqdm(
            total=len(runs),
            desc=f"study {spec.kind}",
            unit="run",
            disable=None if progress else True,
        )
        rows, reuse = [], Reuse(enabled=control.reuse_model)
        for i, (k, model, loss, arm) in enumerate(runs, start=1):
            label = f"[{i}/{len(runs)}] fold {k}/{spec.folds} {model} {loss} {arm.name}"
            m = _one_run(
                spec,
                c,
                folder,
                splits[k - 1],
                (k, model, loss, arm),
                control=replace(control, label=label + ": "),
                bar=bar,
                reuse=reuse,
            )
            rows.append(_result_row(m, (k, model, loss, arm)))
            bar.update()
            if progress:
                bar.write(
                    f"{label}: accuracy {m['accuracy']:.4f}, macro F1 {m['macro_f1']:.4f}",
                    file=sys.stderr,
                )
        bar.close()
        summary, files = _results(
            pd.DataFrame(rows), folder.class_names, settings, spec.significance
        )
        c.complete({"settings": settings}, files=files)
        return summary


def _fold_parts(folder: Folder, spec: StudySpec) -> list[Parts]:
    """Each fold's parts, shared by every arm: the fold scored (its validation originals),
    and its training originals, less an inner selection part when the runs choose anything
    (`inner_selection`): copies are made later from what is left for training alone."""
    config = spec.config
    share = config.val_split if config.chooses else None
    parts = []
    for k, (train, scored) in enumerate(
        grouped_folds(originals_only(folder.table), spec.folds, config.seed), start=1
    ):
        train, select = inner_selection(train, share, config.seed + k - 1)
        parts.append(Parts(train, select, scored))
    return parts


def _budgeted(config: TrainConfig, budget: str, baseline: int, files: int) -> TrainConfig:
    """The config an arm of `files` training files trains with: under budget 'steps', its
    epochs scaled so that it takes the optimizer steps the baseline (`baseline` files) takes
    in the same fold (to the nearest epoch); under 'epochs', as it is."""
    if budget == "epochs":
        return config

    def steps(n: int) -> int:
        return -(-n // config.global_batch)  # batches per epoch (ImageBatches' len)

    def scaled(epochs: int) -> int:
        return max(1, round(epochs * steps(baseline) / steps(files))) if epochs else 0

    return replace(
        config, epochs=scaled(config.epochs), fine_tune_epochs=scaled(config.fine_tune_epochs)
    )


def _one_run(
    spec: StudySpec,
    c: Claim,
    folder: Folder,
    split: Parts,
    run: tuple,
    *,
    control: RunControl,
    bar: Any,
    reuse: Reuse,
) -> RunMetrics:
    """One run's metrics: read back when its run folder is finished, else trained. Its epochs
    show on the study's bar (a terminal), else as a line each (logs)."""
    k, model, loss, arm = run
    part = f"runs/{model}-{loss}/{_slug(arm.name)}/fold-{k}"
    metrics_file = c.path / part / RUN.record
    if not metrics_file.is_file():
        train = split.train
        train_all = training_table(
            arm,
            train,
            folder.scan,
            class_names=folder.class_names,
            nmin=spec.nmin,
            seed=spec.config.seed + k - 1,
        )
        weight = "balanced" if arm.class_weight else spec.config.class_weight
        run_config = _budgeted(
            replace(spec.config, model=model, loss=loss, class_weight=weight),
            spec.budget,
            len(train),
            len(train_all),
        )
        with c.staged(part, RUN) as tmp:
            bar.set_description(f"study {spec.kind}: fold {k}/{spec.folds} {arm.name}")
            shown = not bar.disable
            report = epoch_report(
                run_config.total_epochs, label=control.label, bar=bar if shown else None
            )
            train_run(
                split._replace(train=train_all),
                folder.class_names,
                run_config,
                tmp,
                control=replace(
                    control,
                    progress=False,
                    callbacks=(*control.callbacks, *((report,) if control.progress else ())),
                ),
                extra={"study": spec.kind, "arm": arm.name, "fold": k, "budget": spec.budget},
                reuse=reuse,
            )
    return read_metrics(metrics_file)


def _result_row(m: RunMetrics, run: tuple) -> dict:
    """A StudyRow, then one f1_<class> column per class."""
    k, model, loss, arm = run
    row: StudyRow = {
        "arm": arm.name,
        "fold": k,
        "model": model,
        "loss": loss,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "weighted_f1": m["weighted_f1"],
        "epochs_run": m["epochs_run"],
        "scored_epoch": m["scored_epoch"],
        "steps": m["epochs_run"] * -(-m["data"]["train"]["files"] // m["config"]["batch"]),
        "train_files": m["data"]["train"]["files"],
        "selection_files": m["data"].get("selection", {}).get("files", 0),
        "validation_files": m["data"]["validation"]["files"],
        "absent_classes": " ".join(m.get("absent_classes") or []),
        "config": json.dumps(m["config"], sort_keys=True),
    }
    per_class = {f"f1_{c}": v["f1"] for c, v in m["per_class"].items()}  # None: no image
    tail = ("absent_classes", "config")  # results.csv's column order: these come last
    head = {k: v for k, v in row.items() if k not in tail}
    return {**head, **per_class, **{k: row[k] for k in tail}}  # type: ignore[literal-required]


def _results(
    results: pd.DataFrame, class_names: list[str], settings: dict, level: float
) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """The summary, and the study's own files: results.csv, results.md and results.png."""
    summary = summarize(results, class_names, level)
    results = with_gains(results, compare_arms(results, level))
    kind = settings["study"]
    files = {
        "results.csv": results.to_csv(index=False, lineterminator=CSV_LINE_END).encode("utf-8"),
        "results.md": results_markdown(summary, kind, settings, results, level).encode("utf-8"),
        "results.png": plot_study(summary, kind, settings),
    }
    return summary, files


def with_gains(results: pd.DataFrame, tested: pd.DataFrame) -> pd.DataFrame:
    """results.csv's rows with each run's gain over the baseline on its fold, then its arm's
    mean gain, corrected standard error, p-values and mark (`compare_arms`), before the
    absent classes and the config; empty for the baseline."""
    out = results.assign(gain=fold_gains(results))
    out = out.merge(tested.drop(columns="folds"), on=["model", "loss", "arm"], how="left")
    tail = [c for c in ("absent_classes", "config") if c in out]
    return out[[c for c in out if c not in tail] + tail]


def _slug(name: str) -> str:
    return name.lower().replace(" + ", "+").replace(" ", "-")


def study_transforms(
    src: str | Path,
    out: str | Path,
    spec: StudySpec,
    *,
    top: int = 5,
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> dict:
    """Rank each transform of a StudySpec.of_transforms by the macro F1 it adds when it
    doubles the training set once; suggest the best `top` of those whose gain over the
    baseline passes the test (`significance.RULE` at `spec.significance`)."""
    TOP.check(top, "top", TrainValueError)
    summary = run_study(src, out, spec, existing=existing, control=control)
    magnitudes = {a.name: a.transforms[a.name] for a in spec.arms if a.transforms}
    return {
        "summary": summary,
        "ranking": ranking(summary),
        "suggested": suggested_transforms(summary, top, magnitudes),
    }
