"""Every output through one door: nothing a user wrote is replaced, nothing is silently mixed.

Each test takes the folder hashes before and after, as a careless user would meet the case,
and asserts exit codes, bytes and counts. Training is replaced by a stand-in that writes a
real run folder's record where a test is about the folders, not the model.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    REPO,
    SILENT,
    RunControl,
    as_from_a_terminal,
    assert_one_line_error,
    fake_metrics,
    finished_files,
    gated_env,
    make_folder,
    run_cli,
    textured,
    tree_digest,
    wait_until,
    write_image,
)

from balancer import BuildSettings, build
from balancer.common.errors import BalanceError, UserError
from balancer.common.ownership import (
    STAGING_MARKER,
    Existing,
    claim,
    claim_file,
    staged,
)
from balancer.common.ownership.staging import _new_staging

T = 180  # seconds: a CLI run here that takes longer is hung


# -- 1. one lifecycle: claim, lock, stage, record, complete --------------------------------


def test_fit_never_deletes_a_sibling_it_did_not_make(tmp_path, no_training):
    from trainer.training import fit

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    runs = tmp_path / "runs"
    mine = runs / ".r.old"  # a user's folder with the name the tool once used for itself
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    lookalike = runs / ".r.abc.partial"  # a staging name, but no marker: not provably ours
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine too")
    stale = _new_staging(runs / "r")  # what a killed `train fit --out runs/r` leaves
    (stale / "model.keras").write_bytes(b"half")
    before = {**tree_digest(mine), **tree_digest(lookalike)}
    fit(data, runs / "r", control=SILENT)
    fit(data, runs / "r", existing=Existing.OVERWRITE, control=SILENT)
    assert {**tree_digest(mine), **tree_digest(lookalike)} == before
    assert not stale.exists(), "our own staging folder is removed on the next run"
    assert sorted(p.name for p in runs.iterdir()) == [".r.abc.partial", ".r.old", "r"]
    assert sorted(p.name for p in (runs / "r").iterdir()) == ["metrics.json", "model.keras"]


def test_a_killed_evaluation_never_blocks_overwriting_its_run(tmp_path, no_training):
    from trainer.outputs import RUN
    from trainer.training import fit

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    run = tmp_path / "run"
    fit(data, run, control=SILENT)
    _new_staging(run / "eval-test")  # a killed `train evaluate run test`
    with claim(run, RUN, inputs={}, existing=Existing.OVERWRITE) as c:
        assert c.previous is not None
    fit(data, run, existing=Existing.OVERWRITE, control=SILENT)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "model.keras"]


def test_study_overwrite_refuses_a_users_notes_under_runs_and_data(tmp_path):
    from trainer.outputs import STUDY

    out = tmp_path / "study"
    fold = out / "runs" / "efficientnet-b0-focal" / "baseline" / "fold-1"
    fold.mkdir(parents=True)
    (fold / "model.keras").write_bytes(b"m")
    (fold / "metrics.json").write_text(json.dumps(fake_metrics()))
    write_image(out / "data" / "fold-1" / "rotate" / "a" / "x__aug0_rotate.jpg", textured(8, 8))
    record = {"tool": "balanced-aug", "kind": "study", "settings": {"folds": 2}}
    (out / "study.json").write_text(json.dumps(record))
    for notes in (
        out / "runs" / "notes.txt",
        out / "runs" / "efficientnet-b0-focal" / "baseline" / "notes.txt",
        fold / "notes.txt",
        out / "data" / "notes.txt",
        out / "data" / "fold-1" / "rotate" / "a" / "notes.txt",
    ):
        notes.write_text("mine")
        before = tree_digest(out)
        with (
            pytest.raises(BalanceError, match="never holds"),
            claim(out, STUDY, inputs={}, existing=Existing.OVERWRITE),
        ):
            pass
        assert tree_digest(out) == before
        notes.unlink()
    with claim(out, STUDY, inputs={}, existing=Existing.OVERWRITE) as c:
        c.begin({"settings": {"folds": 3}})
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]


def test_a_replaced_output_keeps_what_appeared_in_it_meanwhile(tmp_path):
    """Staging replaces the claimed folder whole; anything not provably its own stays."""
    from trainer.outputs import RUN

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(fake_metrics()))
    (run / "model.keras").write_bytes(b"old")
    with (
        claim(run, RUN, inputs={}, existing=Existing.OVERWRITE) as c,
        pytest.warns(UserWarning, match="could not prove its own"),
        c.staged() as tmp,
    ):
        (tmp / "model.keras").write_bytes(b"new")
        (tmp / "metrics.json").write_text(json.dumps(fake_metrics()))
        (run / "late.txt").write_text("a user's file, written while the run trained")
    assert (run / "model.keras").read_bytes() == b"new"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert len(kept) == 1 and (kept[0] / "late.txt").read_text().startswith("a user's")
    assert not (kept[0] / STAGING_MARKER).exists() and not (kept[0] / "model.keras").exists()


def test_staging_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(KeyboardInterrupt), staged(tmp_path / "run") as tmp:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_cv_and_study_write_every_file_atomically(tmp_path, no_training, monkeypatch):
    """cv.csv, cv.json (and a study's results) go through the atomic writer."""
    import balancer.common.atomic
    from trainer.crossval import cross_validate
    from trainer.study.run import _write_results

    written = []
    real = balancer.common.atomic._replace_via_temp

    def spy(dst, write):
        written.append(Path(dst).name)
        return real(dst, write)

    monkeypatch.setattr(balancer.common.atomic, "_replace_via_temp", spy)
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    assert {"cv.csv", "cv.json"} <= set(written)
    rows = pd.DataFrame(
        {"arm": ["baseline"] * 2, "fold": [1, 2], "model": "b0", "loss": "focal"}
        | {"accuracy": [0.5, 0.6], "macro_f1": [0.4, 0.5], "f1_a": [0.1, 0.2], "f1_b": [0.3, 0.4]}
    )
    (tmp_path / "s").mkdir()
    _write_results(
        tmp_path / "s", rows, ["a", "b"], {"study": "transforms", "folds": 2, "source": "x"}
    )
    assert {"results.csv", "results.md", "results.png"} <= set(written)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "results.csv",
        "results.md",
        "results.png",
    ]


# -- 2. single-file outputs ----------------------------------------------------------------


def test_single_file_outputs_never_replace_or_land_inside_an_input(tmp_path):
    src = make_folder(tmp_path / "src", {"cat": 3, "dog": 2})
    (tmp_path / "link").symlink_to(src)
    photo = src / "cat" / "cat_000.jpg"
    before = tree_digest(src)
    for target in (
        photo,
        tmp_path / "link" / "cat" / "cat_000.jpg",
        src / "cat" / ".." / "dog" / "new.png",
        tmp_path / "link" / "sheet.png",
    ):
        for extra in ([], ["--overwrite"]):
            proc = run_cli("balancer", "preview", src, "-o", target, "--transforms", "flip", *extra)
            assert_one_line_error(proc, "lies inside the source folder")
    assert tree_digest(src) == before

    plot = tmp_path / "counts.png"
    plot.write_bytes(b"my picture")
    assert_one_line_error(
        run_cli("balancer", "stats", src, "--plot", plot), "exists", "--overwrite"
    )
    assert plot.read_bytes() == b"my picture"
    assert run_cli("balancer", "stats", src, "--plot", plot, "--overwrite", "-q").returncode == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"

    out = tmp_path / "balanced"
    build(src, out, BuildSettings(nmin=3, transforms="flip"), run=ONE)
    reference = tree_digest(out)
    for target in (out / "manifest.csv", out / "cat" / "plot.png", tmp_path / "balance.json"):
        proc = run_cli("balancer", "stats", src, "--plot", target, "--overwrite")
        assert_one_line_error(proc)
        assert "record" in proc.stderr or "an output of balanced-aug" in proc.stderr
    assert tree_digest(out) == reference


def test_predict_csv_is_refused_before_anything_is_predicted(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not read")
    (run / "metrics.json").write_text(json.dumps(fake_metrics()))
    images = make_folder(tmp_path / "images", {"x": 2})
    mine = tmp_path / "predictions.csv"
    mine.write_text("my,old,table\n")
    for target, fragment in (
        (mine, "exists"),
        (run / "p.csv", "lies inside the run folder"),
        (images / "x" / "p.csv", "lies inside the images"),
        (images / "x" / "x_000.jpg", "lies inside the images"),
    ):
        proc = run_cli("trainer", "predict", run, images, "--csv", target, "-q")
        assert_one_line_error(proc, fragment)
    assert mine.read_text() == "my,old,table\n"


def test_claim_file_names_each_refusal(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.raises(BalanceError, match="does not exist"):
        claim_file(tmp_path / "missing" / "x.png", inputs={})
    with pytest.raises(BalanceError, match="is a folder"):
        claim_file(folder, inputs={}, overwrite=True)
    with pytest.raises(BalanceError, match="name of a record"):
        claim_file(tmp_path / "split.json", inputs={}, overwrite=True)
    assert claim_file(tmp_path / "x.png", inputs={"folder": folder}) == tmp_path / "x.png"


def bind_mount(source: Path, target: Path) -> bool:
    target.mkdir()
    ok = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    return ok.returncode == 0


def test_an_output_inside_the_source_through_a_bind_mount_is_refused(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    mounted = tmp_path / "mnt"
    if not bind_mount(src, mounted):
        pytest.skip("bind mounts need privileges this machine does not give")
    try:
        before = tree_digest(src)
        for out in (mounted / "out", mounted, mounted / "a"):
            proc = run_cli("balancer", "build", src, "--out", out, "--nmin", "4", "--overwrite")
            assert_one_line_error(proc, "source folder")
        proc = run_cli("balancer", "stats", src, "--plot", mounted / "a" / "p.png")
        assert_one_line_error(proc, "lies inside")
        assert tree_digest(src) == before
    finally:
        subprocess.run(["umount", str(mounted)], check=False)


# -- 3. inputs that change under a run -----------------------------------------------------


def test_a_source_replaced_during_the_build_stops_it_and_names_the_file(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 6, "b": 2}, size=40, ext=".png")
    out, release = tmp_path / "out", tmp_path / "release"
    args = ["build", src, "--out", out, "--nmin", "30", "--transforms", "rotate", "-j", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from balancer.cli import main; main()", *map(str, args), "-q"],
        cwd=REPO,
        env=gated_env(out, 10, release),  # held after 10 of 60 files: 'b' not yet read
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: finished_files(out) == 10, proc)
    victim = src / "b" / "b_001.png"
    write_image(victim, textured(40, 48, seed=99))  # another photo under the same name
    release.touch()
    _, stderr = proc.communicate(timeout=T)
    assert proc.returncode == 1 and "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "b/b_001.png changed while the build ran" in errors[0]
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    assert not (out / "manifest.csv").exists()


def test_cv_resumes_only_over_the_same_data(tmp_path, no_training):
    from trainer.crossval import cross_validate

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    before = tree_digest(tmp_path / "cv")
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)  # same data: resumed
    assert tree_digest(tmp_path / "cv")["fold-1/metrics.json"] == before["fold-1/metrics.json"]
    victim = data / "b" / "b_000.jpg"
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # edited in place
    with pytest.raises(UserError, match="other settings or data .data_digest was"):
        cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    with pytest.raises(UserError, match="folds was 2, now 3.*--overwrite replaces it"):
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
        cross_validate(data, tmp_path / "cv", folds=3, control=SILENT)
    assert tree_digest(tmp_path / "cv") == before
    cross_validate(data, tmp_path / "cv", folds=3, existing=Existing.OVERWRITE, control=SILENT)
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cv.csv",
        "cv.json",
        "fold-1",
        "fold-2",
        "fold-3",
    ]


def test_study_resumes_only_over_the_same_data(tmp_path):
    from trainer.config import TrainConfig
    from trainer.data import list_folder
    from trainer.outputs import STUDY
    from trainer.study import StudySpec, transform_arms

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    spec = StudySpec(
        kind="transforms",
        arms=tuple(transform_arms({"flip": None})),
        folds=2,
        config=TrainConfig(weights="none"),
    )
    key = spec.key(list_folder(data))
    write_image(data / "a" / "new.jpg", textured(16, 24, seed=7))
    assert spec.key(list_folder(data)) != key
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(
        json.dumps({"tool": "balanced-aug", "kind": "study", "settings": key})
    )
    with (
        pytest.raises(UserError, match="other study or data .data_digest"),
        claim(out, STUDY, inputs={}, existing=Existing.RESUME) as c,
    ):
        c.check_resume(spec.key(list_folder(data)), "study or data")


@pytest.mark.slow
def test_fit_fails_in_one_line_when_its_data_changes_while_it_reads(tmp_path):
    import keras

    from balancer.common.errors import TrainError
    from trainer.config import TrainConfig
    from trainer.data import holdout, list_folder
    from trainer.training import train_run

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=24)
    folder = list_folder(data)
    train, val = holdout(folder.table, 0.25, seed=0)
    victim = Path(train.path.iloc[0])

    class ReplaceAFile(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                write_image(victim, textured(30, 30, seed=123))

    config = TrainConfig(  # no cache: every epoch reads the files again
        model="tiny", weights="none", epochs=3, batch=4, cache="off"
    )
    (tmp_path / "run").mkdir()
    with pytest.raises(TrainError, match=f"{victim.name}.*changed while it was being read"):
        train_run(
            train,
            val,
            folder.class_names,
            config,
            tmp_path / "run",
            control=RunControl(progress=False, callbacks=(ReplaceAFile(),)),
        )


# -- 4. damaged or foreign inputs: one line, never a traceback ------------------------------


def test_a_users_own_manifest_leaves_a_plain_folder_plain(tmp_path):
    from balancer.stats import folder_stats
    from trainer.data import list_folder

    src = make_folder(tmp_path / "src", {"a": 4, "b": 3})
    (src / "manifest.csv").write_text("file_name,text\na/a_000.jpg,a cat\n")  # Hugging Face style
    folder = list_folder(src)
    assert not folder.has_manifest and (folder.table.source == folder.table.file).all()
    stats = folder_stats(src, run=QUIET)
    assert not stats["balanced_folder"] and stats["images"] == 7
    proc = run_cli("balancer", "split", src, "--out", tmp_path / "s", "-q")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda m: m.drop(columns=["source"]), "lacks the column(s) source"),
        (lambda m: pd.concat([m, m.iloc[:1]]), "more than once"),
        (
            lambda m: m.assign(file_name=m.file_name.where(m.index != 0, "../../etc/passwd")),
            "points outside",
        ),
        (lambda m: m.assign(source=m.source.where(m.index != 0, "/etc/passwd")), "points outside"),
    ],
)
def test_a_damaged_manifest_is_one_line_and_never_read_outside(tmp_path, damage, fragment):
    from balancer.manifest import read_manifest

    src = make_folder(tmp_path / "src", {"a": 4, "b": 2})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="flip"), run=ONE)
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    damage(m).to_csv(out / "manifest.csv", index=False)
    with pytest.raises(BalanceError, match=re.escape(fragment)):
        read_manifest(out)
    from balancer.common.errors import TrainError
    from trainer.data import list_folder

    with pytest.raises(TrainError, match=re.escape(fragment)):
        list_folder(out)
    for proc in (
        run_cli("balancer", "preview", out, "--from-manifest", "-o", tmp_path / "p.png"),
        run_cli("balancer", "stats", out),
    ):
        assert_one_line_error(proc, fragment)
    problems = run_cli("balancer", "verify", out, "--replay", "--json").stdout
    assert "Traceback" not in problems
    if "outside" in fragment:
        assert "points outside its folder (not read)" in problems


@pytest.mark.parametrize(
    "model, metrics, fragment",
    [
        (b"", None, "cannot load"),
        (b"PK\x03\x04 truncated", None, "cannot load"),
        (os.urandom(2048), None, "cannot load"),
        (None, "{not json", "is not a readable record"),
        (None, json.dumps({"tool": "balanced-aug", "kind": "run", "class_names": "ab"}), "damaged"),
        (None, json.dumps({**fake_metrics(), "accuracy": "high", "epochs_run": 1.5}), "accuracy"),
        (
            None,
            json.dumps({**fake_metrics(), "config": {"epochs": "many"}}),
            "its config says epochs must be an integer",
        ),
    ],
)
def test_a_damaged_run_folder_is_one_line(tmp_path, model, metrics, fragment):
    from trainer.evaluation import Run

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"x" if model is None else model)
    (run / "metrics.json").write_text(metrics or json.dumps(fake_metrics()))
    with pytest.raises(UserError, match=fragment):
        Run(run).model  # noqa: B018
    if model == b"" or metrics == "{not json":  # and as a user meets it, on the command line
        images = make_folder(tmp_path / "images", {"a": 1, "b": 1})
        assert_one_line_error(run_cli("trainer", "predict", run, images), fragment)


def test_verify_replay_with_a_record_of_wrong_types_is_a_problem_not_a_crash(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 2})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="rotate"), run=ONE)
    record = json.loads((out / "balance.json").read_text())
    for settings, fragment in (
        ({**record["settings"], "quality": "high"}, "settings.quality"),
        ({**record["settings"], "transforms": ["rotate"]}, "settings.transforms"),
        ({**record["settings"], "transforms": {"rotate": "lots"}}, "settings.transforms"),
        ("none", "has no settings"),
    ):
        (out / "balance.json").write_text(json.dumps({**record, "settings": settings}))
        proc = run_cli("balancer", "verify", out, "--replay", "-q")
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot replay: " in proc.stderr and fragment in proc.stderr


def test_preview_from_a_manifest_missing_an_original_row_or_params(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 1})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="flip"), run=ONE)
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    cases = [
        (lambda: (out / "b" / "b_000.jpg").unlink(), "cannot show"),
        (
            lambda: m[m.file_name != "b/b_000.jpg"].to_csv(out / "manifest.csv", index=False),
            "has no row for the original",
        ),
        (lambda: m.assign(params="").to_csv(out / "manifest.csv", index=False), "has no params"),
    ]
    for damage, fragment in cases:
        build(
            src, out, BuildSettings(nmin=4, transforms="flip"), existing=Existing.OVERWRITE, run=ONE
        )
        m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
        damage()
        proc = run_cli(
            "balancer", "preview", out, "--from-manifest", "-o", tmp_path / "p.png", "--rows", "2"
        )
        assert_one_line_error(proc, fragment)
        assert not (tmp_path / "p.png").exists()


# -- 6. no copy is left unchanged at any size -------------------------------------------------


def test_width_and_height_always_change_a_small_image_and_a_dot_is_named(tmp_path):
    from balancer import read_manifest
    from balancer.common.imageio import load

    src = tmp_path / "src"
    for i in range(4):
        write_image(src / "a" / f"{i}.png", textured(12, 20, seed=i))
    write_image(src / "b" / "dot.png", textured(1, 1, seed=9))
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"width=0.3 cannot change 1 of 5 images \(b 1\)"):
        result = build(src, out, BuildSettings(nmin=40, transforms="width,height"), run=ONE)
    assert any(
        "height=0.3 cannot change 1 of 5 images (b 1)" in w for w in result.record["warnings"]
    )
    m = read_manifest(out)
    copies = m[(m.origin == "augmented") & (m.label == "a")]
    assert len(copies) == 36
    for row in copies.itertuples():
        copy = load(out / row.file_name).image
        original = load(src / row.source).image
        assert copy.shape != original.shape, row.file_name  # every copy is resized for real


# -- 7. many classes ------------------------------------------------------------------------


def test_a_thousand_class_confusion_matrix_draws_at_a_bounded_size(tmp_path):
    from balancer.common.opencv import cv2
    from trainer.outputs import MAX_INCHES, plot_confusion

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (1000, 1000))
    plot_confusion(matrix, [f"class {i}" for i in range(1000)], tmp_path / "cm.png")
    image = cv2.imread(str(tmp_path / "cm.png"))
    assert image is not None and max(image.shape[:2]) <= MAX_INCHES * 110 + 1
    assert image.std() > 5  # a picture, not a blank


def test_a_picture_that_fails_never_loses_what_was_written(tmp_path):
    from trainer.outputs import draw_plots

    def fails(path):
        raise MemoryError("no room for the picture")

    def draws(path):
        path.write_bytes(b"png")

    with pytest.warns(UserWarning, match="could not draw confusion_matrix.png .MemoryError"):
        failed = draw_plots(tmp_path, confusion_matrix=fails, curves=draws)
    assert len(failed) == 1 and (tmp_path / "curves.png").read_bytes() == b"png"


# -- 8. settings resolved once --------------------------------------------------------------


def test_configs_are_frozen_and_a_gone_weights_file_only_matters_for_training(tmp_path):
    import dataclasses

    from balancer.common.errors import TrainError
    from trainer.config import TrainConfig
    from trainer.evaluation import Run

    config = TrainConfig(weights="none")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    gone = str(tmp_path / "b0.weights.h5")
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"m")
    (run / "metrics.json").write_text(json.dumps({**fake_metrics(), "config": {"weights": gone}}))
    assert Run(run).config.weights == gone  # the run folder still reads
    with pytest.raises(TrainError, match="weights: no such file"):
        TrainConfig(weights=gone).check_weights()


def test_every_record_names_the_tool_version(tmp_path, no_training):
    from balancer import __version__, split
    from trainer.crossval import cross_validate
    from trainer.training import fit

    src = make_folder(tmp_path / "src", {"a": 4, "b": 4}, size=16)
    build(src, tmp_path / "b", BuildSettings(nmin=4, transforms="flip"), run=ONE)
    split(src, tmp_path / "s", test=0.25, run=ONE)
    cross_validate(src, tmp_path / "cv", folds=2, control=SILENT)
    for record in ("b/balance.json", "s/split.json", "cv/cv.json"):
        assert json.loads((tmp_path / record).read_text())["version"] == __version__, record
    fit(src, tmp_path / "run", control=SILENT)  # the stand-in's record; the real one:
    from balancer.common.ownership import stamp
    from trainer.outputs import RUN

    assert stamp(RUN, {})["version"] == __version__


# -- 9. smaller, same spirit ----------------------------------------------------------------


def test_val_split_keeps_byte_identical_files_on_one_side(tmp_path):
    from trainer.data import grouped_folds, holdout, list_folder

    src = make_folder(tmp_path / "src", {"a": 10, "b": 10}, size=16)
    for i in range(5):  # the same photo saved twice, under two names
        (src / "a" / f"copy_of_{i}.jpg").write_bytes((src / "a" / f"a_{i:03d}.jpg").read_bytes())
    table = list_folder(src).table
    for seed in range(8):
        train, val = holdout(table, 0.3, seed)
        for i in range(5):
            names = {f"a/a_{i:03d}.jpg", f"a/copy_of_{i}.jpg"}
            assert names <= set(train.file) or names <= set(val.file), (seed, i)
    for train, val in grouped_folds(table, 3, seed=0):
        trained = {(src / f).read_bytes() for f in train.file}
        assert not [f for f in val.file if (src / f).read_bytes() in trained]


def test_split_refuses_a_balanced_folder(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 2})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="flip"), run=ONE)
    proc = run_cli("balancer", "split", out, "--out", tmp_path / "s")
    assert_one_line_error(proc, "is a balanced folder", "split the source before balancing")
    assert not (tmp_path / "s").exists()


def test_the_space_check_counts_a_block_per_file(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import balancer.builder as builder

    src = tmp_path / "src"
    tiny = write_image(src / "a" / "0.png", textured(4, 4)).read_bytes()
    for label in ("a", "b"):
        (src / label).mkdir(exist_ok=True)
        for i in range(50):
            (src / label / f"{i}.png").write_bytes(tiny)
    block = os.statvfs(tmp_path).f_frsize
    files = 2 * 300
    assert len(tiny) * files < block * files / 4  # the bytes alone would fit many times over
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(0, 0, block * files - 1))
    with pytest.raises(BalanceError, match="600 files"):
        build(src, tmp_path / "out", BuildSettings(nmin=300, transforms="flip"), run=ONE)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(0, 0, block * files))
    result = build(
        src, tmp_path / "out", BuildSettings(nmin=300, transforms="flip"), dry_run=True, run=ONE
    )
    assert result.record["estimated_bytes"] == block * files
    assert builder.block_size(tmp_path) == block


def test_a_killed_cv_of_another_plan_says_how_to_go_on(tmp_path, no_training):
    from trainer.crossval import cross_validate

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=16)
    cv = tmp_path / "cv"
    cross_validate(data, cv, folds=5, control=SILENT)
    record = json.loads((cv / "cv.json").read_text())
    (cv / "cv.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed
    for fold in ("fold-3", "fold-4"):
        for f in (cv / fold).iterdir():
            f.unlink()
        (cv / fold).rmdir()
    proc = run_cli("trainer", "cv", data, "--out", cv, "--folds", "2", "--weights", "none")
    assert_one_line_error(proc, "folds was 5, now 2", "--overwrite replaces it")


ENDLESS = ["--weights", "none", "--batch", "4"]
CTRL_C = {  # command -> (arguments after DATA and OUT, what the interrupted line says)
    "fit": (
        ["--model", "tiny", "--epochs", "100000", "--patience", "100000"],
        "--resume continues from the last finished epoch",
    ),
    "cv": (
        ["--folds", "2", "--model", "tiny", "--epochs", "100000", "--patience", "100000"],
        "finished runs are kept: run the same command again to go on",
    ),
    "study": (
        ["--folds", "2", "--transforms", "rotate", "--model", "tiny", "--epochs", "100000"],
        "finished runs are kept: run the same command again to go on",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", CTRL_C)
def test_ctrl_c_stops_every_train_command_in_one_line_saying_how_to_go_on(tmp_path, command):
    """A run that cannot end by itself, Ctrl-C at its second epoch (seen in the epoch lines a
    log gets, with their estimate of the time left): exit 130, one line, no traceback, and
    what a later run needs is kept."""
    import signal
    import threading

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=24)
    out = tmp_path / "runs" / "r"
    extra, hint = CTRL_C[command]
    args = [*command.replace("study", "study transforms").split(), data, "--out", out]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from trainer.cli import main; main()",
            *map(str, args),
            *ENDLESS,
            *extra,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,  # SIGINT unblocked, as a terminal's job has it
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    wait_until(lambda: any("epoch 2/100000" in ln for ln in lines), proc)  # training, for sure
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=T)
    reader.join(timeout=T)
    stderr = "".join(lines)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert "interrupted: " in stderr.splitlines()[-1] and hint in stderr.splitlines()[-1]
    second = next(ln for ln in lines if "epoch 2/100000" in ln)
    assert "left" in second and second.count("\n") == 1  # one line, with an estimate
    if command == "fit":  # the staged run folder, holding what --resume needs, and nothing else
        left = sorted(p.name for p in (tmp_path / "runs").iterdir())
        assert len(left) == 1 and left[0].startswith(".r.") and left[0].endswith(".partial")
        assert (tmp_path / "runs" / left[0] / "resume" / "state.json").is_file()
    else:  # the folder is there, marked unfinished, with no finished run in it yet
        record = json.loads(next(out.glob("*.json")).read_text())
        assert record["status"] == "running"
        assert not list(out.rglob("model.keras"))


SWALLOWING = """
import sys, threading, time
from balancer.common.cli import on_interrupt
import typer
try:
    with on_interrupt("what was kept", deadline=1.0):
        if sys.argv[1] == "swallow":  # a library that catches Ctrl-C and goes on
            while True:
                try:
                    print("ready", flush=True)
                    time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        else:  # a thread that never ends would keep the process alive after Ctrl-C
            threading.Thread(target=lambda: threading.Event().wait()).start()
            print("ready", flush=True)
            time.sleep(3600)
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""


@pytest.mark.parametrize("trap", ["swallow", "thread"])
def test_ctrl_c_ends_a_train_command_even_when_a_library_holds_it(trap):
    """What the trainer's commands rely on: after Ctrl-C the process ends within the deadline
    (exit 130, the one line, once), even when the interrupt is swallowed or a thread would
    keep the process alive."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING, trap],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=T)
    assert proc.returncode == 130
    assert stderr.count("interrupted: what was kept") == 1, stderr
