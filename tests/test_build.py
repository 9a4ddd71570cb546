import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import (
    ONE,
    QUIET,
    REPO,
    RunOptions,
    assert_one_line_error,
    finished_files,
    gated_env,
    make_folder,
    run_cli,
    textured,
    tree_digest,
    wait_until,
    write_image,
)

from balancer import BuildSettings, build, read_manifest, replay
from balancer.common.errors import BalanceError
from balancer.common.imageio import encode, load
from balancer.common.opencv import cv2
from balancer.common.ownership import Existing

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


def test_killed_build_resumes_to_identical_result(tmp_path):
    src = make_folder(tmp_path / "src", {"big": 20, "small": 2}, size=160, ext=".png")
    args = [
        "build",
        src,
        "--nmin",
        "600",
        "--transforms",
        "rotate,zoom,contrast,blur",
        "--workers",
        "2",
        "--quiet",
    ]
    run_cli("balancer", *args, "--out", tmp_path / "ref", check=True)
    reference = tree_digest(tmp_path / "ref")

    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-c",
        "from balancer.cli import main; main()",
        *map(str, args),
        "--out",
        str(out),
    ]
    env = gated_env(out, 700, tmp_path / "release")  # writers held at 700 of 1,200 files
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, env=env)
    wait_until(lambda: finished_files(out) == 700, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, mid-run
    proc.wait()
    partial = tree_digest(out)
    assert "manifest.csv" not in partial and len(partial) == 700 + 1  # and balance.json
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]

    assert_one_line_error(run_cli("balancer", *args, "--out", out), "not empty", "--resume")
    changed = [a if a != "600" else "700" for a in args]
    assert_one_line_error(
        run_cli("balancer", *changed, "--out", out, "--resume"),
        "other settings",
        "nmin was 600, now 700",
    )
    run_cli("balancer", *args, "--out", out, "--resume", check=True)
    assert tree_digest(out) == reference


def test_output_exists_overwrite_and_dry_run(small_src, tmp_path):
    out = tmp_path / "out"
    dry = build(small_src, out, BuildSettings(nmin=4), dry_run=True, run=QUIET)
    assert not out.exists() and dry.record["files"] == 14 and not dry.written
    build(small_src, out, BuildSettings(nmin=4), run=ONE)
    with pytest.raises(BalanceError, match="not empty"):
        build(small_src, out, BuildSettings(nmin=5), run=QUIET)
    build(small_src, out, BuildSettings(nmin=5), existing=Existing.OVERWRITE, run=ONE)
    assert len(read_manifest(out)) == 16
    stranger = tmp_path / "mine"
    (stranger / "keep.txt").parent.mkdir()
    (stranger / "keep.txt").write_text("precious")
    with pytest.raises(BalanceError, match="neither resumed nor replaced"):
        build(small_src, stranger, BuildSettings(nmin=5), existing=Existing.OVERWRITE, run=QUIET)
    assert (stranger / "keep.txt").read_text() == "precious"


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


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        pytest.param(
            lambda p: ["build", p.tmp_path / "nope", "--out", p.out, "--nmin", "3"],
            ["source folder not found"],
            id="missing-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src / "cat" / "cat_000.jpg", "--out", p.out, "--nmin", "3"],
            ["not a folder"],
            id="source-is-a-file",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.small_src / "inner", "--nmin", "3"],
            ["inside the source folder"],
            id="out-inside-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.small_src, "--nmin", "3"],
            ["is the source folder"],
            id="out-is-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "3", "--transforms", "warp"],
            ["unknown transform 'warp'", "rotate"],
            id="unknown-transform",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out],
            ["--nmin, --target ('majority') or --per-class"],
            id="no-target",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "x"],
            ["--nmin"],
            id="nmin-not-a-number",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--per-class", "cat"],
            ["NAME=COUNT"],
            id="per-class-no-count",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--per-class", "zebra=3"],
            ["zebra"],
            id="per-class-unknown",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "3", "--quality", "0"],
            ["--quality"],
            id="quality-0",
        ),
    ],
)
def test_cli_errors_are_one_line(small_src, tmp_path, make_args, fragments):
    out = tmp_path / "out"
    p = SimpleNamespace(small_src=small_src, out=out, tmp_path=tmp_path)
    assert_one_line_error(run_cli("balancer", *make_args(p)), *fragments)
    assert not out.exists() and not (small_src / "inner").exists()


def test_cli_prints_table_and_json(small_src, tmp_path):
    proc = run_cli(
        "balancer",
        "build",
        small_src,
        "--out",
        tmp_path / "o",
        "--nmin",
        "4",
        "--dry-run",
        check=True,
    )
    assert "owl" in proc.stdout and "dry run: would write 14 files" in proc.stdout
    proc = run_cli(
        "balancer",
        "build",
        small_src,
        "--out",
        tmp_path / "o",
        "--nmin",
        "4",
        "--json",
        "--quiet",
        check=True,
    )
    assert json.loads(proc.stdout)["counts"]["owl"] == {"before": 1, "copies": 3, "after": 4}


def test_balancer_never_imports_tensorflow(small_src, tmp_path):
    code = (
        "import sys; from balancer.cli import main; sys.argv[1:] = ['build', {src!r}, "
        "'--out', {out!r}, '--nmin', '3', '--workers', '1', '--quiet']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'trainer')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code.format(src=str(small_src), out=str(tmp_path / "o"))],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o" / "manifest.csv").exists()
