"""What `train` writes and reports, on tiny data (32 px, no ImageNet weights, 1-2 epochs):
the run folder, scores, predictions, cross-validation summaries and pictures."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    SILENT,
    RunControl,
    assert_no_leak,
    assert_one_line_error,
    fake_train_run,
    make_folder,
    run_cli,
    run_process,
    textured,
    write_image,
)

from balancer.common.opencv import cv2
from balancer.common.ownership import (
    Existing,
)
from balancer.common.ownership.staging import _new_staging
from balancer.common.shapes import shape_problems
from trainer import TrainConfig, evaluate, fit, predict
from trainer.models import make_loss
from trainer.records import FoldRow, RunMetrics

FAST = dict(weights="none", image_size=32, epochs=2, batch=16, patience=2, eager=True)


@pytest.fixture(scope="module")
def run(balanced, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "b0"
    fit(balanced, out, TrainConfig(**FAST), control=SILENT)
    return out


@pytest.mark.slow
def test_fit_writes_every_output_with_sensible_values(run, balanced):
    assert sorted(p.name for p in run.iterdir()) == [
        "confusion_matrix.png",
        "curves.png",
        "files.csv",
        "history.csv",
        "metrics.json",
        "model.keras",
    ]
    files = pd.read_csv(run / "files.csv")  # the actual lists trained and validated on
    assert_no_leak(files[files.split == "train"], files[files.split == "validation"])
    assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]  # no staging left
    m = json.loads((run / "metrics.json").read_text())
    assert shape_problems(m, RunMetrics) == []  # every field of the type records.py declares
    assert m["class_names"] == ["a", "b", "c"]
    val = m["data"]["validation"]
    assert val["augmented"] == 0 and val["files"] == sum(val["per_class"].values())
    assert m["data"]["train"]["originals"] + val["originals"] == 21
    # the scores against scikit-learn's on the saved model's own predictions of those files
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    from trainer.evaluation import Run

    rows = files[files.split == "validation"]
    truth = [m["class_names"].index(c) for c in rows.label]
    guess = Run(run).probabilities([str(balanced / f) for f in rows.file]).argmax(1)
    assert m["confusion_matrix"] == confusion_matrix(truth, guess, labels=[0, 1, 2]).tolist()
    assert len(truth) == val["files"] and m["accuracy"] == pytest.approx(
        accuracy_score(truth, guess)
    )
    assert m["macro_f1"] == pytest.approx(
        f1_score(truth, guess, labels=[0, 1, 2], average="macro", zero_division=0)
    )
    assert m["config"]["model"] == "efficientnet-b0" and m["config"]["loss"] == "focal"
    history = pd.read_csv(run / "history.csv")
    assert len(history) == m["epochs_run"] == 2
    assert {"loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1"} <= set(history.columns)
    for png in ("confusion_matrix.png", "curves.png"):
        image = cv2.imread(str(run / png))
        assert image is not None and image.shape[0] > 200 and image.std() > 5


@pytest.mark.slow
def test_evaluate_and_predict_with_the_trained_model(run, balanced):
    test = balanced.parent / "test"
    m = evaluate(run, test)
    assert Path(m["out"]) == run / "eval-test"
    assert sum(v["support"] for v in m["per_class"].values()) == 9
    assert (run / "eval-test" / "metrics.json").exists() and (
        run / "eval-test" / "confusion_matrix.png"
    ).exists()
    (test / "a" / "broken.jpg").write_bytes(b"junk")
    table = predict(run, test, top_k=2)
    assert len(table) == 9 and set(table.predicted) <= {"a", "b", "c"}
    assert table.attrs["skipped"] == [{"path": "a/broken.jpg", "reason": "not a readable image"}]
    assert ((table.probability >= table.probability_2) & (table.probability <= 1)).all()
    assert (table.predicted != table.class_2).all()
    (test / "a" / "broken.jpg").unlink()
    proc = run_cli("trainer", "predict", run, test / "b", "--csv", run.parent / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(run.parent / "p.csv").file) == ["b_000.jpg", "b_001.jpg", "b_002.jpg"]
    assert f"wrote 3 prediction(s) to {run.parent / 'p.csv'}" in proc.stderr and not proc.stdout
    proc = run_cli("trainer", "predict", run, test / "b", "--json")
    assert [row["file"] for row in json.loads(proc.stdout)] == [
        "b_000.jpg",
        "b_001.jpg",
        "b_002.jpg",
    ]
    link = run.parent / "link.jpg"  # a link named directly: what it points to is read
    link.symlink_to(test / "b" / "b_001.jpg")
    assert list(predict(run, link).file) == ["link.jpg"]
    (run.parent / "dangling.jpg").symlink_to(run.parent / "gone.jpg")
    os.mkfifo(run.parent / "pipe.jpg")
    for name, why in (("dangling.jpg", "a symbolic link to nothing"), ("pipe.jpg", "a FIFO")):
        proc = run_cli("trainer", "predict", run, run.parent / name)
        assert_one_line_error(proc, f"{name} is not an image file ({why}")


def test_focal_loss_is_keras_and_balanced_alpha_favours_rare_classes():
    import keras

    y = np.eye(3, dtype="float32")[[0, 1, 2, 2]]
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8], [0.5, 0.3, 0.2]], "float32")
    ours = float(make_loss(TrainConfig(), [10, 10, 10])(y, p))
    expected = float(np.mean(np.sum(-0.25 * y * (1 - p) ** 2 * np.log(p), axis=1)))
    assert ours == pytest.approx(expected, rel=1e-5)
    assert ours == pytest.approx(
        float(keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)(y, p))
    )
    balanced = make_loss(TrainConfig(alpha="balanced"), [80, 15, 5])
    rare, common = np.eye(3, dtype="float32")[[2]], np.eye(3, dtype="float32")[[0]]
    same_p = np.full((1, 3), 1 / 3, "float32")
    assert float(balanced(rare, same_p)) > 10 * float(balanced(common, same_p))
    ce = make_loss(TrainConfig(loss="ce"), [1, 1, 1])
    assert float(ce(y, p)) == pytest.approx(float(np.mean(-np.log(p[y == 1]))), rel=1e-5)


@pytest.mark.slow
def test_cv_cli_grouped_folds_and_summary(balanced, tmp_path):
    args = ["cv", balanced, "--folds", "2", "--out", tmp_path / "cv", "--model", "tiny"]
    args += ["--weights", "none", "--image-size", "32", "--epochs", "1", "--batch", "16"]
    proc = run_cli(
        "trainer", *args, "--json"
    )  # progress on: Keras' epoch lines must not reach stdout
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    for k in (1, 2):  # in a log: a line per epoch, saying which fold it is
        assert re.search(
            rf"^fold {k}/2: epoch 1/1 \(\d+ s\), val F1 [01]\.\d{{3}}$", proc.stderr, re.M
        )
    result = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [shape_problems(row, FoldRow) for row in result["folds"]] == [[], []]
    assert printed["macro_f1"] == result["macro_f1"]
    assert [f["fold"] for f in result["folds"]] == [1, 2] and result["grouped_by_source"]
    assert sum(f["validation_files"] for f in result["folds"]) == 21  # every original once
    for k in (1, 2):
        m = json.loads((tmp_path / "cv" / f"fold-{k}" / "metrics.json").read_text())
        assert m["data"]["validation"]["augmented"] == 0
    assert result["macro_f1"]["mean"] == pytest.approx(
        np.mean([f["macro_f1"] for f in result["folds"]])
    )

    # resumable like a study: a finished fold is read back, a missing one trained again

    stamp = (tmp_path / "cv" / "fold-1" / "model.keras").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "cv" / "fold-2")

    _new_staging(tmp_path / "cv" / "fold-2")  # what a killed fold leaves
    args.append("--quiet")
    proc = run_cli("trainer", *args)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cv" / "fold-1" / "model.keras").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cv.csv",
        "cv.json",
        "fold-1",
        "fold-2",
    ]
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"] == result["folds"]
    assert_one_line_error(
        run_cli("trainer", *args[:-1], "--epochs", "2", "--quiet"), "other settings", "--overwrite"
    )


@pytest.mark.slow
def test_val_folder_frozen_base_fine_tune_and_skipped_files(balanced, tmp_path):
    test = balanced.parent / "test"
    data = make_folder(tmp_path / "data", {"a": 6, "b": 6, "c": 6}, size=36)  # not test's images
    (data / "b" / "truncated.jpg").write_bytes((data / "b" / "b_000.jpg").read_bytes()[:300])
    # A learning rate so high that the best epoch is the first, before fine-tuning starts.
    config = TrainConfig(
        **{
            **FAST,
            "epochs": 2,
            "eager": True,
            "freeze_base": True,
            "fine_tune_epochs": 2,
            "cache": "on",
            "lr": 3.0,
            "patience": 5,
        }
    )
    m = fit(data, tmp_path / "run", config, val=test, control=SILENT)
    assert m["data"]["validation"]["files"] == 9 and m["data"]["train"]["files"] == 18
    assert m["skipped"] == [
        {"path": "b/truncated.jpg", "reason": "truncated JPEG (no end-of-image marker)"}
    ]
    assert m["epochs_run"] == 4  # two with the base frozen, two fine-tuning it
    files = pd.read_csv(tmp_path / "run" / "files.csv")
    assert set(files[files.split == "validation"].file) == {
        f"{c}/{c}_{i:03d}.jpg" for c in "abc" for i in range(3)
    }
    # The saved model is the best epoch over both phases, the one metrics.json names.
    import keras

    from trainer.evaluation import Run

    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert m["best_epoch"] == int(history.epoch[history.val_f1.idxmax()]) <= 2
    val = files[files.split == "validation"]
    probs = Run(tmp_path / "run").probabilities([str(test / f) for f in val.file])
    names = sorted(set(val.label))
    f1 = keras.metrics.F1Score(average="macro")
    f1.update_state(np.eye(len(names))[[names.index(c) for c in val.label]], probs)
    assert abs(float(f1.result()) - history.val_f1.max()) < 1e-4


def test_weights_from_a_local_file_and_from_keras_own_cache_files(tmp_path, monkeypatch):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from trainer.models import build_model

    base = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    path = tmp_path / "b0_notop.weights.h5"
    base.save_weights(path)
    model = build_model(TrainConfig(weights=str(path), image_size=32), 3)
    loaded = model.get_layer("efficientnetb0").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, base.get_weights(), strict=False))
    # The file Keras downloads for --weights imagenet (legacy HDF5), given as --weights PATH
    cache = tmp_path / "keras-home" / "models"
    cache.mkdir(parents=True)
    with h5py.File(cache / "efficientnetb0_notop.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    model = build_model(
        TrainConfig(weights=str(cache / "efficientnetb0_notop.h5"), image_size=32), 3
    )
    loaded = model.get_layer("efficientnetb0").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, base.get_weights(), strict=False))
    some = "efficientnet-b0,efficientnet-b1,vgg16"  # Keras' code runs for each: a few here
    listing = run_process(
        "trainer",
        "weights",
        "--model",
        some,
        "--json",
        env={**os.environ, "KERAS_HOME": str(cache.parent)},
    )
    rows = {r["model"]: r for r in json.loads(listing.stdout)}
    assert rows["efficientnet-b0"]["present"] and not rows["efficientnet-b1"]["present"]
    assert rows["vgg16"]["file"] == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert rows["efficientnet-b0"]["path"] == str(cache / "efficientnetb0_notop.h5")
    assert_one_line_error(run_cli("trainer", "weights", "--model", "tiny"), "no ImageNet weights")
    proc = run_cli("trainer", "fit", tmp_path, "--weights", str(tmp_path / "missing.h5"))
    assert_one_line_error(proc, "--weights: no such file")


@pytest.mark.slow
def test_fit_with_a_schedule_class_weights_tensorboard_and_your_callback(tmp_path):
    import keras

    data = make_folder(tmp_path / "data", {"a": 8, "b": 4}, size=32)
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(
                (epoch, float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            )

    config = TrainConfig(
        **{**FAST, "epochs": 2, "lr": 0.01, "model": "tiny", "eager": False},
        lr_schedule="cosine",
        warmup_epochs=1,
        class_weight="balanced",
    )
    m = fit(
        data,
        tmp_path / "run",
        config,
        callbacks=[Count()],
        control=RunControl(progress=False, tensorboard=True),
    )
    assert [e for e, _ in seen] == [0, 1]
    assert seen[0][1] == pytest.approx(0.01, rel=1e-3)  # warmed up by the end of epoch 1
    assert seen[1][1] < 1e-6  # then decayed to 0
    assert m["config"]["class_weight"] == "balanced" and m["config"]["lr_schedule"] == "cosine"
    logs = tmp_path / "run" / "logs"
    assert any("tfevents" in p.name for p in logs.rglob("*"))
    fit(data, tmp_path / "run", config, control=SILENT, existing=Existing.OVERWRITE)  # logs: ours
    assert not (tmp_path / "run" / "logs").exists()


def test_a_thousand_class_confusion_matrix_draws_at_a_bounded_size(tmp_path):
    from balancer.common.opencv import cv2
    from trainer.outputs import MAX_INCHES, plot_confusion

    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (1000, 1000))
    plot_confusion(matrix, [f"class {i}" for i in range(1000)], tmp_path / "cm.png")
    image = cv2.imread(str(tmp_path / "cm.png"))
    assert image is not None and max(image.shape[:2]) <= MAX_INCHES * 110 + 1
    assert image.std() > 5  # a picture, not a blank


def test_a_class_missing_from_validation_is_named(recwarn):
    from trainer.training import absent_classes

    train = pd.DataFrame({"label": ["a", "a", "b", "c"], "origin": "original"})
    val = pd.DataFrame({"label": ["a", "b"], "origin": "original"})
    assert absent_classes(val, ["a", "b", "c"], train) == [
        "class 'c' has no validation image (1 original(s) in all, all in training): "
        "its F1 is not measured and counts as 0 in macro F1"
    ]
    assert any("class 'c'" in str(w.message) for w in recwarn)


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
    c = s["per_class"]["c"]  # absent: nothing measured any of its scores
    assert (c["precision"], c["recall"], c["f1"], c["support"], c["predicted"]) == (
        None,
        None,
        None,
        0,
        0,
    )
    # by hand: a has 2 of 3 predictions right (precision 2/3), b 1 of 1
    assert s["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert s["per_class"]["b"]["precision"] == 1.0 and s["per_class"]["a"]["predicted"] == 3
    taken = scores(np.array([0, 1]), np.array([2, 2]), ["a", "b", "c"])["per_class"]
    # c was predicted twice with no image of it: still no measured score, and the count says why
    assert (taken["c"]["precision"], taken["c"]["predicted"]) == (None, 2)
    # a and b were never predicted: 0 of 0 is no precision; their recall (0 of 1) is measured
    assert taken["a"]["precision"] is None and taken["a"]["recall"] == 0.0
    assert "over 3 classes (no image of c: each counted as 0)" in summary(s)
    assert "  c " not in summary(s)


def test_resize_modes_in_the_trainer_and_as_preview_shows_them(tmp_path):
    import numpy as np

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


def test_each_epoch_line_shows_that_epochs_own_time(monkeypatch, capsys):
    """A scripted clock: epoch 1 takes 30 s (it traces the step), epoch 2 5 s. The lines say
    30 s and 5 s (adding up to the 35 s that passed) and estimate from the latest epoch."""
    import trainer.control as control

    clock = iter([100.0, 130.0, 130.0, 135.0])
    monkeypatch.setattr(control.time, "monotonic", lambda: next(clock))
    report = control.epoch_report(3, label="fold 1/2: ")
    for epoch, f1 in ((0, 0.25), (1, 0.5)):
        report.on_epoch_begin(epoch)
        report.on_epoch_end(epoch, {"val_f1": f1})
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "fold 1/2: epoch 1/3 (30 s), val F1 0.250, at most ~60 s left at this epoch's pace",
        "fold 1/2: epoch 2/3 (5 s), val F1 0.500, at most ~5 s left at this epoch's pace",
    ]


def test_automatic_lr_and_batch_are_chosen_from_the_weights_and_the_datas_size(
    tmp_path, monkeypatch
):
    """By hand: from scratch 1e-3, from ImageNet or a file 1e-4; the batch the largest power
    of 2 giving 30 steps an epoch, between 8 and 128; a value given is kept. fit records
    what it chose (the config train_run gets)."""
    import trainer.training as training
    from trainer.config import auto_batch

    assert [auto_batch(n) for n in (5, 479, 480, 1066, 3839, 3840, 10**6)] == [
        8, 8, 16, 32, 64, 128, 128,
    ]  # fmt: skip
    scratch = TrainConfig(weights="none").resolved(1066)
    assert (scratch.lr, scratch.batch) == (1e-3, 32)
    assert TrainConfig().resolved(1066).lr == 1e-4  # ImageNet: fine-tuning
    assert TrainConfig(weights="none", lr=0.05, batch=7).resolved(10**6).batch == 7
    with pytest.raises(ValueError, match="resolved"):
        _ = TrainConfig().rate
    seen = []

    def capture(parts, class_names, config, folder, **kwargs):
        seen.append(config)
        return fake_train_run(parts, class_names, config, folder)

    monkeypatch.setattr(training, "train_run", capture)
    data = make_folder(tmp_path / "data", {"a": 300, "b": 200}, size=8)
    fit(data, tmp_path / "run", TrainConfig(model="tiny", weights="none"), control=SILENT)
    assert (seen[0].lr, seen[0].batch) == (1e-3, 16)  # 500 files: 31 steps of 16


def test_a_model_that_predicts_one_class_is_said_to_have_collapsed(recwarn):
    """The metric counts the classes predicted at least once (padding, weight 0, left out);
    three epochs running of one class on the validation part give one line, once."""
    import warnings

    from trainer.callbacks import collapse_watch
    from trainer.compiler import predicted_classes

    metric = predicted_classes(4)
    probabilities = np.eye(4)[[0, 0, 2, 3]]
    metric.update_state(None, probabilities, sample_weight=np.array([1, 1, 1, 0.0]))
    assert float(metric.result()) == 2.0  # classes 0 and 2; class 3 was padding
    metric.reset_state()
    assert float(metric.result()) == 0.0
    config = TrainConfig(weights="none").resolved(300)  # batch 8
    watch = collapse_watch(config, label="fold 2/5: ")
    watch.on_train_begin()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for epoch, seen in enumerate([1, 1, 3, 1, 1, 1, 1, 1]):
            watch.on_epoch_end(epoch, {"val_classes_predicted": seen, "classes_predicted": 4})
        stuck = collapse_watch(config)  # training predicts one class too: a collapsed model
        stuck.on_train_begin()
        for epoch in range(3):
            stuck.on_epoch_end(epoch, {"val_classes_predicted": 1, "classes_predicted": 1})
    assert [str(w.message) for w in said] == [
        "fold 2/5: validation is predicted as a single class for 3 epochs running (epochs "
        "4-6; lr 0.001, batch 8) while training predicts 4: from scratch, BatchNorm's moving "
        "statistics can lag for a few hundred steps, so give --patience enough epochs; if it "
        "lasts, try a smaller --batch, another --lr, more --epochs, or --class-weight balanced",
        "validation is predicted as a single class for 3 epochs running (epochs 1-3; lr "
        "0.001, batch 8) and so is training: the model has collapsed onto one class. Try a "
        "smaller --batch, another --lr, more --epochs, or --class-weight balanced",
    ]
