"""The paper's experiments as commands, on tiny data and the `tiny` model (a study's logic does
not depend on the architecture): transform ranking, the parts each run uses, resume. The
rule behind a suggestion: test_significance."""

from dataclasses import replace

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
    fixed = replace(TINY, keep="last")  # the paper's Tables 2-3: fixed epochs, nothing chosen
    spec = StudySpec.of_transforms(fixed, "rotate,flip", folds=2, models=MODELS)
    result = study_transforms(study_src, out, spec, top=1, control=SILENT)
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 6  # (baseline, rotate, flip) x 2 folds
    assert sorted(results.arm.unique()) == ["baseline", "flip", "rotate"]
    assert {"accuracy", "macro_f1", "f1_a", "f1_b", "f1_c", "config"} <= set(results.columns)
    assert {"gain", "gain_se", "p_adjusted", "marked", "steps", "scored_epoch"} <= set(results)
    for fold in (1, 2):  # each transform arm doubles exactly the fold's training originals
        base = results[(results.arm == "baseline") & (results.fold == fold)].train_files.item()
        for arm in ("rotate", "flip"):
            assert (
                results[(results.arm == arm) & (results.fold == fold)].train_files.item()
                == 2 * base
            )
    for _, files in run_files(out, "rotate"):
        assert set(files.split) == {"train", "scored"}  # nothing chosen: no inner part
        train = files[files.split == "train"]
        copies = train[train.origin == "augmented"]
        assert sorted(copies.source) == sorted(train[train.origin == "original"].file)
        assert copies.file.str.contains("__aug").all()
    assert not (out / "data").exists()  # the copies were made as batches were, never written
    table = (out / "results.md").read_text()
    assert table.count("| tiny | focal |") == 3 and "±" in table
    assert (out / "results.png").stat().st_size > 10_000
    # Ranked by mean macro F1 (from results.csv), then accuracy, then name; two folds are too
    # few for the test behind a suggestion, whatever the gains: nothing is suggested.
    means = results.groupby("arm")[["macro_f1", "accuracy"]].mean()
    ranked = sorted(["rotate", "flip"], key=lambda a: (-means.macro_f1[a], -means.accuracy[a], a))
    assert list(result["ranking"].arm) == ranked
    assert result["suggested"] == "" and "needs at least 3" in table
    assert "trained its whole budget (the baseline's 1 epochs' steps) and was scored" in table
    assert "trained the optimizer steps of the baseline" in table

    # resume: finished runs are read back, not redone
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")}
    study = ["study", "transforms", study_src, "--out", out, "--folds", "2"]
    tiny = ["--weights", "none", "--model", "tiny"]
    proc = run_cli(
        "trainer",
        *study,
        *tiny,
        *("--transforms", "rotate,flip", "--top", "1", "--image-size", "32"),
        *("--epochs", "1", "--batch", "16", "--patience", "1", "--quiet"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "the study cannot tell: no transform's gain over the baseline passes" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")} == stamps
    assert_one_line_error(
        run_cli("trainer", *study, *tiny, "--transforms", "rotate"),
        "other study or data",
        "--overwrite",
    )
