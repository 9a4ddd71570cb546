"""Honest across folds: the same class set everywhere, balancing inside each fold's training
part, and a word wherever a fold's validation lacks a class. Training is a stand-in that
records what it was given and writes a run folder's record."""

import json
from functools import partial

import pandas as pd
import pytest
from helpers import (
    MODELS,
    ONE,
    SILENT,
    TINY,
    RunControl,
    assert_no_leak,
    assert_one_line_error,
    make_folder,
    run_cli,
    run_files,
    textured,
    write_image,
    write_metrics,
)

from balancer import BuildSettings, build
from trainer import grouped_folds, holdout, list_folder
from trainer.balancing import Balancing
from trainer.study import StudySpec, run_study

seen: list = []


def fake_train_run(parts, class_names, config, folder, **kwargs):
    train, val = parts.train, parts.final
    seen.append((train.copy(), val.copy(), parts.select))
    from trainer.evaluation import scores

    y = [class_names.index(c) for c in val.label]
    metrics = scores(y, y, class_names)  # perfect predictions
    chosen = {} if parts.select is None else {"selection": {"files": len(parts.select)}}
    metrics.update(
        tool="balanced-aug",
        kind="run",
        config={"weights": "none"},
        epochs_run=1,
        scored_epoch=1,
        data={"train": {"files": len(train)}, "validation": {"files": len(val)}, **chosen},
    )
    (folder / "model.keras").write_bytes(b"model")
    return write_metrics(folder, metrics)


@pytest.fixture
def recorded(monkeypatch):
    import trainer.crossval

    seen.clear()
    monkeypatch.setattr(trainer.crossval, "train_run", fake_train_run)
    return seen


def test_cv_balances_each_folds_training_part_from_its_own_originals(tmp_path, recorded):
    from trainer.crossval import cross_validate

    src = make_folder(tmp_path / "src", {"a": 12, "b": 6, "c": 3}, size=24)
    result = cross_validate(
        src,
        tmp_path / "cv",
        folds=3,
        control=SILENT,
        balance=Balancing(nmin=10, transforms="flip,rotate"),
    )
    assert len(recorded) == 3
    every = set(list_folder(src).table.file)
    for train, val, select in recorded:
        originals = train[train.origin == "original"]
        copies = train[train.origin == "augmented"]
        counts = train.label.value_counts().to_dict()
        assert counts == {c: max(10, n) for c, n in originals.label.value_counts().items()}
        assert set(copies.source) <= set(originals.file)  # copies of training originals only
        assert not set(copies.source) & set(val.file) and (val.origin == "original").all()
        # the epoch is chosen on originals carved from the fold's training part before any
        # copy was made: none of them, nor a copy of one, trains or is scored
        assert (select.origin == "original").all() and len(select)
        assert not set(select.file) & (set(train.source) | set(val.file))
        assert set(select.file) | set(originals.file) | set(val.file) == every
    assert result["settings"]["balance"] == {
        "nmin": 10,
        "transforms": {"flip": None, "rotate": 0.125},
    }
    # the copies were never written: each is made from its original with its batch
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cv.csv",
        "cv.json",
        "fold-1",
        "fold-2",
        "fold-3",
    ]
    again = cross_validate(
        src,
        tmp_path / "cv",
        folds=3,
        control=SILENT,
        balance=Balancing(nmin=10, transforms="flip,rotate"),
    )
    assert again["folds"] == result["folds"] and len(recorded) == 3  # resumed: nothing retrained


def test_cv_that_chooses_nothing_has_no_inner_part_and_trains_on_every_training_original(
    tmp_path, recorded
):
    """--keep last (a fixed number of epochs): nothing is chosen, so nothing is held out."""
    from trainer import TrainConfig
    from trainer.crossval import cross_validate

    src = make_folder(tmp_path / "src", {"a": 9, "b": 6}, size=24)
    config = TrainConfig(model="tiny", weights="none", keep="last")
    result = cross_validate(src, tmp_path / "cv", config, folds=3, control=SILENT)
    every = set(list_folder(src).table.file)
    for train, val, select in recorded:
        assert select is None and set(train.file) == every - set(val.file)
    assert result["epoch_rule"].startswith("the last epoch")
    assert [f["selection_files"] for f in result["folds"]] == [0, 0, 0]


def test_cv_of_a_balanced_folder_says_its_folds_are_not_balanced(tmp_path, recorded):
    from trainer.crossval import cross_validate

    src = make_folder(tmp_path / "src", {"a": 12, "b": 5}, size=24)
    out = tmp_path / "balanced"
    build(src, out, BuildSettings(nmin=12, transforms="flip"), run=ONE)
    with pytest.warns(UserWarning, match=r"no longer balanced \(class '.*': \d+/\d+/\d+ training"):
        cross_validate(out, tmp_path / "cv", folds=3, control=SILENT)


def test_a_fold_without_a_class_counts_it_as_0_and_says_so(tmp_path, recorded):
    from trainer.crossval import cross_validate

    src = make_folder(tmp_path / "src", {"a": 6, "b": 6, "c": 2}, size=24)
    result = cross_validate(src, tmp_path / "cv", folds=3, control=SILENT)
    lacking = [f for f in result["folds"] if f["absent_classes"]]
    assert lacking and all(f["absent_classes"] == "c" for f in lacking)
    for f in result["folds"]:  # perfect predictions: 1 over the classes there, 0 for c
        assert f["macro_f1"] == pytest.approx(2 / 3 if f["absent_classes"] else 1.0)
    table = pd.read_csv(tmp_path / "cv" / "cv.csv", keep_default_na=False)
    assert set(table.absent_classes) == {"c", ""}


def test_a_studys_class_with_no_image_in_a_fold_is_missing_not_0():
    from trainer.study import results_markdown, summarize

    results = pd.DataFrame(
        [
            {
                "model": "b0",
                "loss": "focal",
                "arm": "baseline",
                "fold": 1,
                "accuracy": 1.0,
                "macro_f1": 2 / 3,
                "f1_a": 1.0,
                "f1_c": None,
                "absent_classes": "c",
            },
            {
                "model": "b0",
                "loss": "focal",
                "arm": "baseline",
                "fold": 2,
                "accuracy": 1.0,
                "macro_f1": 1.0,
                "f1_a": 1.0,
                "f1_c": 1.0,
                "absent_classes": "",
            },
        ]
    )
    summary = summarize(results, ["a", "c"])
    assert summary.f1_c_mean.item() == 1.0  # perfect where measured: not 0.5
    md = results_markdown(summary, "transforms", {"folds": 2, "source": "x"}, results)
    assert "Fold 1 has no validation image of c" in md and "%" not in md


@pytest.mark.slow
def test_folds_sharing_one_compiled_model_score_as_fresh_builds(tmp_path, monkeypatch):
    """The reused model is reset to its start for every fold: the same scores and history as
    a model built afresh per fold, with one build instead of one per fold."""
    import trainer.reuse
    from trainer.config import TrainConfig
    from trainer.crossval import cross_validate

    built = []
    real = trainer.reuse.Reuse.model

    def counting(self, key, build):
        model = real(self, key, build)
        built.append(self.built)
        return model

    monkeypatch.setattr(trainer.reuse.Reuse, "model", counting)
    src = make_folder(tmp_path / "src", {"a": 8, "b": 6}, size=24)
    config = TrainConfig(model="tiny", weights="none", epochs=2, batch=4)
    shared = cross_validate(src, tmp_path / "shared", config, folds=3, control=SILENT)
    assert built == [1, 1, 1]  # built once, handed back twice
    fresh = cross_validate(
        src,
        tmp_path / "fresh",
        config,
        folds=3,
        control=RunControl(progress=False, reuse_model=False),
    )
    assert [f["macro_f1"] for f in shared["folds"]] == [f["macro_f1"] for f in fresh["folds"]]
    for k in (1, 2, 3):
        a = pd.read_csv(tmp_path / "shared" / f"fold-{k}" / "history.csv")
        b = pd.read_csv(tmp_path / "fresh" / f"fold-{k}" / "history.csv")
        assert a.equals(b), k


def test_grouped_folds_keep_copies_with_their_original(balanced):
    table = list_folder(balanced).table
    assert (table.origin == "augmented").sum() == 11  # b: 4 copies, c: 7 copies
    originals = table[table.origin == "original"]
    seen = []
    for train, val in grouped_folds(table, 3, seed=0):
        assert_no_leak(train, val)
        # every file of a source not validated trains: originals and all their copies
        assert set(train.file) == set(table[~table.source.isin(val.source)].file)
        seen += list(val.file)
    assert sorted(seen) == sorted(originals.file)  # each original validated exactly once
    train, val = holdout(table, 0.2, seed=0)
    assert_no_leak(train, val)
    # a fifth of each class's sources, to the nearest image, at least one of a class of two
    per_class = originals.groupby("label").source.nunique()
    want = {c: min(max(round(n * 0.2), 1), n - 1) for c, n in per_class.items()}
    assert val.groupby("label").source.nunique().to_dict() == want


def test_plain_folder_is_split_by_file_and_stratified(tmp_path):
    table = list_folder(make_folder(tmp_path / "plain", {"x": 20, "y": 10})).table
    assert (table.source == table.file).all()
    train, val = holdout(table, 0.2, seed=1)
    assert val.label.value_counts().to_dict() == {"x": 4, "y": 2}
    assert len(train) + len(val) == 30 and not set(train.file) & set(val.file)


def test_val_split_holds_out_the_asked_fraction_of_each_class():
    from trainer.data import holdout

    table = pd.DataFrame(
        {
            "file": [f"a/{i}" for i in range(10)] + [f"b/{i}" for i in range(5)],
            "label": ["a"] * 10 + ["b"] * 5,
            "origin": "original",
        }
    )
    table["source"], table["path"], table["digest"] = table.file, table.file, table.file
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


def test_cv_redraw_makes_every_copy_anew_from_t_and_is_part_of_the_resume_key(tmp_path, recorded):
    from trainer.balancing import MADE
    from trainer.crossval import cross_validate

    src = make_folder(tmp_path / "src", {"a": 8, "b": 3}, size=24)
    balance = Balancing(nmin=8, transforms="flip,rotate", redraw="epoch")
    result = cross_validate(src, tmp_path / "cv", folds=2, control=SILENT, balance=balance)
    assert result["settings"]["balance"]["redraw"] == "epoch"
    for train, _, _ in recorded:
        made = train[MADE][train.origin == "augmented"]
        assert len(made) and all(m.redraw == {"flip": None, "rotate": 0.125} for m in made)
        assert train[MADE][train.origin == "original"].isna().all()  # read from their files
    proc = run_cli("trainer", "cv", src, "--out", tmp_path / "cv", "--folds", "2",
                   "--nmin", "8", "--transforms", "flip,rotate", "--weights", "none")  # fmt: skip
    assert_one_line_error(proc, "other settings or data")  # a plan without redraw: not resumed


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


@pytest.mark.slow
def test_ablation_never_trains_on_a_validation_image_or_its_copies(study_src, tmp_path):
    out = tmp_path / "ab"
    spec = StudySpec.of_ablation(TINY, nmin=8, transforms="rotate,cutout=8", folds=2, models=MODELS)
    summary = run_study(study_src, out, spec, control=SILENT)
    arms = [
        "baseline",
        "class weight",
        "ROS",
        "ROS + all transforms",
        "ROS + T",
        "ROS + T redrawn each epoch",
    ]
    assert list(summary.arm) == arms
    chosen_on: dict = {}
    slugs = ("baseline", "class-weight", "ros", "ros+all-transforms", "ros+t")
    for slug in (*slugs, "ros+t-redrawn-each-epoch"):
        for fold, files in run_files(out, slug):
            assert set(files.split) == {"train", "selection", "scored"}
            train, val = files[files.split == "train"], files[files.split == "scored"]
            select = files[files.split == "selection"]
            assert (val.origin == "original").all() and (select.origin == "original").all()
            for a, b in ((train, val), (train, select), (select, val)):
                assert not set(a.source) & set(b.source), (slug, fold)
            # every arm of a fold chooses on the same inner part
            assert chosen_on.setdefault(fold, set(select.file)) == set(select.file)
            counts = train.label.value_counts().to_dict()
            if slug in ("baseline", "class-weight"):  # no copies: the originals only
                assert (train.origin == "original").all()
            else:  # every class of the fold's training part brought up to N_min (never down)
                originals = train[train.origin == "original"].label.value_counts().to_dict()
                assert counts == {c: max(8, n) for c, n in originals.items()}
            copies = train[train.origin == "augmented"]
            if slug == "ros":  # plain over-sampling: copies are the original files again
                assert copies.file.str.contains("__copy").all()
            assert set(copies.source) <= set(train.file[train.origin == "original"])
        # the online arm plans the same copies as the offline one, on the same folds
        for (_, offline), (_, online) in zip(
            run_files(out, "ros+t"), run_files(out, "ros+t-redrawn-each-epoch"), strict=True
        ):
            assert offline.equals(online)
    weighted = json.loads((out / "runs/tiny-focal/class-weight/fold-1/metrics.json").read_text())
    assert weighted["config"]["class_weight"] == "balanced"
    md = (out / "results.md").read_text()
    assert "ROS + T" in md and "macro F1 (mean ± std)" in md
    record = json.loads((out / "study.json").read_text())
    assert record["settings"]["nmin"] == 8 and record["settings"]["folds"] == 2


def predicted_part(run, files, data, part):
    """(true, predicted) class indices of one part of a run's files.csv, by its saved model."""
    rows = files[files.split == part]
    truth = [run.class_names.index(c) for c in rows.label]
    return truth, run.probabilities([str(data / f) for f in rows.file]).argmax(1)


@pytest.mark.slow
def test_a_cv_fold_is_scored_once_with_weights_chosen_on_its_inner_part(tmp_path):
    """A real cv: the epoch kept is the best on the selection part (the model's own
    predictions on those files give back history's val_f1 at that epoch), and the fold's
    score is scikit-learn's on the scored files, which no epoch looked at."""
    from sklearn.metrics import accuracy_score, f1_score

    from trainer import TrainConfig
    from trainer.crossval import cross_validate
    from trainer.evaluation import Run

    data = make_folder(tmp_path / "data", {"a": 9, "b": 9}, size=24)
    config = TrainConfig(model="tiny", weights="none", batch=4, epochs=4, patience=4, val_split=0.3)
    result = cross_validate(data, tmp_path / "cv", config, folds=2, control=SILENT)
    assert "inner selection part" in result["epoch_rule"]
    for k in (1, 2):
        run_dir = tmp_path / "cv" / f"fold-{k}"
        m = json.loads((run_dir / "metrics.json").read_text())
        history = pd.read_csv(run_dir / "history.csv")
        files = pd.read_csv(run_dir / "files.csv")
        assert m["scored_epoch"] == history.epoch[history.val_f1.idxmax()]
        run, every = Run(run_dir), [0, 1]
        macro = partial(predicted_part, run, files, data)
        truth, guess = macro("selection")
        kept = history.val_f1[history.epoch == m["scored_epoch"]].item()
        assert f1_score(truth, guess, labels=every, average="macro", zero_division=0) == (
            pytest.approx(kept, abs=1e-5)
        )
        truth, guess = macro("scored")
        assert m["accuracy"] == pytest.approx(accuracy_score(truth, guess))
        assert m["macro_f1"] == pytest.approx(
            f1_score(truth, guess, labels=every, average="macro", zero_division=0)
        )
        assert result["folds"][k - 1]["selection_files"] == (files.split == "selection").sum()


def test_a_study_gives_every_arm_the_baselines_optimizer_steps():
    """--budget steps, by hand: 80 training files at batch 16 are 5 steps an epoch; an arm
    of 160 files takes 10, so it trains half the epochs (30 -> 15: 150 steps each), and
    one of 240 a third (30 -> 10); --budget epochs leaves the epochs alone."""
    from dataclasses import replace

    from trainer import TrainConfig
    from trainer.study.run import _budgeted

    config = TrainConfig(model="tiny", weights="none", batch=16, epochs=30)
    assert _budgeted(config, "steps", 80, 160).epochs == 15
    assert _budgeted(config, "steps", 80, 240).epochs == 10
    assert _budgeted(config, "steps", 80, 80) == config
    assert _budgeted(config, "epochs", 80, 240) == config
    tuned = replace(config, freeze_base=True, fine_tune_epochs=6)
    assert _budgeted(tuned, "steps", 80, 240).fine_tune_epochs == 2
    assert _budgeted(replace(config, epochs=1), "steps", 80, 240).epochs == 1  # at least one
