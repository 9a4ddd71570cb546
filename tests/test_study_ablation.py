"""The paper's ablation (Table 4) as a command, on tiny data: no validation image or copy of one
ever trains. Its own module, so that the test runner can run it beside the other study tests."""

import json

import pytest
from helpers import SILENT
from test_study import MODELS, TINY, run_files, study_source

from trainer.study import StudySpec, run_study

pytestmark = pytest.mark.slow  # every test here trains


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return study_source(tmp_path_factory.mktemp("ablation"))


def test_ablation_never_trains_on_a_validation_image_or_its_copies(src, tmp_path):
    out = tmp_path / "ab"
    spec = StudySpec.of_ablation(TINY, nmin=8, transforms="rotate,cutout=8", folds=2, models=MODELS)
    summary = run_study(spec, src, out, control=SILENT)
    arms = ["baseline", "class weight", "ROS", "ROS + all transforms", "ROS + T"]
    assert list(summary.arm) == arms
    for slug in ("baseline", "class-weight", "ros", "ros+all-transforms", "ros+t"):
        for fold, files in run_files(out, slug):
            train, val = files[files.split == "train"], files[files.split == "validation"]
            assert (val.origin == "original").all()
            assert not set(train.source) & set(val.source), (slug, fold)
            assert not set(train.file) & set(val.file)
            counts = train.label.value_counts().to_dict()
            if slug in ("baseline", "class-weight"):  # no copies: the originals only
                assert (train.origin == "original").all()
            else:  # every class of the fold's training part brought up to N_min (never down)
                originals = train[train.origin == "original"].label.value_counts().to_dict()
                assert counts == {c: max(8, n) for c, n in originals.items()}
            if slug == "ros":  # plain over-sampling: copies are the original files again
                assert set(train.file[train.origin == "augmented"]) <= set(
                    train.file[train.origin == "original"]
                )
    weighted = json.loads((out / "runs/tiny-focal/class-weight/fold-1/metrics.json").read_text())
    assert weighted["config"]["class_weight"] == "balanced"
    md = (out / "results.md").read_text()
    assert "ROS + T" in md and "macro F1 (mean ± std)" in md
    record = json.loads((out / "study.json").read_text())
    assert record["settings"]["nmin"] == 8 and record["settings"]["folds"] == 2
