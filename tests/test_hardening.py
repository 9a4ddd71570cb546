"""Nothing lost, nothing mixed, nothing hangs: hostile inputs, options and interruptions.

Each test asserts bytes, counts and exit codes. Every subprocess has a timeout, so a hang
is a failure, not a stuck suite.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    REPO,
    assert_one_line_error,
    children,
    finished_files,
    gated_env,
    gone,
    make_folder,
    run_cli,
    run_process,
    textured,
    tree_digest,
    wait_until,
    write_image,
)
from PIL import Image, ImageOps

from balancer import BuildSettings, build, split, verify
from balancer.common.errors import BalanceError, UserError
from balancer.common.imageio import load
from balancer.common.opencv import cv2
from balancer.common.ownership import Existing, locked
from balancer.source import list_source, scan

# -- 1. --overwrite deletes only what the tool wrote, proven by content -------------------


def test_overwrite_refuses_a_folder_that_only_has_a_record_name(small_src, tmp_path):
    for name, content in (
        ("balance.json", '{"anything": 1}'),
        ("balance.json", "not json\x00"),
        ("balance.json", "[1, 2]"),
        ("split.csv", "file_name\n"),
    ):
        out = tmp_path / f"o-{len(content)}-{name}"
        out.mkdir()
        (out / name).write_text(content)
        (out / "photo.jpg").write_bytes(b"precious")
        before = tree_digest(out)
        command = (
            ["build", small_src, "--out", out, "--nmin", "4"]
            if name == "balance.json"
            else ["split", small_src, "--out", out]
        )
        assert_one_line_error(run_cli("balancer", *command, "--overwrite"))
        assert tree_digest(out) == before


def test_overwrite_refuses_an_output_holding_a_users_file_and_deletes_nothing(built, small_src):
    for extra in (built / "notes.txt", built / "runs" / "model.txt", built / "cat" / "notes.txt"):
        extra.parent.mkdir(exist_ok=True)
        extra.write_text("mine")
        before = tree_digest(built)
        proc = run_cli("balancer", "build", small_src, "--out", built, "--nmin", "4", "--overwrite")
        assert_one_line_error(proc, repr(extra.relative_to(built).parts[0]))
        assert tree_digest(built) == before
        extra.unlink()
        if extra.parent != built and not any(extra.parent.iterdir()):
            extra.parent.rmdir()
    run_cli(
        "balancer", "build", small_src, "--out", built, "--nmin", "4", "--overwrite", check=True
    )
    assert len(pd.read_csv(built / "manifest.csv")) == 6 + 4 + 4


def test_no_output_is_an_input_or_around_one(small_src, tmp_path):
    data = tmp_path / "data"
    small_src.rename(data)
    for out in (tmp_path, data, data / "cat"):
        before = tree_digest(data)
        assert_one_line_error(
            run_cli("balancer", "build", data, "--out", out, "--nmin", "4", "--overwrite"),
            "source folder",
        )
        assert_one_line_error(
            run_cli("trainer", "fit", data, "--out", out, "--overwrite", "--weights", "none"),
            "data folder",
        )
        assert tree_digest(data) == before


def fake_run(folder: Path, classes=("cat", "dog", "owl")) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"model")
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "tool": "balanced-aug",
                "kind": "run",
                "class_names": list(classes),
                "config": {"weights": "none", "image_size": 32},
                "accuracy": 0.5,
                "macro_f1": 0.5,
                "weighted_f1": 0.5,
                "epochs_run": 1,
                "per_class": {c: {"f1": 0.5} for c in classes},
                "data": {"train": {}, "validation": {}},
            }
        )
    )
    return folder


def test_evaluate_never_replaces_the_run_it_evaluates(small_src, tmp_path):
    run = fake_run(tmp_path / "runs" / "b0")
    before = tree_digest(run)
    assert_one_line_error(
        run_cli("trainer", "evaluate", run, small_src, "--out", run, "--overwrite"),
        "is the run folder",
    )
    assert_one_line_error(
        run_cli("trainer", "evaluate", run, small_src, "--out", run.parent, "--overwrite"),
        "contains the run folder",
    )
    assert tree_digest(run) == before


def test_fit_overwrite_needs_a_proven_run_folder(small_src, tmp_path):
    for record in ({"class_names": []}, {"tool": "balanced-aug", "kind": "cv"}):
        out = tmp_path / f"run{len(record)}"
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps(record))
        assert_one_line_error(
            run_cli("trainer", "fit", small_src, "--out", out, "--overwrite", "--weights", "none"),
            "metrics.json",
        )
        assert (out / "metrics.json").exists()
    run = fake_run(tmp_path / "real")
    (run / "notes.md").write_text("mine")
    assert_one_line_error(
        run_cli("trainer", "fit", small_src, "--out", run, "--overwrite", "--weights", "none"),
        "'notes.md'",
    )
    assert (run / "notes.md").read_text() == "mine" and (run / "model.keras").exists()


# -- 2. one writer per output; no writes once the command is gone -------------------------


def test_a_second_command_on_a_locked_output_names_the_holder(small_src, tmp_path):
    out = tmp_path / "out"
    with locked(out):
        proc = run_process("balancer", "build", small_src, "--out", out, "--nmin", "4")
        assert_one_line_error(proc, f"in use by process {os.getpid()}")
        proc = run_process("balancer", "split", small_src, "--out", out)
        assert_one_line_error(proc, f"in use by process {os.getpid()}")
    assert not any(out.iterdir())


def test_workers_stop_when_the_command_is_killed(tmp_path):
    """kill -9 of the command alone (its pool workers outlive it) while every worker is held
    before its next file: once let go, no worker puts another file in place."""
    src = make_folder(tmp_path / "src", {"big": 4, "small": 2}, size=480, ext=".png")
    out, release = tmp_path / "out", tmp_path / "release"
    args = ["build", src, "--out", out, "--nmin", "600", "--transforms", "rotate,zoom"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from balancer.cli import main; main()",
            *map(str, args),
            "--workers",
            "2",
            "--quiet",
        ],
        cwd=REPO,
        env=gated_env(out, 40, release),
    )
    wait_until(lambda: finished_files(out) == 40, proc)
    workers = children(proc.pid)
    assert workers, "the pool's processes"
    proc.kill()
    proc.wait()
    held = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    release.touch()
    deadline = time.monotonic() + 300  # a hang guard: every worker exits once let go
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers kept running after the command died"
        time.sleep(0.05)
    after = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert after == held, "a worker put a file in place after the command was killed"
    assert finished_files(out) == 40 and not [p for p in after if p.suffix == ".part"]


def test_resume_removes_files_the_plan_does_not_name(built, small_src):
    reference = tree_digest(built)
    record = json.loads((built / "balance.json").read_text())
    record["status"] = "running"
    (built / "balance.json").write_text(json.dumps(record))
    write_image(built / "owl" / "owl_000__aug0009_rotate.jpg", textured(32, 40, seed=9))
    (built / "cat" / "cat_000.jpg.part").write_bytes(b"half")
    build(
        small_src,
        built,
        BuildSettings(nmin=5, transforms="rotate,contrast,flip"),
        existing=Existing.RESUME,
        run=ONE,
    )
    assert tree_digest(built) == reference


def test_resume_decodes_only_the_originals_with_a_copy_left_to_make(tmp_path, monkeypatch):
    """Where an original's files are all there, a resumed build takes the image's size for
    its copies' params from the header (JPEG and PNG, EXIF rotation included) instead of
    decoding it, and writes what an uninterrupted build writes, manifest included."""
    import balancer.common.imageio

    src = make_folder(tmp_path / "src", {"a": 6, "b": 1}, size=30)
    write_image(src / "b" / "wide.png", textured(20, 52, seed=5))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 24 x 40, shown (and balanced) 40 x 24
    phone = Image.fromarray(cv2.cvtColor(textured(24, 40, seed=7), cv2.COLOR_BGR2RGB))
    phone.save(src / "b" / "phone.jpg", exif=exif, quality=95)
    write_image(src / "b" / "odd.bmp", textured(26, 34, seed=8))  # no header shortcut
    settings = BuildSettings(nmin=30, transforms="crop=0.5,cutout=0.4,rotate")
    ref, out = tmp_path / "ref", tmp_path / "out"
    build(src, ref, settings, run=ONE)
    reference = tree_digest(ref)

    shutil.copytree(ref, out)  # as a killed run leaves it: no manifest, some copies missing
    (out / "manifest.csv").unlink()
    record = json.loads((out / "balance.json").read_text())
    record["status"] = "running"
    (out / "balance.json").write_text(json.dumps(record))
    missing = sorted((out / "b").glob("b_000__aug*"))
    assert len(missing) >= 5
    for f in missing:
        f.unlink()
    decoded = []
    real = balancer.common.imageio.load

    def counting(path, *, check_only=False, **kwargs):
        if not check_only:
            decoded.append(Path(path).name)
        return real(path, check_only=check_only, **kwargs)

    monkeypatch.setattr(balancer.common.imageio, "load", counting)
    build(src, out, settings, existing=Existing.RESUME, run=ONE)
    assert sorted(set(decoded)) == ["b_000.jpg", "odd.bmp"]
    assert tree_digest(out) == reference


# -- 3. decompression bombs by header; a limit on decoded bytes ----------------------------


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims another size."""
    data = bytearray(cv2.imencode(".jpg", textured(16, 16))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


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


# -- 4. EXIF orientation ---------------------------------------------------------------------


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


# -- 5. every legal name and file type; one bad entry never stops a build -----------------


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


def test_a_killed_split_can_be_resumed_or_overwritten(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 8, "b": 5})
    ref = tmp_path / "ref"
    split(src, ref, test=0.25, seed=1, run=ONE)
    out = tmp_path / "out"
    split(src, out, test=0.25, seed=1, run=ONE)
    record = json.loads((out / "split.json").read_text())
    record["status"] = "running"  # as a kill -9 mid-copy leaves it: no split.csv yet
    (out / "split.json").write_text(json.dumps(record))
    (out / "split.csv").unlink()
    next(out.glob("train/a/*")).unlink()
    (out / "test" / "a" / "x.jpg.part").write_bytes(b"half")
    assert_one_line_error(
        run_cli("balancer", "split", src, "--out", out, "--test", "0.25", "--seed", "1"), "--resume"
    )
    run_cli(
        "balancer",
        "split",
        src,
        "--out",
        out,
        "--test",
        "0.25",
        "--seed",
        "1",
        "--resume",
        check=True,
    )
    assert tree_digest(out) == tree_digest(ref)
    run_cli("balancer", "split", src, "--out", out, "--test", "0.5", "--overwrite", check=True)
    assert pd.read_csv(out / "split.csv").split.value_counts().to_dict() == {"train": 7, "test": 6}


# -- 6. records round-trip any name ----------------------------------------------------------


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


# -- 7. bad options are refused before anything is written ---------------------------------


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--transforms", "rotate=nan"], "not a finite number"),
        (["--transforms", "zoom=-nan"], "not a finite number"),
        (["--transforms", "crop=inf"], "not a finite number"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**63-1]"),
        (["--nmin", "12345678901234567890"], "--nmin must be an integer in [1, "),
        (["--nmin", "100000000", "--dry-run"], "GiB free"),
        (["--max-image-mb", "0"], "--max-image-mb"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(small_src, tmp_path, option, fragment):
    out = tmp_path / "out"
    args = ["build", small_src, "--out", out, *option]
    if "--nmin" not in option:
        args += ["--nmin", "4"]
    assert_one_line_error(run_cli("balancer", *args), fragment)
    assert not out.exists()


def test_too_many_workers_are_capped_with_a_warning(small_src, tmp_path):
    proc = run_cli(
        "balancer",
        "build",
        small_src,
        "--out",
        tmp_path / "o",
        "--nmin",
        "3",
        "--workers",
        "512",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: --workers 512 is more than the" in proc.stderr


# -- 8. verify finds what it exists to find, and never crashes or hangs -------------------


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda o: (o / "manifest.csv").write_bytes(b""), "manifest.csv is not a readable CSV"),
        (lambda o: (o / "manifest.csv").write_bytes(bytes(range(256)) * 4), "manifest.csv"),
        (
            lambda o: (o / "manifest.csv").write_text('file_name,label\n"a/x.jpg,a\n'),
            "manifest.csv",
        ),
        (
            lambda o: (o / "balance.json").write_text("{nope"),
            "balance.json is not a readable record",
        ),
        (lambda o: (o / "balance.json").write_text("[]"), "not a JSON object"),
        (lambda o: (o / "balance.json").write_text('{"counts": [1]}'), "counts"),
    ],
)
def test_verify_reports_unparseable_records_as_problems(built, damage, fragment):
    damage(built)
    proc = run_cli("balancer", "verify", built, "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert any(
        line.startswith("problem:") and fragment in line for line in proc.stderr.splitlines()
    )


def test_verify_catches_changed_bytes_swaps_edits_and_fifos(built):
    assert verify(built, run=ONE)["ok"]
    copies = sorted(built.glob("owl/*__aug*"))
    a, b = copies[0], copies[1]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b), b.write_bytes(data_a)  # swapped: both still decode
    problems = verify(built, run=ONE)["problems"]
    assert sum("sha256 mismatch" in p for p in problems) == 2
    a.write_bytes(data_a), b.write_bytes(data_b)
    flipped = bytearray(data_a)
    flipped[len(flipped) // 2] ^= 0x01
    a.write_bytes(bytes(flipped))
    assert any("sha256 mismatch" in p and a.name in p for p in verify(built, run=QUIET)["problems"])
    a.unlink()
    os.mkfifo(a)
    proc = run_cli("balancer", "verify", built, "--quiet")
    assert (
        proc.returncode == 1
        and f"not a regular file (FIFO, socket or device) in a class folder: owl/{a.name}"
        in proc.stderr
    )
    a.unlink()
    a.write_bytes(data_a)

    m = pd.read_csv(built / "manifest.csv", dtype=str, keep_default_na=False)
    row = m.index[m.origin == "augmented"][0]
    params = json.loads(m.params[row])
    key = next(iter(params))
    params[key] = (
        1.5
        if isinstance(params[key], float)
        else ("both" if params[key] != "both" else "horizontal")
    )
    m.loc[row, "params"] = json.dumps(params)
    m.to_csv(built / "manifest.csv", index=False, lineterminator="\r\n")
    assert any("manifest.csv was edited" in p for p in verify(built, run=QUIET)["problems"])
    record = json.loads((built / "balance.json").read_text())
    del record["manifest_sha256"]  # a forger who also fixed the record: only replay can tell
    (built / "balance.json").write_text(json.dumps(record))
    assert verify(built, run=QUIET)["ok"]
    problems = verify(built, replay=True, run=QUIET)["problems"]
    assert problems == [
        f"params in the manifest are not the ones its seed draws: {m.file_name[row]}"
    ]


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

    m.loc[m.file_name == f"b/{victim.name}", "sha256"] = hashlib.sha256(
        victim.read_bytes()
    ).hexdigest()
    m.to_csv(out / "manifest.csv", index=False, lineterminator="\r\n")
    record = json.loads((out / "balance.json").read_text())
    record.pop("manifest_sha256")
    (out / "balance.json").write_text(json.dumps(record))
    problems = verify(out, replay=True, run=QUIET)["problems"]
    assert problems == [f"copy differs from its replay (original + params): b/{victim.name}"]


# -- 9. --resume notices a source edited in place -------------------------------------------


def test_resume_refuses_a_source_edited_in_place(built, small_src):
    record = json.loads((built / "balance.json").read_text())
    record["status"] = "running"
    (built / "balance.json").write_text(json.dumps(record))
    victim = small_src / "dog" / "dog_001.jpg"
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same size, newer
    before = tree_digest(built)
    proc = run_cli(
        "balancer",
        "build",
        small_src,
        "--out",
        built,
        "--nmin",
        "5",
        "--transforms",
        "rotate,contrast,flip",
        "--resume",
    )
    assert_one_line_error(proc, "source changed", "dog/dog_001.jpg")
    assert tree_digest(built) == before


def test_study_overwrite_clears_only_a_proven_study(tmp_path):
    from balancer.common.ownership import claim
    from trainer.outputs import STUDY

    def _open_study(out, settings, overwrite):  # as run_study opens its folder
        existing = Existing.OVERWRITE if overwrite else Existing.RESUME
        with claim(out, STUDY, inputs={}, existing=existing) as c:
            c.check_resume(settings, "study or data")
            c.begin({"settings": settings})

    out = tmp_path / "study"
    (out / "runs" / "b0").mkdir(parents=True)
    (out / "results.csv").write_text("arm\n")
    (out / "study.json").write_text(
        json.dumps({"tool": "balanced-aug", "kind": "study", "settings": {"folds": 2}})
    )
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    with pytest.raises(BalanceError, match="'notes.txt'"):
        _open_study(out, {"folds": 3}, overwrite=True)
    assert tree_digest(out) == before
    with pytest.raises(UserError, match="other study or data .folds was 2, now 3"):
        (out / "notes.txt").unlink()
        _open_study(out, {"folds": 3}, overwrite=False)
    _open_study(out, {"folds": 3}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]
    assert json.loads((out / "study.json").read_text())["settings"]["folds"] == 3


# -- 10. the trainer's outputs on shared storage ----------------------------------------------


def test_run_folders_honour_the_umask(tmp_path):
    from balancer.common.ownership import staged

    old = os.umask(0o022)
    try:
        with staged(tmp_path / "run") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


def test_a_class_missing_from_validation_is_named(recwarn):
    from trainer.training import absent_classes

    train = pd.DataFrame({"label": ["a", "a", "b", "c"], "origin": "original"})
    val = pd.DataFrame({"label": ["a", "b"], "origin": "original"})
    assert absent_classes(val, ["a", "b", "c"], train) == [
        "class 'c' has no validation image (1 original(s) in all, all in training): "
        "its F1 is not measured and counts as 0 in macro F1"
    ]
    assert any("class 'c'" in str(w.message) for w in recwarn)
