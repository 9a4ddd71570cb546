"""The paper's study as commands, on tiny data (eager Keras: no graph tracing per run)."""
import json
import os

import pandas as pd
import pytest

from conftest import assert_one_line_error, make_folder, run_cli
from trainer import TrainConfig
from trainer.study import study_ablation, study_transforms

TINY = TrainConfig(weights="none", image_size=32, epochs=1, batch=16, eager=True, patience=1)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("study") / "src", {"a": 10, "b": 5, "c": 3})


def run_files(study, arm_slug):
    """The train/validation file lists each fold's run really used."""
    for fold_dir in sorted((study / "runs" / "efficientnet-b0-focal" / arm_slug).iterdir()):
        yield fold_dir.name, pd.read_csv(fold_dir / "files.csv")


def test_transform_study_outputs_and_resume(src, tmp_path):
    out = tmp_path / "st"
    result = study_transforms(src, out, TINY, transforms="rotate,flip", folds=2, top=1,
                              progress=False)
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 6  # (baseline, rotate, flip) x 2 folds
    assert sorted(results.arm.unique()) == ["baseline", "flip", "rotate"]
    assert {"accuracy", "macro_f1", "f1_a", "f1_b", "f1_c", "config"} <= set(results.columns)
    for fold in (0, 1):  # each transform arm doubles exactly the fold's training originals
        base = results[(results.arm == "baseline") & (results.fold == fold)].train_files.item()
        for arm in ("rotate", "flip"):
            assert results[(results.arm == arm) & (results.fold == fold)].train_files.item() == 2 * base
    for fold, files in run_files(out, "rotate"):
        train = files[files.split == "train"]
        copies = train[train.origin == "augmented"]
        assert sorted(copies.source) == sorted(train[train.origin == "original"].file)
        assert all(os.path.exists(out / "data" / fold / "rotate" / f.split("/", 1)[1]) for f in copies.file)
    table = (out / "results.md").read_text()
    assert table.count("| efficientnet-b0 | focal |") == 3 and "±" in table
    assert (out / "results.png").stat().st_size > 10_000
    # Ranked by mean macro F1, then accuracy, then name; only arms above the baseline suggested.
    summary = result["summary"].set_index("arm")
    ranked = sorted(["rotate", "flip"], key=lambda a: (-summary.macro_f1_mean[a],
                                                       -summary.accuracy_mean[a], a))
    assert list(result["ranking"].arm) == ranked
    winners = [a for a in ranked if summary.macro_f1_mean[a] > summary.macro_f1_mean["baseline"]]
    assert result["suggested"] == ",".join(winners[:1])

    # resume: finished runs are read back, not redone
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")}
    proc = run_cli("trainer", "study", "transforms", src, "--out", out, "--transforms",
                   "rotate,flip", "--folds", "2", "--top", "1", "--weights", "none",
                   "--image-size", "32", "--epochs", "1", "--batch", "16", "--eager", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert ("suggested: balance build SRC --out OUT --nmin N --transforms " + result["suggested"]
            if winners else "no transform beat the baseline's macro F1") in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/model.keras")} == stamps
    assert_one_line_error(run_cli("trainer", "study", "transforms", src, "--out", out,
                                  "--transforms", "rotate", "--folds", "2", "--weights", "none"),
                          "different study", "--overwrite")


def test_ablation_never_trains_on_a_validation_image_or_its_copies(src, tmp_path):
    out = tmp_path / "ab"
    summary = study_ablation(src, out, TINY, nmin=8, transforms="rotate,cutout=8", folds=2,
                             progress=False)
    assert list(summary.arm) == ["baseline", "ROS", "ROS + all transforms", "ROS + T"]
    for slug in ("baseline", "ros", "ros+all-transforms", "ros+t"):
        for fold, files in run_files(out, slug):
            train, val = files[files.split == "train"], files[files.split == "validation"]
            assert (val.origin == "original").all()
            assert not set(train.source) & set(val.source), (slug, fold)
            assert not set(train.file) & set(val.file)
            counts = train.label.value_counts().to_dict()
            if slug == "baseline":
                assert (train.origin == "original").all()
            else:  # every class of the fold's training part brought up to N_min (never down)
                originals = train[train.origin == "original"].label.value_counts().to_dict()
                assert counts == {c: max(8, n) for c, n in originals.items()}
            if slug == "ros":  # plain over-sampling: copies are the original files again
                assert set(train.file[train.origin == "augmented"]) <= set(train.file[train.origin == "original"])
    md = (out / "results.md").read_text()
    assert "ROS + T" in md and "macro F1 (mean ± std)" in md
    record = json.loads((out / "study.json").read_text())
    assert record["nmin"] == 8 and record["folds"] == 2


def test_study_user_errors_leave_nothing(src, tmp_path):
    one = make_folder(tmp_path / "one", {"only": 4})
    cases = [
        (["study", "ablation", tmp_path / "missing", "--nmin", "5", "--out", tmp_path / "s"], ["not found"]),
        (["study", "ablation", one, "--nmin", "5", "--out", tmp_path / "s"], ["need at least 2"]),
        (["study", "ablation", src, "--out", tmp_path / "s"], ["--nmin"]),
        (["study", "transforms", src, "--out", tmp_path / "s", "--models", "alexnet"], ["unknown model"]),
        (["study", "transforms", src, "--out", tmp_path / "s", "--transforms", "warp"], ["unknown transform"]),
        (["study", "transforms", src, "--out", tmp_path / "s", "--folds", "30"], ["cannot make 30 folds"]),
        (["study", "transforms", src, "--out", tmp_path / "s", "--folds", "2"], ["ImageNet weights"]),
    ]
    offline = {**os.environ, "KERAS_HOME": str(tmp_path / "keras-home"),  # no cached weights,
               **{v: "http://127.0.0.1:9" for v in ("HTTPS_PROXY", "https_proxy")}}  # no download
    for args, fragments in cases:
        assert_one_line_error(run_cli("trainer", *args, env=offline), *fragments)
    assert not (tmp_path / "s").exists()
