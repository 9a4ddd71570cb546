"""The paper's study as commands: per-transform ranking (Tables 2-3) and the ablation (Table 4).

Every fold is split first (grouped by source, over originals); copies are then made with the
balancer library from that fold's training originals only, so a validation image or a copy
of one never trains. Each finished run is a run folder; a study resumes by skipping them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from balancer.common.atomic import write_atomic
from balancer.common.errors import TrainError, TrainValueError
from balancer.common.limits import COUNT
from balancer.common.ownership import Claim, Existing, claim
from balancer.common.parallel import resolve_workers
from balancer.manifest import CSV_LINE_END
from balancer.transforms import PAPER_SET, TRANSFORMS, parse_transforms

from .balancing import Arm, training_table
from .config import FOLDS, TOP, TrainConfig
from .control import RunControl, epoch_report
from .data import Folder, grouped_folds, list_folder, originals_only
from .evaluation import read_metrics
from .outputs import RUN, STUDY
from .reuse import Reuse
from .training import train_run


def transform_arms(transforms: dict) -> list[Arm]:
    """Baseline plus one arm per transform that doubles the training set (the paper's Tables 2-3)."""
    return [Arm("baseline")] + [Arm(name, {name: m}) for name, m in transforms.items()]


def ablation_arms(transforms: dict, every: dict) -> list[Arm]:
    """The paper's Table 4: baseline, ROS only, ROS + every transform, ROS + the chosen T; and
    class weights, the cheapest way to weigh the rare classes, to compare ROS with."""
    return [
        Arm("baseline"),
        Arm("class weight", class_weight=True),
        Arm("ROS", {}, True),
        Arm("ROS + all transforms", every, True),
        Arm("ROS + T", dict(transforms), True),
    ]


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """One study: which arms, folds, models and losses, trained with which settings; checked
    once when made. Its `key` is what a study folder must hold to be resumed."""

    kind: str  # "transforms" | "ablation"
    arms: tuple[Arm, ...]
    folds: int = 5
    models: tuple[str, ...] = ("efficientnet-b0",)
    losses: tuple[str, ...] = ("focal",)
    config: TrainConfig = field(default_factory=TrainConfig)
    nmin: int | None = None  # the ablation's N_min, per training fold

    def __post_init__(self) -> None:
        FOLDS.check(self.folds, "folds", TrainValueError)
        if self.nmin is not None or any(a.balance for a in self.arms):
            COUNT.check(self.nmin, "nmin", TrainValueError)
        for model in self.models:
            replace(self.config, model=model)  # validates the name
        for loss in self.losses:
            replace(self.config, loss=loss)
        self.config.check_weights()

    def key(self, folder: Folder) -> dict:
        """What a study folder must hold to be resumed: this study, of this data."""
        return {
            "study": self.kind,
            "counted_from": 1,  # runs/.../fold-1 is the first fold (0.x began at fold-0)
            "source": str(folder.root.resolve()),
            "data_digest": folder.digest(),
            "folds": self.folds,
            "models": list(self.models),
            "losses": list(self.losses),
            "nmin": self.nmin,
            "arms": [asdict(a) for a in self.arms],
            "config": {
                k: v for k, v in self.config.to_dict().items() if k not in ("model", "loss")
            },
        }

    def runs(self) -> list[tuple[int, str, str, Arm]]:
        """(fold from 1, model, loss, arm) for every run, in the order they train."""
        return [
            (k, model, loss, arm)
            for k in range(1, self.folds + 1)
            for model in self.models
            for loss in self.losses
            for arm in self.arms
        ]


def run_study(
    spec: StudySpec,
    src: str | Path,
    out: str | Path,
    *,
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> pd.DataFrame:
    """Train every arm x fold x model x loss; write results.csv, results.md and a plot.

    A study folder that holds the same study of the same data is resumed (finished runs are
    read, not redone); Existing.OVERWRITE replaces it.
    """
    control = control or RunControl()
    progress = control.progress
    control = replace(control, workers=resolve_workers(control.workers))
    folder = list_folder(src, workers=control.workers, progress=progress)
    settings = spec.key(folder)
    splits = list(grouped_folds(originals_only(folder.table), spec.folds, spec.config.seed))
    from .models import build_model  # Keras loads here, once the cheap checks have passed

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
        summary = _write_results(c.path, pd.DataFrame(rows), folder.class_names, settings)
        c.complete({"settings": settings})
        return summary


def _one_run(  # noqa: PLR0917  (the study, its folder, the data, the fold, the run)
    spec: StudySpec,
    c: Claim,
    folder: Folder,
    split,
    run: tuple,
    *,
    control: RunControl,
    bar,
    reuse: Reuse,
) -> dict:
    """One run's metrics: read back when its run folder is finished, else trained. Its epochs
    show on the study's bar (a terminal), else as a line each (logs)."""
    k, model, loss, arm = run
    part = f"runs/{model}-{loss}/{_slug(arm.name)}/fold-{k}"
    metrics_file = c.path / part / RUN.record
    if not metrics_file.is_file():
        train, val = split
        train_all = training_table(
            arm,
            train,
            folder.scan,
            cache=c.path / "data" / f"fold-{k}" / _slug(arm.name),
            class_names=folder.class_names,
            nmin=spec.nmin,
            seed=spec.config.seed + k - 1,
            workers=resolve_workers(control.workers),
        )
        weight = "balanced" if arm.class_weight else spec.config.class_weight
        run_config = replace(spec.config, model=model, loss=loss, class_weight=weight)
        with c.staged(part) as tmp:
            bar.set_description(f"study {spec.kind}: fold {k}/{spec.folds} {arm.name}")
            shown = not bar.disable
            report = epoch_report(
                run_config.total_epochs, label=control.label, bar=bar if shown else None
            )
            train_run(
                train_all,
                val,
                folder.class_names,
                run_config,
                tmp,
                control=replace(
                    control,
                    progress=False,
                    callbacks=(*control.callbacks, *((report,) if control.progress else ())),
                ),
                extra={"study": spec.kind, "arm": arm.name, "fold": k},
                reuse=reuse,
            )
    return read_metrics(metrics_file)


def _result_row(m: dict, run: tuple) -> dict:
    k, model, loss, arm = run
    return {
        "arm": arm.name,
        "fold": k,
        "model": model,
        "loss": loss,
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "weighted_f1": m["weighted_f1"],
        "epochs_run": m["epochs_run"],
        "train_files": m["data"]["train"]["files"],
        "validation_files": m["data"]["validation"]["files"],
        **{f"f1_{c}": v["f1"] for c, v in m["per_class"].items()},  # None: no image
        "absent_classes": " ".join(m.get("absent_classes") or []),
        "config": json.dumps(m["config"], sort_keys=True),
    }


def _write_results(
    out: Path, results: pd.DataFrame, class_names: list[str], settings: dict
) -> pd.DataFrame:
    text = results.to_csv(index=False, lineterminator=CSV_LINE_END)
    write_atomic(out / "results.csv", text.encode("utf-8"))
    summary = summarize(results, class_names)
    kind = settings["study"]
    markdown = results_markdown(summary, kind, settings, results)
    write_atomic(out / "results.md", markdown.encode("utf-8"))
    plot_study(summary, out / "results.png", kind, settings)
    return summary


def _slug(name: str) -> str:
    return name.lower().replace(" + ", "+").replace(" ", "-")


def summarize(results: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Mean and std over folds per model, loss and arm, in the arms' order (a class's F1 over
    the folds that had a validation image of it), and each arm's paired gain over the
    baseline (`paired_gains`)."""
    metrics = ["accuracy", "macro_f1"] + [f"f1_{c}" for c in class_names]
    grouped = results.groupby(["model", "loss", "arm"], sort=False)
    out = (
        grouped[metrics]
        .mean()
        .add_suffix("_mean")
        .join(grouped[["accuracy", "macro_f1"]].std(ddof=1).fillna(0).add_suffix("_std"))
    )
    out["folds"] = grouped.size()
    return out.reset_index().merge(paired_gains(results), on=["model", "loss", "arm"], how="left")


def paired_gains(results: pd.DataFrame) -> pd.DataFrame:
    """Per model, loss and arm: the arm's macro F1 minus the baseline's in the same fold, as
    mean and standard error over the folds, and whether it beats the noise between folds:
    mean minus one standard error above 0 (with at least two folds)."""
    key = ["model", "loss", "fold"]
    base = results[results.arm == "baseline"].set_index(key).macro_f1
    rows = []
    for (model, loss, arm), g in results[results.arm != "baseline"].groupby(
        ["model", "loss", "arm"], sort=False
    ):
        d = (g.set_index(key).macro_f1 - base).dropna()
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        mean = float(d.mean()) if len(d) else float("nan")
        rows.append(
            {
                "model": model,
                "loss": loss,
                "arm": arm,
                "gain_mean": mean,
                "gain_se": se,
                "beats_noise": bool(len(d) > 1 and mean - se > 0),
            }
        )
    columns = ["model", "loss", "arm", "gain_mean", "gain_se", "beats_noise"]
    return pd.DataFrame(rows, columns=columns)


NOISE_RULE = (
    "a transform is suggested when its paired gain in macro F1 over the baseline (fold by "
    "fold) is above zero by more than one standard error of that gain"
)


def ranking(summary: pd.DataFrame) -> pd.DataFrame:
    """Transform arms of the first model and loss (the paper ranks on B0, focal): best mean
    macro F1 first, ties broken by mean accuracy, then by name."""
    first = summary[
        (summary.model == summary.model.iloc[0]) & (summary.loss == summary.loss.iloc[0])
    ]
    arms = first[first.arm != "baseline"]
    return arms.sort_values(
        ["macro_f1_mean", "accuracy_mean", "arm"], ascending=[False, False, True], kind="stable"
    )


def suggested_transforms(summary: pd.DataFrame, top: int, magnitudes: dict) -> str:
    """The best `top` transforms whose gain over the baseline beats the noise between folds
    (NOISE_RULE), as a --transforms value ("" when none does: the study cannot tell)."""
    ranked = ranking(summary)
    if "beats_noise" in ranked:
        ranked = ranked[ranked.beats_noise.fillna(False).astype(bool)]
    names = list(ranked.arm[:top])
    return ",".join(
        n if magnitudes.get(n) in (None, TRANSFORMS[n].default) else f"{n}={magnitudes[n]:g}"
        for n in names
    )


def results_markdown(summary: pd.DataFrame, kind: str, settings: dict, results=None) -> str:
    """The paper-shaped table (every score from 0 to 1), the rule for suggestions, and the
    folds whose validation lacked a class."""
    classes = [c[3:-5] for c in summary.columns if c.startswith("f1_") and c.endswith("_mean")]
    head = ["model", "loss", "arm", "accuracy (mean ± std)", "macro F1 (mean ± std)"]
    head += ["macro F1 gain over baseline (mean ± SE)"] + [f"F1 {c}" for c in classes]
    lines = [
        f"# Study: {kind}",
        "",
        f"{settings['folds']}-fold cross-validation grouped by source on {settings['source']};"
        " scores on each fold's untouched validation originals, all from 0 to 1.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def number(x, fmt=".3f") -> str:
        return "n/a" if x is None or pd.isna(x) else format(x, fmt)

    for r in summary.itertuples(index=False):
        d = r._asdict()
        gain = (
            ""
            if r.arm == "baseline" or pd.isna(d.get("gain_mean"))
            else f"{d['gain_mean']:+.3f} ± {number(d.get('gain_se'))}"
            + (" ✓" if d.get("beats_noise") else "")
        )
        cells = [
            r.model,
            r.loss,
            r.arm,
            f"{r.accuracy_mean:.3f} ± {r.accuracy_std:.3f}",
            f"{r.macro_f1_mean:.3f} ± {r.macro_f1_std:.3f}",
            gain,
        ] + [number(d[f"f1_{c}_mean"]) for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"✓: beats the noise between folds ({NOISE_RULE})."]
    if results is not None and "absent_classes" in results:
        lacking = results[results.absent_classes.fillna("") != ""]
        for fold, names in sorted(set(zip(lacking.fold, lacking.absent_classes, strict=True))):
            lines.append(
                f"Fold {fold} has no validation image of {', '.join(names.split())}: each "
                "counts as 0 in that fold's macro F1, and its own F1 is left out of the mean."
            )
    return "\n".join(lines) + "\n"


def plot_study(summary: pd.DataFrame, path: Path, kind: str, settings: dict | None = None) -> None:
    """Bars of mean macro F1 and accuracy per arm (± std over folds), each bar labelled with
    its value; the title names N_min and T where the study has them."""
    from balancer.common.plotting import pyplot, save_figure

    plt = pyplot()
    labels = [
        f"{r.arm}"
        + (
            ""
            if summary[["model", "loss"]].drop_duplicates().shape[0] == 1
            else f"\n{r.model} {r.loss}"
        )
        for r in summary.itertuples()
    ]
    x = np.arange(len(summary))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(x) + 3), 4.4))
    for ax, key, title in zip(
        axes, ("macro_f1", "accuracy"), ("macro F1", "accuracy"), strict=False
    ):
        bars = ax.bar(
            x,
            summary[f"{key}_mean"],
            yerr=summary[f"{key}_std"],
            capsize=4,
            color=["#999999" if a == "baseline" else "#3b75af" for a in summary.arm],
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=8)
        ax.set(title=f"{title} (mean ± std over folds)")
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(study_title(kind, settings or {}), fontsize=10)
    save_figure(fig, path)


def study_title(kind: str, settings: dict) -> str:
    """A study's title: its kind, folds and source."""
    parts = [f"study: {kind}", f"{settings['folds']} folds" if settings.get("folds") else ""]
    if settings.get("nmin"):
        parts.append(f"N_min {settings['nmin']}")
    chosen = [a for a in settings.get("arms", []) if a.get("name") == "ROS + T"]
    if chosen and chosen[0].get("transforms"):
        parts.append("T = " + ",".join(chosen[0]["transforms"]))
    return ", ".join(p for p in parts if p)


def parse_list(value: str, option: str) -> list[str]:
    """'a, b' as ['a', 'b']; one line when nothing is given."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise TrainError(f"{option} needs at least one value")
    return items


def study_transforms(
    src,
    out,
    config: TrainConfig,
    *,
    transforms: str = "all",
    folds: int = 5,
    models=("efficientnet-b0",),
    losses=("focal",),
    top: int = 5,
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> dict:
    """Rank each transform by the macro F1 it adds when it doubles the training set once."""
    chosen = parse_transforms(transforms)
    spec = StudySpec(
        kind="transforms",
        arms=tuple(transform_arms(chosen)),
        folds=folds,
        models=tuple(models),
        losses=tuple(losses),
        config=config,
    )
    TOP.check(top, "top", TrainValueError)
    summary = run_study(spec, src, out, existing=existing, control=control)
    return {
        "summary": summary,
        "ranking": ranking(summary),
        "suggested": suggested_transforms(summary, top, chosen),
    }


def study_ablation(
    src,
    out,
    config: TrainConfig,
    *,
    nmin: int,
    transforms: str = PAPER_SET,
    folds: int = 5,
    models=("efficientnet-b0",),
    losses=("focal",),
    every: str = "all",
    existing: Existing = Existing.RESUME,
    control: RunControl | None = None,
) -> pd.DataFrame:
    """The four arms of the paper's Table 4, balanced inside each training fold.

    `every` is the 'all transforms' arm's set: 'all' at the defaults, or with overrides
    ('all,crop=24,cutout=12') for images far from the paper's size.
    """
    spec = StudySpec(
        kind="ablation",
        arms=tuple(ablation_arms(parse_transforms(transforms), parse_transforms(every))),
        folds=folds,
        models=tuple(models),
        losses=tuple(losses),
        config=config,
        nmin=nmin,
    )
    return run_study(spec, src, out, existing=existing, control=control)
