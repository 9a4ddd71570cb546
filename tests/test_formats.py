"""What the tools write and how it reads back: the balanced folder (images, manifest.csv,
balance.json) as any loader sees it, every record, and pictures in the format their name says."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ONE,
    SILENT,
    RunOptions,
    assert_one_line_error,
    fake_metrics,
    make_folder,
    run_cli,
    textured,
    write_image,
)

from balancer import BuildSettings, build, read_manifest, read_record, replay
from balancer.common.errors import BalanceError, UserError
from balancer.common.imageio import encode, load
from balancer.common.opencv import cv2
from balancer.common.shapes import shape_problems
from balancer.reports import BuildRecord, FolderStats

TRANSFORMS = "crop=24,rotate,cutout=20,width,zoom"


def test_build_counts_manifest_and_pixels(small_src, tmp_path):
    out = tmp_path / "out"
    result = build(
        small_src,
        out,
        BuildSettings(nmin=5, transforms=TRANSFORMS, seed=1),
        run=ONE,
    )
    assert result.record["counts"] == {
        "cat": {"before": 6, "copies": 0, "after": 6},
        "dog": {"before": 2, "copies": 3, "after": 5},
        "owl": {"before": 1, "copies": 4, "after": 5},
    }
    assert sorted(p.name for p in out.iterdir()) == [
        "balance.json",
        "cat",
        "dog",
        "manifest.csv",
        "owl",
    ]
    m = read_manifest(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*"))
    assert sorted(m.file_name) == files
    assert m.groupby("label").size().to_dict() == {"cat": 6, "dog": 5, "owl": 5}
    assert (m.file_name.str.split("/").str[0] == m.label).all()
    originals, augmented = m[m.origin == "original"], m[m.origin == "augmented"]
    assert len(originals) == 9 and len(augmented) == 7
    for row in originals.itertuples():  # originals are copied byte for byte
        assert (out / row.file_name).read_bytes() == (small_src / row.source).read_bytes()
    for row in augmented.itertuples():  # each copy is its recorded transform, replayed
        source = load(small_src / row.source).image
        expected = encode(replay(source, row.augmentation, row.params), "jpeg", 95)
        assert (out / row.file_name).read_bytes() == expected
        assert row.file_name.endswith(f"_{row.augmentation}.jpg") and row.seed >= 0
    # dog's 3 copies come from its 2 originals as evenly as possible
    assert sorted(augmented[augmented.label == "dog"].source.value_counts()) == [1, 2]
    record = json.loads((out / "balance.json").read_text())
    assert record["status"] == "complete" and record["settings"]["seed"] == 1
    assert record["transforms"]["crop"]["magnitude"] == 24


def test_link_and_other_formats(tmp_path):
    src = tmp_path / "src"
    write_image(src / "a" / "x.bmp", textured(20, 20, seed=1))
    write_image(src / "a" / "y.PNG", textured(20, 20, channels=4, seed=2))
    write_image(src / "b" / "z.tif", textured(20, 20, dtype=np.uint16, seed=3))
    write_image(src / "b" / "w.jpg", textured(20, 20, seed=4))
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=5, transforms="rotate", link=True), run=ONE)
    assert os.path.samefile(out / "a" / "y.png", src / "a" / "y.PNG")
    assert np.array_equal(
        cv2.imread(str(out / "a" / "x.png")), cv2.imread(str(src / "a" / "x.bmp"))
    )
    z = cv2.imread(str(out / "b" / "z.png"), cv2.IMREAD_UNCHANGED)
    assert z.dtype == np.uint16 and np.array_equal(
        z, cv2.imread(str(src / "b" / "z.tif"), cv2.IMREAD_UNCHANGED)
    )
    m = read_manifest(out)
    aug = m[m.origin == "augmented"].set_index("source").file_name.to_dict()
    assert aug["a/y.PNG"].endswith(".png")
    assert cv2.imread(str(out / aug["a/y.PNG"]), cv2.IMREAD_UNCHANGED).shape == (20, 20, 4)


def test_cli_prints_table_and_json(small_src, tmp_path):
    build = ["build", small_src, "--out", tmp_path / "o", "--nmin", "4"]
    proc = run_cli("balancer", *build, "--dry-run", check=True)
    assert "owl" in proc.stdout and "dry run: would write 14 files" in proc.stdout
    proc = run_cli("balancer", *build, "--json", "--quiet", check=True)
    assert json.loads(proc.stdout)["counts"]["owl"] == {"before": 1, "copies": 3, "after": 4}


def test_keras_loads_out_with_manifest_classes_and_counts(tmp_path):
    import keras

    src = make_folder(tmp_path / "src", {"anger": 7, "awe": 2, "fear": 3}, size=24)
    # a PNG class too, so both formats are read
    make_folder(tmp_path / "src", {"joy": 2}, size=24, ext=".png")
    out = tmp_path / "out"
    build(
        src,
        out,
        BuildSettings(nmin=6, transforms="rotate,zoom,cutout=8"),
        run=RunOptions(workers=2, progress=False),
    )
    m = read_manifest(out)
    ds = keras.utils.image_dataset_from_directory(
        out, image_size=(24, 24), batch_size=64, shuffle=False, label_mode="int"
    )
    assert ds.class_names == sorted(m.label.unique())
    labels = np.concatenate([y.numpy() for _, y in ds])
    counts = dict(
        zip(ds.class_names, np.bincount(labels, minlength=len(ds.class_names)), strict=False)
    )
    assert (
        counts == m.groupby("label").size().to_dict() == {"anger": 7, "awe": 6, "fear": 6, "joy": 6}
    )


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
    from helpers import ONE

    from balancer import BuildSettings, build

    src = make_folder(tmp_path / "src", {"a": 6, "b": 2})
    for name, magic in (("c.svg", b"<?xml"), ("c.pdf", b"%PDF"), ("c.jpg", b"\xff\xd8")):
        proc = run_cli("balancer", "stats", src, "--plot", tmp_path / name, "-q")
        assert proc.returncode == 0 and (tmp_path / name).read_bytes()[: len(magic)] == magic
    assert_one_line_error(run_cli("balancer", "stats", src, "--plot", tmp_path / "c.gif"), ".gif")
    assert_one_line_error(
        run_cli("balancer", "preview", src, "-o", tmp_path / "s.tiff"), "ends in .jpg, .jpeg, .png"
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


def test_records_have_the_shape_their_typeddict_declares_and_a_damaged_one_is_named(tmp_path):
    """balance.json and `balance stats --json` fit the TypedDicts in balancer/reports.py (a
    folder with a skipped file and a warning, so every list is filled); a field of another
    type is named by the reader, by verify and by a run folder's reader."""
    src = make_folder(tmp_path / "src", {"a": 4, "b": 1})
    (src / "a" / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="paper-px"), run=ONE)
    record = read_record(out)
    assert record is not None and record["skipped"] and record["warnings"]
    assert shape_problems(record, BuildRecord) == []
    stats = json.loads(run_cli("balancer", "stats", out, "--json").stdout)
    assert shape_problems(stats, FolderStats) == []
    assert shape_problems({"counts": {"a": {"before": 1}}}, BuildRecord) == ["counts"]
    assert shape_problems({"files": True, "warnings": ["ok", 3]}, BuildRecord) == [
        "files",
        "warnings",
    ]

    record["counts"]["b"]["after"] = "four"
    (out / "balance.json").write_text(json.dumps(record))
    with pytest.raises(BalanceError, match="balance.json is damaged: counts of the wrong type"):
        read_record(out)
    assert "balance.json is damaged: counts missing or of the wrong type" in (
        run_cli("balancer", "verify", out).stderr
    )

    from trainer.evaluation import read_metrics

    metrics = tmp_path / "metrics.json"
    for damage, named in (
        ({"per_class": {"a": {"f1": "high"}}}, "per_class"),
        ({"absent_classes": "b"}, "absent_classes"),
        ({"epochs_run": 2.5, "macro_f1": None}, "macro_f1, epochs_run"),
    ):
        metrics.write_text(json.dumps({**fake_metrics(), **damage}))
        with pytest.raises(UserError, match=f"is damaged: {named} missing or of the wrong type"):
            read_metrics(metrics)


def test_one_table_of_formats_is_what_the_writer_the_plan_verify_and_keras_agree_on(tmp_path):
    """Each output format is one row (balancer.common.formats): the plan names a source's
    copies with its row's extension (any other format becomes the lossless row's), the
    encoder writes that format, verify checks the content is what the name says, and the
    row says truly whether Keras' folder loader reads it."""
    from keras.src.utils.image_dataset_utils import ALLOWLIST_FORMATS

    from balancer import verify
    from balancer.common import formats, imageio

    src = tmp_path / "src"
    write_image(src / "a" / "photo.jpg", textured(24, 20, seed=1))
    write_image(src / "a" / "scan.png", textured(24, 20, seed=2))
    write_image(src / "b" / "old.bmp", textured(24, 20, seed=3))
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=3, transforms="flip"), run=ONE)
    m = read_manifest(out)
    for row in m.itertuples():
        fmt = formats.of_name(row.file_name)
        source = formats.for_source(imageio.sniff((src / row.source).read_bytes()))
        assert fmt is source and row.file_name.endswith(fmt.extension)
        assert imageio.sniff((out / row.file_name).read_bytes()) == fmt.name
    assert sorted(formats.of_name(n).name for n in m.file_name) == ["jpeg"] * 2 + ["png"] * 4
    assert verify(out, run=ONE)["ok"]
    for fmt in formats.FORMATS:
        assert fmt.keras == all(e in ALLOWLIST_FORMATS for e in fmt.extensions), fmt.name
        assert imageio.sniff(imageio.encode(textured(8, 8), fmt.name)) == fmt.name
        assert all(formats.of_name(f"X{e.upper()}") is fmt for e in fmt.extensions)
    assert formats.of_name("x.webp") is None and formats.of_name("x.jpg.part") is None
    (out / "b" / "old.png").write_bytes((out / "a" / "photo.jpg").read_bytes())  # a JPEG
    m2 = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    m2.loc[m2.file_name == "b/old.png", ["size", "sha256"]] = [
        str((out / "b" / "old.png").stat().st_size),
        __import__("hashlib").sha256((out / "b" / "old.png").read_bytes()).hexdigest(),
    ]
    m2.to_csv(out / "manifest.csv", index=False, lineterminator="\r\n")
    problems = verify(out, run=ONE)["problems"]
    assert "content is not the PNG its name says: b/old.png" in problems
