"""Determinism is a feature: the output is a function of the input, the options and the seed,
whatever the number of workers, and a copy can be made again from its record, byte for byte."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    SILENT,
    RunOptions,
    make_folder,
    textured,
    tree_digest,
    write_image,
)
from PIL import Image

from balancer import BuildSettings, build, verify
from balancer.common.opencv import cv2
from balancer.common.ownership import Existing
from trainer import TrainConfig, fit


def test_same_bytes_with_one_or_two_workers(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 12, "b": 3, "c": 1})
    build(src, tmp_path / "w1", BuildSettings(nmin=40, transforms="all"), run=ONE)
    build(
        src,
        tmp_path / "w2",
        BuildSettings(nmin=40, transforms="all"),
        run=RunOptions(workers=2, progress=False),
    )
    assert tree_digest(tmp_path / "w1") == tree_digest(tmp_path / "w2")
    build(
        src,
        tmp_path / "s2",
        BuildSettings(nmin=40, transforms="all", seed=2),
        run=RunOptions(workers=2, progress=False),
    )
    assert tree_digest(tmp_path / "w1") != tree_digest(tmp_path / "s2")


def test_resume_remakes_what_its_journal_does_not_prove(built, small_src):
    """A file under a final name counts as done only when its journal row proves it (size,
    then sha256): a zero-length file (what a power cut can leave), a file with other bytes
    and a missing one are made again; a torn last journal row is dropped; temporaries go."""
    reference = tree_digest(built)
    record = json.loads((built / "balance.json").read_text())
    record["status"] = "running"
    (built / "balance.json").write_text(json.dumps(record))
    copies = sorted(built.glob("*/*__aug*"))
    copies[0].write_bytes(b"")
    copies[1].write_bytes(copies[1].read_bytes()[:-1] + b"\x00")  # same size, other bytes
    copies[2].unlink()
    (built / "cat" / "cat_000.jpg.part").write_bytes(b"half")
    with open(built / "manifest.csv", "ab") as journal:
        journal.write(b"owl/owl_000__aug0009_rotate.jpg,owl,owl/owl_0")  # cut by a power cut
    settings = BuildSettings(nmin=5, transforms="rotate,contrast,flip")
    build(small_src, built, settings, existing=Existing.RESUME, run=ONE)
    assert tree_digest(built) == reference


def test_resume_decodes_only_the_originals_with_a_copy_left_to_make(tmp_path, monkeypatch):
    """A resumed build takes the parameters of the files already there from its journal:
    only the originals whose copies are missing are decoded again, and it writes what an
    uninterrupted build writes, manifest included."""
    import balancer.writing

    src = make_folder(tmp_path / "src", {"a": 6, "b": 1}, size=30)
    write_image(src / "b" / "wide.png", textured(20, 52, seed=5))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 24 x 40, shown (and balanced) 40 x 24
    phone = Image.fromarray(cv2.cvtColor(textured(24, 40, seed=7), cv2.COLOR_BGR2RGB))
    phone.save(src / "b" / "phone.jpg", exif=exif, quality=95)
    write_image(src / "b" / "odd.bmp", textured(26, 34, seed=8))  # re-encoded as an original
    settings = BuildSettings(nmin=30, transforms="crop=0.5,cutout=0.4,rotate")
    ref, out = tmp_path / "ref", tmp_path / "out"
    build(src, ref, settings, run=ONE)
    reference = tree_digest(ref)

    shutil.copytree(ref, out)  # as a killed run leaves it: its journal, some copies missing
    record = json.loads((out / "balance.json").read_text())
    record["status"] = "running"
    (out / "balance.json").write_text(json.dumps(record))
    missing = sorted((out / "b").glob("b_000__aug*"))
    assert len(missing) >= 5
    for f in missing:
        f.unlink()
    decoded = []
    real = balancer.writing.read_original

    def counting(path, digest):
        decoded.append(Path(path).name)
        return real(path, digest)

    monkeypatch.setattr(balancer.writing, "read_original", counting)
    build(src, out, settings, existing=Existing.RESUME, run=ONE)
    assert sorted(set(decoded)) == ["b_000.jpg"]
    assert tree_digest(out) == reference


def test_replay_reproduces_every_copy_byte_for_byte(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 6, "b": 2}, size=40)
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=12, transforms="all"), run=ONE)
    assert verify(out, replay=True, run=ONE)["ok"]
    victim = sorted(out.glob("b/*__aug*"))[3]
    image = cv2.imread(str(victim))
    image[0, 0] = 255 - image[0, 0]
    write_image(victim, image)
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    import hashlib

    row = m.file_name == f"b/{victim.name}"
    m.loc[row, "sha256"] = hashlib.sha256(victim.read_bytes()).hexdigest()
    m.loc[row, "size"] = str(victim.stat().st_size)
    m.to_csv(out / "manifest.csv", index=False, lineterminator="\r\n")
    record = json.loads((out / "balance.json").read_text())
    record.pop("manifest_sha256")
    (out / "balance.json").write_text(json.dumps(record))
    problems = verify(out, replay=True, run=QUIET)["problems"]
    assert problems == [f"copy differs from its replay (original + params): b/{victim.name}"]


@pytest.mark.slow
def test_same_seed_same_run(tmp_path):
    import keras

    data = make_folder(tmp_path / "data", {"a": 8, "b": 8}, size=32)
    config = TrainConfig(model="tiny", weights="none", epochs=2, batch=8, eager=True)
    runs = [tmp_path / "r1", tmp_path / "r2"]
    for run in runs:
        fit(data, run, config, control=SILENT)
    assert (runs[0] / "history.csv").read_text() == (runs[1] / "history.csv").read_text()
    w1, w2 = (keras.models.load_model(r / "model.keras", compile=False).get_weights() for r in runs)
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2, strict=False))
