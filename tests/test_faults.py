"""Fault tests: kills at many moments, Ctrl-C, write failures, hostile inputs."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import (
    REPO,
    as_from_a_terminal,
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

CLI = [sys.executable, "-c", "from balancer.cli import main; main()"]


def start(args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        CLI + [str(a) for a in args],
        cwd=REPO,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_folder(
        tmp_path_factory.mktemp("faults") / "src", {"big": 20, "small": 2}, size=160, ext=".png"
    )


BUILD = ["--nmin", "700", "--transforms", "rotate,zoom,contrast,blur", "--workers", "2", "--quiet"]


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    run_cli("balancer", "build", corpus, "--out", out, *BUILD, check=True)
    return tree_digest(out)


def test_sigkill_at_many_moments_then_resume_is_identical(corpus, reference, tmp_path):
    """kill -9 of the whole process group at known states: during the scan, right after the
    record, then with 300, 700, 1100 and 1350 of the 1,400 files written (the gate holds
    every writer at that count, so the kill always lands there), resuming in between."""
    out, release = tmp_path / "out", tmp_path / "release"
    for i, files in enumerate([None, 0, 300, 700, 1100, 1350]):
        args = ["build", corpus, "--out", out, *BUILD] + (["--resume"] if i else [])
        proc = start(args, env=gated_env(out, files or 0, release))
        if files is None:
            time.sleep(0.3)  # wherever the first run is: the scan, or writing
        elif files == 0:
            wait_until(lambda: (out / "balance.json").exists(), proc)
        else:
            wait_until(lambda n=files: finished_files(out) == n, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not list(out.rglob(".*")), "no hidden files, ever"
        if files:
            assert finished_files(out) == files
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    run_cli("balancer", "build", corpus, "--out", out, *BUILD, "--resume", check=True)
    assert tree_digest(out) == reference


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(corpus, reference, tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    proc = start(["build", corpus, "--out", out, *BUILD], env=gated_env(out, 300, release))
    wait_until(lambda: finished_files(out) == 300, proc)  # mid-build, held there
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    release.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "--resume" in stderr
    assert not list(out.rglob("*.part")), "no temporary file left after Ctrl-C"
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    run_cli("balancer", "build", corpus, "--out", out, *BUILD, "--resume", check=True)
    assert tree_digest(out) == reference


def test_write_failure_is_one_clear_error_and_resumable(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for i in range(3):  # small, smooth images first (sorted by source), then big noisy ones
        write_image(src / "a_small" / f"{i}.png", textured(48, 48, seed=i))
    for i in range(4):
        write_image(src / "b_big" / f"{i}.png", rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    args = [
        "build",
        src,
        "--nmin",
        "120",
        "--transforms",
        "flip,rotate",
        "--workers",
        "2",
        "--quiet",
    ]
    limit = 64 * 1024  # noisy 256 px PNGs are ~190 KiB: their writes fail, small ones pass

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        CLI + [str(a) for a in [*args, "--out", tmp_path / "out"]],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert_one_line_error(proc, "cannot write", "File too large")
    out = tmp_path / "out"
    assert list(out.glob("a_small/*__aug*")), "the run failed mid-way, after some copies"
    assert not list(out.rglob("*.part")), "no partial file"
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    run_cli("balancer", *args, "--out", out, "--resume", check=True)
    run_cli("balancer", *args, "--out", tmp_path / "ref", check=True)
    assert tree_digest(out) == tree_digest(tmp_path / "ref")


def test_ten_thousand_tiny_files_and_hostile_inputs(tmp_path):
    src = tmp_path / "src"
    tiny = write_image(src / "a" / "0.png", textured(8, 8)).read_bytes()
    for label in ("a", "b"):
        (src / label).mkdir(exist_ok=True)
        for i in range(5000):
            (src / label / f"{i}.png").write_bytes(tiny)
    (src / "a" / "random.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    outside = write_image(tmp_path / "outside.jpg", textured(16, 16))
    (src / "b" / "escape.jpg").symlink_to(outside)
    # A fresh parent reports the largest RSS among the build's processes (CLI and workers).
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            *CLI,
            "build",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--nmin",
            "5002",
            "--transforms",
            "flip",
            "--workers",
            "2",
            "--quiet",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    *report, peak_kb = proc.stdout.strip().splitlines()
    record = json.loads("\n".join(report))
    assert record["files"] == 10004
    assert {s["path"]: s["reason"] for s in record["skipped"]} == {
        "a/random.jpg": "not a readable image",
        "b/escape.jpg": "symbolic link (not followed)",
    }
    assert int(peak_kb) < 400 * 1024, f"peak RSS of one process: {int(peak_kb) // 1024} MB"
