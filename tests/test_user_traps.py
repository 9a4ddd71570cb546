"""What careful users trip on: scale-aware transforms, leak-proof defaults, honest numbers."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import (
    ONE,
    REPO,
    assert_one_line_error,
    make_folder,
    run_cli,
    run_process,
    textured,
    write_image,
)


def test_build_stats_and_preview_warn_when_magnitudes_do_not_suit_the_images(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    expected = (
        "warning: crop=200 is as large as the image for 5 of 5 images (a 3, b 2)",
        "warning: cutout=70 can cover more than half of the image for 5 of 5 images",
    )
    build = run_cli("balancer", "build", src, "--out", tmp_path / "out", "--nmin", "4", "--quiet")
    stats = run_cli("balancer", "stats", src)
    preview = run_cli("balancer", "preview", src, "-o", tmp_path / "p.png")
    for proc in (build, stats, preview):
        assert proc.returncode == 0, proc.stderr
        for line in expected:
            assert (
                line in proc.stderr
                if proc is not preview
                else line.split(" for ")[0] in proc.stderr
            )
    record = json.loads((tmp_path / "out" / "balance.json").read_text())
    assert len(record["warnings"]) == 2
    m = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    crops = [json.loads(p) for p in m.params[m.origin == "augmented"] if '"height"' in p]
    assert crops and all((c["height"], c["width"]) == (28, 36) for c in crops)
    quiet = run_cli(
        "balancer",
        "build",
        src,
        "--out",
        tmp_path / "out2",
        "--nmin",
        "4",
        "--transforms",
        "crop=0.8,cutout=0.25,rotate",
        "--quiet",
    )
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_macro_f1_is_over_every_class_as_keras_counts_it_and_names_the_absent():
    import keras
    import numpy as np

    from trainer.evaluation import scores, summary

    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 0, 1, 0])
    s = scores(y_true, y_pred, ["a", "b", "c"])
    assert s["absent_classes"] == ["c"]
    assert abs(s["macro_f1"] - (0.8 + 2 / 3 + 0) / 3) < 1e-9  # c: nothing to score, counts 0
    f1 = keras.metrics.F1Score(average="macro")  # what early stopping watches
    f1.update_state(np.eye(3)[y_true], np.eye(3)[y_pred])
    assert abs(float(f1.result()) - s["macro_f1"]) < 1e-6
    assert s["per_class"]["c"]["f1"] is None and s["per_class"]["c"]["recall"] is None
    assert "over 3 classes (no image of c: each counted as 0)" in summary(s)
    assert "  c " not in summary(s)


def test_val_split_holds_out_the_asked_fraction_of_each_class():
    from trainer.data import holdout

    table = pd.DataFrame(
        {
            "file": [f"a/{i}" for i in range(10)] + [f"b/{i}" for i in range(5)],
            "label": ["a"] * 10 + ["b"] * 5,
            "origin": "original",
        }
    )
    table["source"], table["path"] = table.file, table.file
    for fraction, expected in (
        (0.4, {"a": 4, "b": 2}),
        (0.2, {"a": 2, "b": 1}),
        (0.9, {"a": 9, "b": 4}),
    ):
        train, val = holdout(table, fraction, seed=0)
        assert val.label.value_counts().to_dict() == expected
        assert not set(train.source) & set(val.source) and len(train) + len(val) == 15


def test_a_balanced_folder_without_its_manifest_is_grouped_by_name(tmp_path):
    import warnings

    from balancer import BuildSettings, build
    from trainer.data import holdout, list_folder

    src = make_folder(tmp_path / "src", {"a": 8, "b": 3})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=8, transforms="flip"), run=ONE)
    (out / "manifest.csv").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = list_folder(out)
    assert any("looks balanced but has no manifest.csv" in str(w.message) for w in caught)
    assert (folder.table.origin == "augmented").sum() == 5
    train, val = holdout(folder.table, 0.4, seed=1)
    assert set(val.origin) == {"original"}
    assert not set(train.source) & set(val.source)
    copies_of_val = [
        f for f in train.file if any(f.startswith(v.rsplit(".", 1)[0] + "__aug") for v in val.file)
    ]
    assert copies_of_val == []


@pytest.mark.slow
def test_fit_refuses_validation_data_that_is_also_training_data(tmp_path):
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4})
    val = tmp_path / "val"
    for i, label in enumerate("aabb"):
        write_image(val / label / f"v{i}.jpg", textured(32, 40, seed=500 + i))
    (val / "b" / "v3.jpg").write_bytes((data / "a" / "a_001.jpg").read_bytes())
    for args, fragment in (
        ([data, "--val", data], "overlaps the data folder"),
        ([data, "--val", data / "a"], "overlaps the data folder"),
        ([data, "--val", val], "1 validation image(s) are also in the training data"),
    ):
        proc = run_cli("trainer", "fit", *args, "--out", tmp_path / "run", "--weights", "none")
        assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


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


def test_json_and_help_conventions(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    for tool, prog in (("balancer", "balance"), ("trainer", "train")):
        version = subprocess.run(
            [sys.executable, "-m", tool, "--version"], capture_output=True, text=True, cwd=tmp_path
        )
        assert version.returncode == 0 and version.stdout.startswith(f"{prog} 0."), version.stderr
        short = run_cli(tool, "-h")
        assert short.returncode == 0 and "Usage:" in short.stdout
    for command in ("build", "stats", "preview", "split", "verify", "transforms"):
        help_text = run_cli("balancer", command, "-h").stdout
        assert "Example:" in help_text and "{" not in help_text.splitlines()[0], command
        assert "--quiet" in help_text, command
    assert "NAME=COUNT" in run_cli("balancer", "build", "-h").stdout
    for command in ("fit", "cv", "evaluate", "predict"):
        help_text = run_cli("trainer", command, "-h").stdout
        assert "Example:" in help_text and "--quiet" in help_text, command
    assert "--val-split" not in run_cli("trainer", "cv", "-h").stdout
    proc = run_cli(
        "balancer", "build", src, "--out", tmp_path / "o", "--nmin", "4", "--json", "-j", "1"
    )
    assert json.loads(proc.stdout)["counts"]["b"]["after"] == 4
    for args in (["stats", src], ["verify", tmp_path / "o"], ["transforms"]):
        assert json.loads(run_cli("balancer", *args, "--json").stdout)


def test_read_manifest_types_and_replay_takes_what_it_gives(tmp_path):
    import numpy as np

    from balancer import BuildSettings, build, read_manifest, replay
    from balancer.common.imageio import encode, load

    src = make_folder(tmp_path / "src", {"a": 3, "b": 1})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=3, transforms="rotate,flip"), run=ONE)
    m = read_manifest(out)
    assert "transform" not in m.columns and callable(m.transform)  # the pandas method
    assert str(m.seed.dtype) == "Int64" and m.seed[m.origin == "original"].isna().all()
    row = m[m.origin == "augmented"].iloc[0]
    assert isinstance(row.params, dict) and isinstance(row.seed, (int, np.integer))
    image = load(src / row.source).image
    raw = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    text = raw.params[raw.file_name == row.file_name].item()
    for params in (row.params, text):  # the dict read_manifest gives, or the CSV's JSON text
        assert (
            encode(replay(image, row.augmentation, params), "jpeg")
            == (out / row.file_name).read_bytes()
        )


def test_resize_modes_in_the_trainer_and_as_preview_shows_them(tmp_path):
    import numpy as np
    from helpers import textured, write_image

    from balancer.common.opencv import cv2
    from balancer.preview import as_trained
    from trainer.config import TrainConfig
    from trainer.pipeline import Batching, ImageBatches

    path = write_image(tmp_path / "wide.png", textured(20, 40, seed=3))  # 20 high, 40 wide
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    seen = {}
    for mode in ("stretch", "crop", "pad"):
        seen[mode] = ImageBatches(
            [path], None, Batching(n_classes=2, size=32, batch=1, resize=mode)
        )[0][0][0]
        preview = as_trained(mode, 32)(rgb)
        assert seen[mode].shape == preview.shape == (32, 32, 3)
        assert np.array_equal(seen[mode], preview), mode  # the preview is what trains
    assert (seen["pad"][:8] == 0).all() and (seen["pad"][-8:] == 0).all()  # black bars
    assert seen["pad"][8:24].mean() > 20
    assert not np.allclose(seen["crop"], seen["stretch"], atol=5)
    with __import__("pytest").raises(Exception, match="unknown resize"):
        TrainConfig(resize="squash")


def test_preview_writes_the_format_its_name_says_and_study_titles_name_nmin_and_t(tmp_path):
    from trainer.study import study_title

    src = make_folder(tmp_path / "src", {"a": 2, "b": 2})
    for name, magic in (("sheet.jpg", b"\xff\xd8\xff"), ("sheet.png", b"\x89PNG")):
        proc = run_cli(
            "balancer", "preview", src, "-o", tmp_path / name, "--quiet", "--transforms", "rotate"
        )
        assert proc.returncode == 0 and (tmp_path / name).read_bytes()[: len(magic)] == magic
    settings = {
        "folds": 3,
        "nmin": 100,
        "arms": [{"name": "ROS + T", "transforms": {"crop": 24, "rotate": None}}],
    }
    assert (
        study_title("ablation", settings) == "study: ablation, 3 folds, N_min 100, T = crop,rotate"
    )


def test_pictures_take_the_format_their_name_says_and_thin_classes_are_named(tmp_path):
    from helpers import ONE, assert_one_line_error

    from balancer import BuildSettings, build

    src = make_folder(tmp_path / "src", {"a": 6, "b": 2})
    for name, magic in (("c.svg", b"<?xml"), ("c.pdf", b"%PDF"), ("c.jpg", b"\xff\xd8")):
        proc = run_cli("balancer", "stats", src, "--plot", tmp_path / name, "-q")
        assert proc.returncode == 0 and (tmp_path / name).read_bytes()[: len(magic)] == magic
    assert_one_line_error(run_cli("balancer", "stats", src, "--plot", tmp_path / "c.gif"), ".gif")
    assert_one_line_error(
        run_cli("balancer", "preview", src, "-o", tmp_path / "s.tiff"), "ends in .png or .jpg"
    )
    assert not (tmp_path / "s.tiff").exists() and not (tmp_path / "c.gif").exists()
    result = build(src, tmp_path / "out", BuildSettings(nmin=40, transforms="flip"), run=ONE)
    assert any(
        "class 'b' has 2 original(s) for 38 copies (each reused about 19 times)" in w
        for w in result.record["warnings"]
    )
    assert (
        repr(result) == f"BuildResult(out={str(tmp_path / 'out')!r}, files=80, classes=2, written)"
    )


def test_every_way_in_shares_one_error_door(tmp_path):
    """The tools' error door is their app, not a wrapper around the console script: a run in
    this process (typer's CliRunner, as the error tables use) and one in a new process print
    the same line and exit with the same code; output into a closed pipe ends quietly."""
    missing = tmp_path / "missing"
    for args, code, line in (
        (["build", missing, "-o", tmp_path / "o", "--nmin", "3"], 1, "source folder not found"),
        (["build", tmp_path, "-o", tmp_path / "o", "--nmin", "x"], 2, "Invalid value for '--nmin'"),
    ):
        inside, outside = run_cli("balancer", *args), run_process("balancer", *args)
        assert inside.returncode == outside.returncode == code
        assert inside.stderr == outside.stderr and inside.stderr.startswith(f"error: {line}")
    assert run_cli("trainer", "evaluate", missing, missing).stderr == (
        run_process("trainer", "evaluate", missing, missing).stderr
    )
    read, write = os.pipe()
    os.close(read)  # `balance transforms | head -0`: the reader is gone before the first byte
    proc = subprocess.run(
        [sys.executable, "-c", "from balancer.cli import main; main()", "transforms"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    os.close(write)
    assert (proc.returncode, proc.stderr) == (1, "")
