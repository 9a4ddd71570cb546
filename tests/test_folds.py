"""Honest across folds: the same class set everywhere, balancing inside each fold's training
part, and a word wherever a fold's validation lacks a class. Training is a stand-in that
records what it was given and writes a run folder's record."""

import json

import pandas as pd
import pytest
from helpers import ONE, SILENT, RunControl, make_folder

from balancer import BuildSettings, build

seen: list = []


def fake_train_run(train, val, class_names, config, folder, **kwargs):
    seen.append((train.copy(), val.copy()))
    from trainer.evaluation import scores

    y = [class_names.index(c) for c in val.label]
    metrics = scores(y, y, class_names)  # perfect predictions
    metrics.update(
        tool="balanced-aug",
        kind="run",
        config={"weights": "none"},
        epochs_run=1,
        data={"train": {"files": len(train)}, "validation": {"files": len(val)}},
    )
    (folder / "model.keras").write_bytes(b"model")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return metrics


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
        src, tmp_path / "cv", folds=3, control=SILENT, nmin=10, transforms="flip,rotate"
    )
    assert len(recorded) == 3
    for train, val in recorded:
        originals = train[train.origin == "original"]
        copies = train[train.origin == "augmented"]
        counts = train.label.value_counts().to_dict()
        assert counts == {c: max(10, n) for c, n in originals.label.value_counts().items()}
        assert set(copies.source) <= set(originals.file)  # copies of training originals only
        assert not set(copies.source) & set(val.file) and (val.origin == "original").all()
    assert result["settings"]["balance"] == {
        "nmin": 10,
        "transforms": {"flip": None, "rotate": 0.125},
    }
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cv.csv",
        "cv.json",
        "data",
        "fold-1",
        "fold-2",
        "fold-3",
    ]
    again = cross_validate(
        src, tmp_path / "cv", folds=3, control=SILENT, nmin=10, transforms="flip,rotate"
    )
    assert again["folds"] == result["folds"] and len(recorded) == 3  # resumed: nothing retrained


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
