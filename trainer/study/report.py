"""A study's results: means over folds, paired gains over the baseline and the rule that
suggests a transform, results.md and the plot.

Lazy imports: matplotlib loads only when the plot is drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from balancer.transforms import TRANSFORMS

from .significance import LEVEL, MIN_FOLDS, POWER, RULE, compare_arms, detectable_gain


def summarize(results: pd.DataFrame, class_names: list[str], level: float = LEVEL) -> pd.DataFrame:
    """Mean and std over folds per model, loss and arm, in the arms' order (a class's F1 over
    the folds that had a validation image of it), and each arm's paired gain over the
    baseline with its test (`significance.compare_arms` at this family-wise `level`)."""
    metrics = ["accuracy", "macro_f1"] + [f"f1_{c}" for c in class_names]
    grouped = results.groupby(["model", "loss", "arm"], sort=False)
    out = (
        grouped[metrics]
        .mean()
        .add_suffix("_mean")
        .join(grouped[["accuracy", "macro_f1"]].std(ddof=1).fillna(0).add_suffix("_std"))
    )
    out["folds"] = grouped.size()
    gains = compare_arms(results, level).drop(columns="folds")
    return out.reset_index().merge(gains, on=["model", "loss", "arm"], how="left")


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
    """The best `top` transforms whose gain over the baseline passes the test (`RULE`), as a
    --transforms value ("" when none does: the study cannot tell)."""
    ranked = ranking(summary)
    ranked = ranked[ranked.marked.fillna(value=False).astype(bool)]
    names = list(ranked.arm[:top])
    return ",".join(
        n if magnitudes.get(n) in (None, TRANSFORMS[n].default) else f"{n}={magnitudes[n]:g}"
        for n in names
    )


def results_markdown(
    summary: pd.DataFrame,
    kind: str,
    settings: dict,
    results: pd.DataFrame | None = None,
    level: float = LEVEL,
) -> str:
    """The paper-shaped table (every score from 0 to 1), how each run chose its epoch and
    how long it trained, the test behind a ✓ and what it could detect, and the folds whose
    validation lacked a class."""
    classes = [c[3:-5] for c in summary.columns if c.startswith("f1_") and c.endswith("_mean")]
    head = ["model", "loss", "arm", "accuracy (mean ± std)", "macro F1 (mean ± std)"]
    head += ["macro F1 gain (mean ± corrected SE)", "p (Holm)"] + [f"F1 {c}" for c in classes]
    lines = [
        f"# Study: {kind}",
        "",
        f"{settings['folds']}-fold cross-validation grouped by source on {settings['source']};"
        " each fold is scored once, on its untouched validation originals; all scores from "
        "0 to 1.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def number(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None or pd.isna(x) else format(x, fmt)

    for r in summary.itertuples(index=False):
        d = r._asdict()
        tested = r.arm != "baseline" and not pd.isna(d.get("gain_mean"))
        gain = (
            f"{d['gain_mean']:+.3f} ± {number(d.get('gain_se'))}" + (" ✓" if d["marked"] else "")
            if tested
            else ""
        )
        cells = [
            r.model,
            r.loss,
            r.arm,
            f"{r.accuracy_mean:.3f} ± {r.accuracy_std:.3f}",
            f"{r.macro_f1_mean:.3f} ± {r.macro_f1_std:.3f}",
            gain,
            number(d.get("p_adjusted")) if tested else "",
        ] + [number(d[f"f1_{c}_mean"]) for c in classes]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *training_lines(settings), "", f"✓: {RULE.format(level=level)}."]
    lines += _verdict(summary, settings["folds"], level, results)
    if results is not None and "absent_classes" in results:
        lacking = results[results.absent_classes.fillna("") != ""]
        for fold, names in sorted(set(zip(lacking.fold, lacking.absent_classes, strict=True))):
            lines.append(
                f"Fold {fold} has no validation image of {', '.join(names.split())}: each "
                "counts as 0 in that fold's macro F1, and its own F1 is left out of the mean."
            )
    return "\n".join(lines) + "\n"


def training_lines(settings: dict) -> list[str]:
    """How every run chose the epoch it was scored at, and how long each arm trained."""
    config = settings.get("config")
    if not config:  # a table made by hand: nothing known of how it trained
        return []
    steps = settings.get("budget") == "steps"
    if config.get("keep", "best") == "last":
        budget = (
            f"the baseline's {config.get('epochs')} epochs' steps"
            if steps
            else (f"its {config.get('epochs')} epochs")
        )
        chose = (
            f"Every run trained its whole budget ({budget}) and was scored at its last epoch "
            "(no early stopping: nothing was chosen, so no fold's data chose anything)."
        )
    else:
        chose = (
            f"Every run's epoch (early stopping, patience {config.get('patience')}, and the "
            f"best {config.get('monitor')}) was chosen on an inner selection part: "
            f"{config.get('val_split'):g} of that fold's training originals, held out before "
            "any copy was made; the fold it is scored on chose nothing."
        )
    if steps:
        budget = (
            "Every arm trained the optimizer steps of the baseline on the same fold "
            "(--budget steps: an arm with more files trains fewer epochs), so a gain is the "
            "data's, not more training's."
        )
    else:
        budget = (
            "Every arm trained the same number of epochs (--budget epochs): an arm with more "
            "files also took more optimizer steps, which is part of its gain."
        )
    return [chose, budget]


def _verdict(
    summary: pd.DataFrame, folds: int, level: float, results: pd.DataFrame | None
) -> list[str]:
    """What the test can say here: nothing below MIN_FOLDS folds; else the smallest gain it
    would find (POWER of the time) at the spread these gains showed."""
    if folds < MIN_FOLDS:
        return [
            f"With {folds} folds the study cannot tell whether any arm helps: the test needs "
            f"at least {MIN_FOLDS}."
        ]
    tested = summary[summary.arm != "baseline"].dropna(subset=["gain_se"])
    if tested.empty or results is None:
        return []
    base = results[results.arm == "baseline"]
    ratio = float((base.validation_files / base.train_files).mean())
    spread = float(np.median(tested.gain_se / np.sqrt(1 / folds + ratio)))
    arms = int(tested.groupby(["model", "loss"]).size().max())
    smallest = detectable_gain(folds, arms, spread, ratio, level)
    line = (
        f"At the spread of these gains across folds (median sd {spread:.3f}), {folds} folds "
        f"find an arm's true gain {POWER:.0%} of the time from about {smallest:+.3f} macro F1 "
        f"(one of {arms} arms)."
    )
    if not tested.marked.any():
        line += " No arm passed: the study cannot tell which, if any, helps."
    return [line]


def plot_study(summary: pd.DataFrame, kind: str, settings: dict | None = None) -> bytes:
    """Bars of mean macro F1 and accuracy per arm (± std over folds), each bar labelled with
    its value, as PNG bytes; the title names N_min and T where the study has them."""
    from balancer.common.plotting import figure_bytes, pyplot

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
    return figure_bytes(fig, "png")


def study_title(kind: str, settings: dict) -> str:
    """A study's title: its kind, folds and source."""
    parts = [f"study: {kind}", f"{settings['folds']} folds" if settings.get("folds") else ""]
    if settings.get("nmin"):
        parts.append(f"N_min {settings['nmin']}")
    chosen = [a for a in settings.get("arms", []) if a.get("name") == "ROS + T"]
    if chosen and chosen[0].get("transforms"):
        parts.append("T = " + ",".join(chosen[0]["transforms"]))
    return ", ".join(p for p in parts if p)
