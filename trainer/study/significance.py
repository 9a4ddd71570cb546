"""Whether an arm beats the baseline: a paired test that knows cross-validated folds overlap,
and a correction for testing many arms at once.

Each arm's gain is its macro F1 minus the baseline's on the same fold. The folds' training
sets overlap, so their gains are correlated and the plain standard error is too small;
Nadeau & Bengio's corrected resampled t-test (as Weka's experimenter and Bouckaert & Frank
use it) scales the variance by 1/k + n_scored/n_train instead of 1/k. The test is
one-sided (does the arm add macro F1?), with k - 1 degrees of freedom. The p-values of the
arms of one model and loss are adjusted with Holm's step-down, so the chance that any arm
with no effect is suggested stays at the chosen family-wise level. Fewer than MIN_FOLDS
folds: the study cannot tell.

Lazy imports: SciPy loads only when a test is computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..config import SIGNIFICANCE as LEVEL  # the chance that an arm with no effect is marked

MIN_FOLDS = 3  # with two folds the t-test has one degree of freedom: nothing it says holds
POWER = 0.8  # "can detect": found this often

RULE = (
    "an arm is marked when its paired gain in macro F1 over the baseline (fold by fold) "
    "passes a one-sided corrected resampled t-test (Nadeau & Bengio: the variance scaled by "
    "1/k + n_scored/n_train, as cross-validated folds share training data) at a family-wise "
    "level of {level:g} over the arms of a model and loss (Holm's step-down); with fewer "
    f"than {MIN_FOLDS} folds nothing is marked"
)


def corrected_t(gains: np.ndarray, ratio: float | np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, corrected standard error, one-sided p) of paired gains over the last axis (the
    folds); `ratio` is n_scored/n_train. Gains with no spread: p is 0 above 0, else 1."""
    gains = np.asarray(gains, dtype=float)
    k = gains.shape[-1]
    return _tested(gains.mean(axis=-1), gains.var(axis=-1, ddof=1), k, ratio)


def _tested(mean: Any, var: Any, k: Any, ratio: Any) -> tuple[np.ndarray, ...]:
    """(mean, corrected standard error, one-sided p) from the gains' mean, variance (ddof 1)
    and count k."""
    from scipy import stats

    mean, k = np.asarray(mean, dtype=float), np.asarray(k, dtype=float)
    se = np.sqrt(np.asarray(var, dtype=float) * (1 / k + np.asarray(ratio, dtype=float)))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, stats.t.sf(mean / se, df=k - 1), np.where(mean > 0, 0.0, 1.0))
    return mean, se, np.where(k > 1, p, np.nan)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over the last axis: the smallest times m, the next
    times m - 1, ..., each at least the one before, at most 1."""
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    ranked = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    adjusted = np.empty_like(ranked)
    np.put_along_axis(adjusted, order, ranked, axis=-1)
    return adjusted


def fold_gains(results: pd.DataFrame) -> pd.Series:
    """Each run's macro F1 minus the baseline's on the same model, loss and fold (NaN for the
    baseline's own runs and where a fold has no baseline run), aligned with `results`."""
    key = ["model", "loss", "fold"]
    base = results[results.arm == "baseline"].set_index(key).macro_f1.rename("base")
    joined = results.join(base, on=key)
    return (joined.macro_f1 - joined.base).where(joined.arm != "baseline").rename("gain")


def compare_arms(results: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """Per model, loss and arm other than the baseline: folds, gain_mean, gain_se (corrected),
    p_value (one-sided), p_adjusted (Holm, over that model and loss's arms) and `marked`
    (p_adjusted <= level, with at least MIN_FOLDS folds).

    Needs only a results table: one row per run with arm, fold, model, loss, macro_f1, and
    train_files and validation_files (n_train and n_scored; the baseline's rows give the
    ratio, as its training part holds originals only)."""
    study = ["model", "loss"]
    columns = [*study, "arm", "folds", "gain_mean", "gain_se", "p_value", "p_adjusted"]
    if (results.arm == "baseline").all():
        return pd.DataFrame(columns=[*columns, "marked"])
    base = results[results.arm == "baseline"]
    base = base.assign(ratio=base.validation_files / base.train_files)
    paired = results.assign(gain=fold_gains(results)).dropna(subset=["gain"])
    grouped = paired.groupby([*study, "arm"], sort=False).gain
    table = grouped.agg(folds="count", gain_mean="mean", var="var").reset_index()
    ratio = table[study].merge(base.groupby(study).ratio.mean().reset_index(), how="left")
    _, table["gain_se"], table["p_value"] = _tested(
        table.gain_mean, table["var"], table.folds, ratio.ratio.fillna(0.0)
    )
    table["p_adjusted"] = table.groupby(study, sort=False).p_value.transform(_holm_known)
    table["marked"] = (table.folds >= MIN_FOLDS) & (table.p_adjusted <= level)
    return table[[*columns, "marked"]]


def _holm_known(p: pd.Series) -> pd.Series:
    """Holm over the p-values that exist (an arm with one fold has none)."""
    known = p.notna().to_numpy()
    adjusted = np.full(len(p), np.nan)
    adjusted[known] = holm(p.to_numpy()[known])
    return pd.Series(adjusted, index=p.index)


def detectable_gain(
    folds: int, arms: int, sd: float, ratio: float, level: float = LEVEL, power: float = POWER
) -> float:
    """The smallest true gain the rule finds `power` of the time, for one arm among `arms`
    whose fold gains spread by `sd` (their standard deviation): the gain at which the
    noncentral t reaches the first Holm step's threshold (level / arms) that often."""
    from scipy import optimize, stats

    if folds < MIN_FOLDS or sd <= 0:
        return float("nan") if sd > 0 or folds < MIN_FOLDS else 0.0
    df, se = folds - 1, sd * np.sqrt(1 / folds + ratio)
    threshold = stats.t.isf(level / arms, df)

    def short(gain: float) -> float:
        return float(stats.nct.sf(threshold, df, gain / se)) - power

    return float(optimize.brentq(short, 0.0, 100 * se))
