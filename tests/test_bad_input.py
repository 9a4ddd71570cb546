"""Bad input is normal input: corrupt, truncated, zero-byte, odd-format, 16-bit, alpha,
rotated, oversized and oddly named files, unreadable folders and damaged records. Every good
image is kept, every bad one skipped with its reason; nothing crashes."""

import csv
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    REPO,
    assert_one_line_error,
    fake_metrics,
    make_folder,
    run_cli,
    textured,
    tree_digest,
    write_image,
)
from PIL import Image, ImageOps

from balancer import BuildSettings, build, read_manifest, scan, verify
from balancer.common.errors import BalanceError, UserError
from balancer.common.imageio import load
from balancer.common.opencv import cv2
from balancer.source import list_source


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png(w: int = 16, h: int = 16) -> bytes:
    rows = b"".join(b"\0" + bytes((x + y) % 4 for x in range(w)) for y in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + png_chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9]))
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def bomb_png(side: int = 100_000) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    src = tmp_path / "messy"
    good = write_image(src / "cat" / "good.jpg", textured(40, 40))
    whole = good.read_bytes()
    (src / "cat" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "cat" / "zero.jpg").write_bytes(b"")
    (src / "cat" / "text.jpg").write_text("not an image at all")
    (src / "cat" / "noise.png").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "cat" / "bomb.png").write_bytes(bomb_png())
    (src / "cat" / "notes.txt").write_text("hello")
    write_image(src / "cat" / "UPPER.JPG", textured(40, 40, seed=2))
    write_image(src / "cat" / "ça va 😀.jpg", textured(40, 40, seed=3))
    write_image(src / "cat" / "gray.jpg", textured(40, 40, channels=1, seed=4))
    write_image(src / "dog" / "alpha.png", textured(30, 30, channels=4, seed=5))
    write_image(src / "dog" / "deep.png", textured(30, 30, dtype=np.uint16, seed=6))
    (src / "dog" / "palette.png").write_bytes(palette_png())
    write_image(src / "dog" / "tiny.png", textured(8, 8, seed=7))
    write_image(src / "dog" / "sub" / "nested.webp", textured(30, 30, seed=8))
    for junk in [".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.jpg"]:
        (src / "dog" / junk).write_bytes(whole)
    write_image(src / "dog" / ".cache" / "x.jpg", textured(10, 10))
    write_image(src / ".git" / "y.jpg", textured(10, 10))
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "README.txt").write_text("a file at the root")
    (src / "empty").mkdir()
    (src / "dog" / "link.jpg").symlink_to(good)
    return src


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims another size."""
    data = bytearray(cv2.imencode(".jpg", textured(16, 16))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_scan_keeps_every_good_image_and_says_why_it_skips(messy):
    found = scan(messy, workers=2, progress=False)
    assert {k: sorted(Path(i.path).name for i in v) for k, v in found.images.items()} == {
        "cat": ["UPPER.JPG", "good.jpg", "gray.jpg", "ça va 😀.jpg"],
        "dog": ["alpha.png", "deep.png", "nested.webp", "palette.png", "tiny.png"],
    }
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons == {
        "README.txt": "not inside a class folder",
        "cat/bomb.png": "too large to decode: 100000x100000 px would take 28610 MiB, over the "
        "256 MiB limit (--max-image-mb raises it)",
        "cat/noise.png": "not a readable image",
        "cat/notes.txt": "not an image file extension ('.txt')",
        "cat/text.jpg": "not a readable image",
        "cat/truncated.jpg": "truncated JPEG (no end-of-image marker)",
        "cat/zero.jpg": "empty file",
        "dog/link.jpg": "symbolic link (not followed)",
    }
    assert found.empty == ["empty"]
    assert (
        found.ignored == 6
    )  # .git, .DS_Store at the root; 4 junk files in dog (.cache is a hidden folder, not counted)


def test_build_on_messy_folder_keeps_good_images_whole(messy, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "balancer",
        "build",
        messy,
        "--out",
        out,
        "--nmin",
        "6",
        "--workers",
        "2",
        "--transforms",
        "crop=16,rotate,cutout=8,width,zoom,contrast,flip,blur",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped cat/truncated.jpg: truncated JPEG" in proc.stderr
    assert "class folder 'empty' has no usable image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["balance.json", "cat", "dog", "manifest.csv"]
    m = read_manifest(out)
    assert m.groupby("label").size().to_dict() == {"cat": 6, "dog": 6}
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*")) == sorted(m.file_name)
    names = set(m.file_name)
    assert {"cat/UPPER.jpg", "cat/ça va 😀.jpg", "dog/sub_nested.png", "dog/palette.png"} <= names
    for name in m.file_name:
        image = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.size > 0, name
    deep = m[(m.source == "dog/deep.png")].file_name
    assert all(cv2.imread(str(out / f), cv2.IMREAD_UNCHANGED).dtype == np.uint16 for f in deep)


def test_too_few_classes_is_a_user_error(tmp_path):
    src = tmp_path / "one"
    write_image(src / "only" / "a.jpg", textured(10, 10))
    (src / "broken").mkdir()
    (src / "broken" / "b.jpg").write_bytes(b"nope")
    with pytest.raises(BalanceError, match="need at least 2"):
        build(src, tmp_path / "out", BuildSettings(nmin=2), run=QUIET)
    assert_one_line_error(
        run_cli("balancer", "build", src, "--out", tmp_path / "out", "--nmin", "2"),
        "need at least 2",
    )
    assert not (tmp_path / "out").exists()


def test_one_folder_rule_for_the_scanner_and_for_predict(tmp_path):
    """`balance`'s scanner and `train predict`'s folder walk are one walker: the same images,
    the same entries left out with the same reasons (links never followed, hidden files and
    OS junk ignored, hidden folders not entered)."""
    from balancer.source import list_source
    from trainer.evaluation import _images_under

    cls = tmp_path / "src" / "a"
    write_image(cls / "x.jpg", textured(16, 16))
    write_image(cls / "deep" / "y.png", textured(16, 16), quality=0)
    write_image(cls / ".hidden" / "z.jpg", textured(16, 16))
    (cls / "notes.txt").write_text("not an image")
    (cls / "Thumbs.db").write_bytes(b"junk")
    (cls / "link.jpg").symlink_to(cls / "x.jpg")
    listing = list_source(tmp_path / "src")
    images, skipped = _images_under(cls)
    assert sorted(c[0] for c in listing.candidates) == ["a/deep/y.png", "a/x.jpg"]
    assert sorted(p.relative_to(cls).as_posix() for p in images) == ["deep/y.png", "x.jpg"]
    by_scan = {s.path.removeprefix("a/"): s.reason for s in listing.skipped}
    assert by_scan == {s["path"]: s["reason"] for s in skipped}
    assert by_scan == {
        "link.jpg": "symbolic link (not followed)",
        "notes.txt": "not an image file extension ('.txt')",
    }
    assert listing.ignored == 1  # Thumbs.db; the hidden folder is not entered


def test_bombs_and_oversized_images_are_skipped_at_scan_by_header(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    (src / "a" / "claims.jpg").write_bytes(jpeg_claiming(65000, 65000))
    write_image(src / "b" / "deep.png", textured(600, 600, channels=4, dtype=np.uint16))
    found = scan(src, workers=1, progress=False, max_bytes=1 << 20)
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons["a/claims.jpg"].startswith("too large to decode: 65000x65000 px")
    assert reasons["b/deep.png"].startswith("too large to decode: 600x600 px would take 3 MiB")
    assert found.counts() == {"a": 3, "b": 2}
    roomy = scan(src, workers=1, progress=False, max_bytes=4 << 20)
    assert roomy.counts() == {"a": 3, "b": 3}
    proc = run_cli(
        "balancer", "build", src, "--out", tmp_path / "out", "--nmin", "4", "--max-image-mb", "1"
    )
    assert proc.returncode == 0 and "a/claims.jpg: too large to decode" in proc.stderr


def test_a_raised_image_limit_holds_for_writing_and_verifying_too(tmp_path, monkeypatch):
    """--max-image-mb above the default lets an image through every step that decodes it,
    not the scan alone (the writer and verify once held it to the default limit)."""
    import balancer.common.limits

    monkeypatch.setattr(balancer.common.limits, "MAX_IMAGE_MB", 1)  # a 1 MiB default
    src = make_folder(tmp_path / "src", {"a": 3})
    deep = textured(420, 420, channels=4, dtype=np.uint16)  # 1.35 MiB decoded
    write_image(src / "b" / "deep.png", deep)
    out = tmp_path / "out"
    settings = BuildSettings(nmin=3, transforms="flip,rotate", max_image_mb=2)
    result = build(src, out, settings, run=ONE)
    assert result.record["counts"]["b"] == {"before": 1, "copies": 2, "after": 3}
    assert (out / "b" / "deep.png").read_bytes() == (src / "b" / "deep.png").read_bytes()
    copies = sorted((out / "b").glob("deep__aug*.png"))
    assert len(copies) == 2
    for copy in copies:
        image = load(copy, max_bytes=2 << 20).image
        assert image.shape == deep.shape and image.dtype == np.uint16
    assert verify(out, replay=True, run=ONE)["problems"] == []


def test_rotated_photos_agree_in_every_loader(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 1})
    pixels = cv2.cvtColor(textured(24, 40, seed=7), cv2.COLOR_BGR2RGB)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(src / "b" / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(src / "b" / "phone.jpg")))
    assert upright.shape[:2] == (40, 24)
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="contrast"), run=ONE)
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("file_name")
    assert json.loads(m.loc["b/phone.jpg", "params"]) == {"exif_orientation": 6}
    for name in m.index[m.source == "b/phone.jpg"]:
        raw = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        aware = np.asarray(ImageOps.exif_transpose(Image.open(out / name)))
        assert raw.shape[:2] == aware.shape[:2] == (40, 24), name
    original = cv2.cvtColor(cv2.imread(str(out / "b/phone.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(original.astype(int) - upright.astype(int)).mean() < 3
    assert load(src / "b" / "phone.jpg").image.shape[:2] == (40, 24)
    assert verify(out, run=ONE)["ok"]


def test_odd_names_and_file_types_are_skipped_or_shortened_with_reasons(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    root = os.fsencode(src)
    with open(os.path.join(root, b"a", b"caf\xe9.jpg"), "wb") as f:
        f.write((src / "a" / "a_000.jpg").read_bytes())
    os.mkdir(os.path.join(root, b"cl\xe4ss"))
    write_image(src / "manifest.csv" / "x.jpg", textured(16, 16))
    write_image(src / "x.part" / "x.jpg", textured(16, 16))
    os.mkfifo(src / "a" / "pipe.jpg")
    deep = src / "b" / Path(*[f"level{i:02d}" for i in range(12)])
    write_image(deep / ("n" * 236 + ".jpg"), textured(20, 20, seed=3))
    os.symlink(src / "a", src / "b" / "linked")
    out = tmp_path / "out"
    proc = run_cli("balancer", "build", src, "--out", out, "--nmin", "5", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    reasons = {s["path"]: s["reason"] for s in json.loads(proc.stdout)["skipped"]}
    assert reasons["a/caf\\xe9.jpg"].startswith("name is not valid UTF-8")
    assert reasons["cl\\xe4ss"].startswith("folder name is not valid UTF-8")
    assert reasons["manifest.csv"].startswith("class folder name is reserved")
    assert reasons["x.part"].startswith("class folder name is reserved")
    assert reasons["a/pipe.jpg"].startswith("not a regular file")
    assert reasons["b/linked"] == "symbolic link (not followed)"
    names = [p.name for p in out.rglob("*")]
    assert max(len(os.fsencode(n)) for n in names) <= 255
    m = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert (m.source.str.startswith("b/level00")).sum() >= 2  # the deep file and its copies
    again = tmp_path / "again"
    run_cli("balancer", "build", src, "--out", again, "--nmin", "5", "--quiet", check=True)
    assert sorted(pd.read_csv(again / "manifest.csv").file_name) == sorted(m.file_name)
    for command in (["stats", src], ["split", src, "--out", tmp_path / "s"], ["verify", out]):
        assert run_cli("balancer", *command, "--quiet").returncode == 0


def test_an_unreadable_folder_is_named_not_dropped(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "src", {"a": 2, "b": 2})
    write_image(src / "b" / "locked" / "x.jpg", textured(16, 16))
    real = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # as root, chmod 000 would not stop us
    listing = list_source(src)
    assert [(s.path, s.reason) for s in listing.skipped] == [
        ("b/locked", "unreadable folder (Permission denied)")
    ]
    assert len(listing.candidates) == 4


def test_csv_round_trips_any_file_name(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 2, "b": 1})
    odd = ["cr\rname.jpg", "lf\nname.jpg", 'quote"d, comma.jpg', "=1+2.jpg", "crlf\r\n.jpg"]
    for i, name in enumerate(odd):
        write_image(src / "b" / name, textured(24, 24, seed=50 + i))
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=8, transforms="flip"), run=ONE)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*"))
    frame = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(frame.file_name) == sorted(r["file_name"] for r in rows) == on_disk
    assert {f"b/{n}" for n in odd} <= set(frame.source)
    assert verify(out, run=ONE)["ok"]


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


def test_preview_from_a_manifest_missing_an_original_row_or_params(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 1})
    cases = [
        (lambda out, m: (out / "b" / "b_000.jpg").unlink(), "cannot show"),
        (
            lambda out, m: m[m.file_name != "b/b_000.jpg"].to_csv(
                out / "manifest.csv", index=False
            ),
            "has no row for the original",
        ),
        (
            lambda out, m: m.assign(params="").to_csv(out / "manifest.csv", index=False),
            "has no params",
        ),
    ]
    for i, (damage, fragment) in enumerate(cases):
        out = tmp_path / f"out{i}"
        build(src, out, BuildSettings(nmin=4, transforms="flip"), run=ONE)
        damage(out, pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False))
        proc = run_cli(
            "balancer", "preview", out, "--from-manifest", "-o", tmp_path / "p.png", "--rows", "2"
        )
        assert_one_line_error(proc, fragment)
        assert not (tmp_path / "p.png").exists()


def test_a_png_with_a_broken_colour_profile_decodes_quietly_to_the_same_pixels(tmp_path):

    pixels = textured(20, 30, seed=4)[:, :, ::-1]
    Image.fromarray(pixels).save(tmp_path / "icc.png", icc_profile=b"\0" * 200)  # "too short"
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    code = (
        "import sys; from balancer.common.imageio import load; "
        "print(load(sys.argv[1]).image.tobytes() == load(sys.argv[2]).image.tobytes())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, tmp_path / "icc.png", tmp_path / "plain.png"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout.strip() == "True" and proc.stderr == "", proc.stderr
    bare = subprocess.run(
        [sys.executable, "-c", "import cv2, sys; cv2.imread(sys.argv[1])", tmp_path / "icc.png"],
        capture_output=True,
        text=True,
    )
    assert "iCCP" in bare.stderr  # what OpenCV alone prints, once per decode


def test_a_damaged_record_is_one_line_on_every_path_that_reads_it_back(built, small_src, tmp_path):
    """A hand-edited record reaches no check before its shape is: --resume and --overwrite
    refuse it naming the field (and touch nothing), verify names it, and a damaged resume
    state is one line too."""
    from balancer.common.errors import TrainError
    from trainer import resume

    record = json.loads((built / "balance.json").read_text())
    record.update(status="running", newest_source_mtime_ns="yesterday")
    (built / "balance.json").write_text(json.dumps(record))
    before = tree_digest(built)
    for how in ("--resume", "--overwrite"):
        proc = run_cli("balancer", "build", small_src, "--out", built, "--nmin", "5", how)
        assert_one_line_error(proc, "is damaged", "newest_source_mtime_ns")
    assert tree_digest(built) == before
    assert any("newest_source_mtime_ns" in p for p in verify(built, run=ONE)["problems"])
    state = tmp_path / "staged" / "resume" / "state.json"
    state.parent.mkdir(parents=True)
    good = {
        "settings": {},
        "epochs_done": 3,
        "stopped": False,
        "phase": 1,
        "phase1_epochs": None,
        "weights": "epoch-00003.weights.h5",
        "seeds": "epoch-00003.seeds.npy",
        "best_weights": None,
        "checkpoint_best": 0.5,
        "callbacks": {},
    }
    state.write_text(json.dumps({**good, "epochs_done": "3"}))
    with pytest.raises(TrainError, match=r"state.json is damaged \(epochs_done missing or of"):
        resume.load(state.parent.parent, {})
    state.write_text(json.dumps(good))
    assert resume.load(state.parent.parent, {})["epochs_done"] == 3
