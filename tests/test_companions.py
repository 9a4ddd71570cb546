"""`balance stats / preview / split / verify / transforms`: what each reports, and verify
finding every problem it exists to find."""

import json
import os
from itertools import pairwise

import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    RunOptions,
    make_folder,
    run_cli,
    textured,
    tree_digest,
    write_image,
)

from balancer import BuildSettings, build, split, verify
from balancer.common.opencv import cv2
from balancer.preview import TEXT_H, TILE
from balancer.splitting import split_counts
from balancer.stats import folder_stats


def test_stats_counts_plan_and_balanced_folder(uneven_src, tmp_path):
    s = folder_stats(uneven_src, nmin=6, run=QUIET)
    assert {k: v["count"] for k, v in s["classes"].items()} == {"a": 10, "b": 4, "c": 1}
    assert s["imbalance_ratio"] == 10.0
    assert s["skipped"] == [{"path": "b/broken.jpg", "reason": "not a readable image"}]
    assert s["classes"]["c"] == {"count": 1, "copies": 5, "after": 6}
    assert s["plan"]["copies"] == 7 and s["plan"]["after"] == 22
    block = os.statvfs(uneven_src).f_frsize

    def on_disk(size):  # what a file of this size takes: whole blocks
        return -(-int(size) // block) * block

    mean_c = (uneven_src / "c" / "c_000.jpg").stat().st_size
    mean_b = sum((uneven_src / "b" / f"b_{i:03d}.jpg").stat().st_size for i in range(4)) / 4
    originals = [f for f in uneven_src.rglob("*_*.jpg")]
    assert len(originals) == 15
    assert s["plan"]["estimated_bytes"] == sum(on_disk(f.stat().st_size) for f in originals) + (
        5 * on_disk(mean_c) + 2 * on_disk(mean_b)
    )
    build(uneven_src, tmp_path / "out", BuildSettings(nmin=6), run=ONE)
    proc = run_cli("balancer", "stats", tmp_path / "out", "--json", "--plot", tmp_path / "c.png")
    b = json.loads(proc.stdout)
    assert b["balanced_folder"] and b["classes"]["c"] == {
        "originals": 1,
        "augmented": 5,
        "count": 6,
    }
    assert b["originals_imbalance_ratio"] == 10.0 and b["imbalance_ratio"] == 10 / 6
    assert cv2.imread(str(tmp_path / "c.png")) is not None


def test_preview_sheet_grid(uneven_src, tmp_path):
    proc = run_cli(
        "balancer",
        "preview",
        uneven_src,
        "-o",
        tmp_path / "s.png",
        "--transforms",
        "rotate,zoom,cutout=10",
        "--rows",
        "3",
    )
    assert proc.returncode == 0, proc.stderr
    sheet = cv2.imread(str(tmp_path / "s.png"))
    gap = 4
    assert sheet.shape[:2] == (3 * (TILE + TEXT_H + gap) + gap, 4 * (TILE + gap) + gap)
    build(uneven_src, tmp_path / "out", BuildSettings(nmin=6), run=ONE)
    proc = run_cli(
        "balancer",
        "preview",
        tmp_path / "out",
        "-o",
        tmp_path / "m.png",
        "--from-manifest",
        "--rows",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 rows" in proc.stdout and cv2.imread(str(tmp_path / "m.png")) is not None


def test_split_is_stratified_disjoint_complete_and_deterministic(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 20, "b": 10, "c": 2})
    r1 = split(
        src, tmp_path / "s1", test=0.2, val=0.1, seed=3, run=RunOptions(workers=2, progress=False)
    )
    assert r1.counts == {
        "a": {"train": 14, "val": 2, "test": 4},
        "b": {"train": 7, "val": 1, "test": 2},
        "c": {"train": 1, "val": 0, "test": 1},
    }
    assert any("'c'" in w for w in r1.warnings)
    m = pd.read_csv(tmp_path / "s1" / "split.csv")
    assert sorted(m.source) == sorted(p.relative_to(src).as_posix() for p in src.glob("*/*"))
    assert not m.source.duplicated().any()
    for row in m.itertuples():
        assert (tmp_path / "s1" / row.file_name).read_bytes() == (src / row.source).read_bytes()
    assert sorted(os.listdir(tmp_path / "s1")) == [
        "split.csv",
        "split.json",
        "test",
        "train",
        "val",
    ]
    split(src, tmp_path / "s2", test=0.2, val=0.1, seed=3, run=ONE)
    assert tree_digest(tmp_path / "s1") == tree_digest(tmp_path / "s2")
    split(src, tmp_path / "s3", test=0.2, val=0.1, seed=4, run=ONE)
    assert tree_digest(tmp_path / "s1") != tree_digest(tmp_path / "s3")
    assert split_counts(1, 0.2, 0.1) == (1, 0, 0)


def test_verify_passes_fresh_build_and_names_each_problem(uneven_src, tmp_path):
    out = tmp_path / "out"
    build(uneven_src, out, BuildSettings(nmin=6), run=ONE)
    assert verify(out, run=QUIET) == {
        "ok": True,
        "problems": [],
        "files": 22,
        "classes": {"a": 10, "b": 6, "c": 6},
    }
    victim = sorted((out / "c").iterdir())[1]
    victim.unlink()
    (out / "notes.txt").write_text("stray")
    corrupt = sorted((out / "a").iterdir())[0]
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    proc = run_cli("balancer", "verify", out)
    assert proc.returncode == 1
    rel = f"c/{victim.name}"
    assert f"problem: manifest row without its file: {rel}" in proc.stderr
    assert "problem: stray entry at the root: notes.txt" in proc.stderr
    assert (
        f"problem: file differs from the one written (size or sha256): a/{corrupt.name}"
        in proc.stderr
    )
    assert "class 'c': manifest has 6 images, balance.json says 6" not in proc.stderr
    write_image(out / "c" / "extra.jpg", textured(8, 8))
    problems = verify(out, run=QUIET)["problems"]
    assert "file without a manifest row: c/extra.jpg" in problems


def test_transforms_listing():
    proc = run_cli("balancer", "transforms", "--json")
    info = json.loads(proc.stdout)
    assert list(info) == [
        "blur",
        "crop",
        "flip",
        "rotate",
        "translate",
        "cutout",
        "contrast",
        "height",
        "width",
        "zoom",
    ]
    assert info["crop"]["default"] == 0.8 and info["rotate"]["default"] == 0.125
    text = run_cli("balancer", "transforms").stdout
    assert "--transforms crop=M" in text and "crop,rotate,cutout,width,zoom" in text


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
    assert sum("(size or sha256)" in p for p in problems) == 2
    a.write_bytes(data_a), b.write_bytes(data_b)
    flipped = bytearray(data_a)
    flipped[len(flipped) // 2] ^= 0x01
    a.write_bytes(bytes(flipped))
    assert any(
        "(size or sha256)" in p and a.name in p for p in verify(built, run=QUIET)["problems"]
    )
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


@pytest.mark.parametrize("n", [5, 12, 40])
def test_the_counts_charts_class_names_never_overlap(tmp_path, n):
    """Long class names (the audit's five-class chart overlapped): each name's drawn box is
    clear of its neighbours', at any class count the chart names."""
    from balancer.stats import counts_figure, folder_stats

    names = {f"class-with-a-long-name-{i:02d}": 2 + i % 3 for i in range(n)}
    stats = folder_stats(make_folder(tmp_path / "src", names, size=8), nmin=5)
    fig = counts_figure(stats)
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = sorted(
        (t.get_window_extent() for t in ax.get_yticklabels() if t.get_text()),
        key=lambda b: b.y0,
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == list(names)
    assert all(lower.y1 <= upper.y0 + 0.5 for lower, upper in pairwise(boxes))
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 for b in boxes)  # none cut off
    assert ax.get_tightbbox(renderer).y1 <= inside.y1 + 1
