"""The paper's experiments as commands, on tiny data and the `tiny` model (a study's logic does
not depend on the architecture): transform ranking, suggestions that beat the noise, resume."""

import os

import pandas as pd
import pytest
from helpers import (
    MODELS,
    SILENT,
    TINY,
    assert_one_line_error,
    run_cli,
    run_files,
)

from trainer.study import StudySpec, study_transforms


@pytest.mark.slow
def test_transform_study_outputs_and_resume(study_src, tmp_path):
    out = tmp_path / "st"
    spec = StudySpec.of_transforms(TINY, "rotate,flip", folds=2, models=MODELS)
    result = study_transforms(study_src, out, spec, top=1, control=SILENT)
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 6  # (baseline, rotate, flip) x 2 folds
    assert sorted(results.arm.unique()) == ["baseline", "flip", "rotate"]
    assert {"accuracy", "macro_f1", "f1_a", "f1_b", "f1_c", "config"} <= set(results.columns)
    for fold in (1, 2):  # each transform arm doubles exactly the fold's training originals
        base = results[(results.arm == "baseline") & (results.fold == fold)].train_files.item()
        for arm in ("rotate", "flip"):
            assert (
                results[(results.arm == arm) & (results.fold == fold)].train_files.item()
                == 2 * base
            )
    for fold, files in run_files(out, "rotate"):
        train = files[files.split == "train"]
        copies = train[train.origin == "augmented"]
        assert sorted(copies.source) == sorted(train[train.origin == "original"].file)
        assert all(
            os.path.exists(out / "data" / fold / "rotate" / f.split("/", 1)[1]) for f in copies.file
        )
    table = (out / "results.md").read_text()
    assert table.count("| tiny | focal |") == 3 and "±" in table
    assert (out / "results.png").stat().st_size > 10_000
    # Ranked by mean macro F1, then accuracy, then name; only arms above the baseline suggested.
    summary = result["summary"].set_index("arm")
    ranked = sorted(
        ["rotate", "flip"], key=lambda a: (-summary.macro_f1_mean[a], -summary.accuracy_mean[a], a)
    )
    assert list(result["ranking"].arm) == ranked
    winners = [a for a in ranked if summary.beats_noise[a]]  # paired gain > one standard error
    assert result["suggested"] == ",".join(winners[:1])

    # resume: finished runs are read back, not redone
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")}
    study = ["study", "transforms", study_src, "--out", out, "--folds", "2"]
    tiny = ["--weights", "none", "--model", "tiny"]
    proc = run_cli(
        "trainer",
        *study,
        *tiny,
        *("--transforms", "rotate,flip", "--top", "1", "--image-size", "32"),
        *("--epochs", "1", "--batch", "16", "--quiet"),
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "suggested: balance build SRC --out OUT --nmin N --transforms " + result["suggested"]
        if winners
        else "the study cannot tell: no transform beats the baseline by more than the noise"
    ) in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")} == stamps
    assert_one_line_error(
        run_cli("trainer", *study, *tiny, "--transforms", "rotate"),
        "other study or data",
        "--overwrite",
    )


def test_study_suggests_only_transforms_that_beat_the_noise_between_folds():
    import numpy as np

    from trainer.study import ranking, suggested_transforms, summarize

    base = [0.50, 0.52, 0.48, 0.50]
    per_fold = {
        "baseline": base,
        "crop": [b + 0.10 for b in base],  # better in every fold: beats the noise
        "zoom": [0.70, 0.40, 0.65, 0.45],  # better on average, but noisier than its gain
        "rotate": [b + 0.02 for b in base],  # a little better in every fold: still beats it
        "flip": [b - 0.05 for b in base],  # worse
    }
    results = pd.DataFrame(
        [
            {"model": "b0", "loss": "focal", "arm": arm, "fold": k, "accuracy": 0.5, "macro_f1": f}
            for arm, scores in per_fold.items()
            for k, f in enumerate(scores)
        ]
    )
    summary = summarize(results, [])
    gains = summary.set_index("arm")
    assert gains.gain_mean["crop"] == pytest.approx(0.10)
    assert gains.gain_se["zoom"] == pytest.approx(np.std([0.2, -0.12, 0.17, -0.05], ddof=1) / 2)
    assert list(ranking(summary).arm) == ["crop", "zoom", "rotate", "flip"]
    assert suggested_transforms(summary, 5, {"crop": 0.8}) == "crop=0.8,rotate"
    assert suggested_transforms(summary, 1, {}) == "crop"
    worse = results.assign(macro_f1=np.where(results.arm == "baseline", 0.9, results.macro_f1))
    assert suggested_transforms(summarize(worse, []), 5, {}) == ""
