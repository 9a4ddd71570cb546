"""The paper's study as commands, on tiny data and the `tiny` model (the study's logic does not
depend on the architecture; EfficientNet trains in test_trainer)."""

import os

import pandas as pd
import pytest
from helpers import SILENT, assert_one_line_error, make_folder, run_cli, run_process

from trainer import TrainConfig
from trainer.study import StudySpec, study_transforms

pytestmark = pytest.mark.slow  # every test here trains

TINY = TrainConfig(weights="none", image_size=32, epochs=1, batch=16, patience=1)
MODELS = ("tiny",)  # the logic of a study, not an architecture: the three-block CNN


def run_files(study, arm_slug):
    """The train/validation file lists each fold's run really used."""
    for fold_dir in sorted((study / "runs" / "tiny-focal" / arm_slug).iterdir()):
        yield fold_dir.name, pd.read_csv(fold_dir / "files.csv")


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
    proc = run_cli(
        "trainer",
        "study",
        "transforms",
        study_src,
        "--out",
        out,
        "--transforms",
        "rotate,flip",
        "--folds",
        "2",
        "--top",
        "1",
        "--weights",
        "none",
        "--model",
        "tiny",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "suggested: balance build SRC --out OUT --nmin N --transforms " + result["suggested"]
        if winners
        else "the study cannot tell: no transform beats the baseline by more than the noise"
    ) in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")} == stamps
    assert_one_line_error(
        run_cli(
            "trainer",
            "study",
            "transforms",
            study_src,
            "--out",
            out,
            "--transforms",
            "rotate",
            "--folds",
            "2",
            "--weights",
            "none",
            "--model",
            "tiny",
        ),
        "other study or data",
        "--overwrite",
    )


def test_study_user_errors_leave_nothing(study_src, tmp_path):
    one = make_folder(tmp_path / "one", {"only": 4})
    cases = [
        (
            ["study", "ablation", tmp_path / "missing", "--nmin", "5", "--out", tmp_path / "s"],
            ["not found"],
        ),
        (["study", "ablation", one, "--nmin", "5", "--out", tmp_path / "s"], ["need at least 2"]),
        (["study", "ablation", study_src, "--out", tmp_path / "s"], ["--nmin"]),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--model", "alexnet"],
            ["unknown --model"],
        ),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--transforms", "warp"],
            ["unknown transform"],
        ),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--folds", "30"],
            ["cannot make 30 folds"],
        ),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli("trainer", *args), *fragments)
    offline = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras-home"),  # no cached weights,
        **{v: "http://127.0.0.1:9" for v in ("HTTPS_PROXY", "https_proxy")},
    }  # no download; Keras reads its home when imported: a process of its own
    args = ["study", "transforms", study_src, "--out", tmp_path / "s", "--folds", "2"]
    assert_one_line_error(run_process("trainer", *args, env=offline), "ImageNet weights")
    assert not (tmp_path / "s").exists()
