"""A study's results: means over folds, paired gains over the baseline and the rule that
suggests a transform, results.md and the plot."""

from __future__ import annotations

import numpy as np
import pandas as pd

from balancer.transforms import TRANSFORMS


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
        ranked = ranked[ranked.beats_noise == True]  # noqa: E712  (NaN, one fold: not shown)
    names = list(ranked.arm[:top])
    return ",".join(
        n if magnitudes.get(n) in (None, TRANSFORMS[n].default) else f"{n}={magnitudes[n]:g}"
        for n in names
    )


def results_markdown(
    summary: pd.DataFrame, kind: str, settings: dict, results: pd.DataFrame | None = None
) -> str:
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

    def number(x: float | None, fmt: str = ".3f") -> str:
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
