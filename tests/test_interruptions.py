"""Kills, Ctrl-C, failing disks and inputs that change under a run: each ends in one line, leaves
nothing half-written, and a resumed run ends as if it had never stopped."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    REPO,
    SILENT,
    RunControl,
    as_from_a_terminal,
    assert_one_line_error,
    children,
    edit_in_place,
    finished_files,
    gated_env,
    gone,
    held_env,
    make_folder,
    run_cli,
    run_process,
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


FIT = ["--model", "tiny", "--weights", "none", "--batch", "4", "--eager", "--seed", "3"]
FIT += ["--epochs", "2", "--freeze-base", "--fine-tune-epochs", "2", "--patience", "4", "-q"]


def start_fit(data, out, *extra, env=None) -> subprocess.Popen:
    args = ["fit", data, "--out", out, *FIT, *extra]
    return subprocess.Popen(
        [sys.executable, "-c", "from trainer.cli import main; main()", *map(str, args)],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def saved_epochs(runs) -> int:
    states = list(runs.glob(".r.*.partial/resume/state.json"))
    return json.loads(states[0].read_text())["epochs_done"] if states else 0


T = 180  # seconds: a CLI run here that takes longer is hung


ENDLESS = ["--weights", "none", "--batch", "4"]


CTRL_C = {  # command -> (arguments after DATA and OUT, what the interrupted line says)
    "fit": (
        ["--model", "tiny", "--epochs", "100000", "--patience", "100000"],
        "--resume continues from the last finished epoch",
    ),
    "cv": (
        ["--folds", "2", "--model", "tiny", "--epochs", "100000", "--patience", "100000"],
        "finished runs are kept: run the same command again to go on",
    ),
    "study": (
        ["--folds", "2", "--transforms", "rotate", "--model", "tiny", "--epochs", "100000"],
        "finished runs are kept: run the same command again to go on",
    ),
}


SWALLOWING = """
import sys, threading, time
from balancer.common.cli import on_interrupt
import typer
try:
    with on_interrupt("what was kept", deadline=1.0):
        if sys.argv[1] == "swallow":  # a library that catches Ctrl-C and goes on
            while True:
                try:
                    print("ready", flush=True)
                    time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        else:  # a thread that never ends would keep the process alive after Ctrl-C
            threading.Thread(target=lambda: threading.Event().wait()).start()
            print("ready", flush=True)
            time.sleep(3600)
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""


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
    in_place = {k: v for k, v in partial.items() if "/" in k and not k.endswith(".part")}
    assert len(in_place) == 700
    journal = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    listed = dict(zip(journal.file_name, journal.sha256, strict=True))
    assert all(listed[name] == sha for name, sha in in_place.items())  # listed before renamed
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
    args = ["build", src, "--nmin", "120", "--transforms", "flip,rotate", "--quiet"]
    limit = 64 * 1024  # noisy 256 px PNGs are ~190 KiB: their writes fail, small ones pass

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    # One worker writes the chunks in source order, so the small class lands before the first
    # big write fails: with two, which chunk finishes first is the scheduler's choice.
    proc = subprocess.run(
        CLI + [str(a) for a in [*args, "--workers", "1", "--out", tmp_path / "out"]],
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
    run_cli("balancer", *args, "--workers", "2", "--out", out, "--resume", check=True)
    run_cli("balancer", *args, "--workers", "2", "--out", tmp_path / "ref", check=True)
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


@pytest.mark.slow
def test_kill_9_in_each_phase_then_resume_gives_the_uninterrupted_scores(tmp_path):
    data = make_folder(tmp_path / "data", {"a": 8, "b": 8}, size=32)
    ref = run_process(
        "trainer", "fit", data, "--out", tmp_path / "ref", *FIT, "--json", timeout=600
    )
    assert ref.returncode == 0, ref.stderr
    runs = tmp_path / "runs"
    out = runs / "r"
    # killed right after epoch 1 (the frozen base), then after epoch 3 (fine-tuning)
    proc = start_fit(data, out, env=held_env("resume/state.json", 1))
    wait_until(lambda: saved_epochs(runs) == 1, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert_one_line_error(
        run_cli("trainer", "fit", data, "--out", out, *FIT), "--resume continues it"
    )
    proc = start_fit(data, out, "--resume", env=held_env("resume/state.json", 2))
    wait_until(lambda: saved_epochs(runs) == 3, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # killed after the last epoch, while the run folder is written: the state is still there
    proc = start_fit(data, out, "--resume", env=held_env("curves.png", 1))
    wait_until(lambda: any(runs.glob(".r.*.partial/curves.png")), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert saved_epochs(runs) == 4
    assert not out.exists() or not any(out.iterdir()), "a run folder appears only when it ends"
    other = run_cli("trainer", "fit", data, "--out", out, *FIT, "--lr", "0.01", "--resume")
    assert_one_line_error(other, "other settings or data", "config.lr was 0.001, now 0.01")

    loud = [a for a in FIT if a != "-q"]  # the line that says where it resumes is progress
    resumed = run_process(
        "trainer", "fit", data, "--out", out, *loud, "--resume", "--json", timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: training had ended after epoch 4; writing the run folder" in resumed.stderr
    want, got = json.loads(ref.stdout), json.loads(resumed.stdout)
    for key in (
        "accuracy",
        "macro_f1",
        "confusion_matrix",
        "per_class",
        "epochs_run",
        "best_epoch",
    ):
        assert got[key] == want[key], key
    assert got["epochs_run"] == 4
    history = pd.read_csv(out / "history.csv")
    for name in ("history.csv", "files.csv"):  # byte for byte: one line-end rule throughout
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert b"\r\n" in (out / "history.csv").read_bytes()
    assert list(history.epoch) == [1, 2, 3, 4]  # as Keras' console counts
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "ref").iterdir()
    )
    assert sorted(p.name for p in runs.iterdir()) == ["r"], "checkpoints go when the run ends"
    finished = run_cli("trainer", "fit", data, "--out", out, *FIT, "--resume")
    assert_one_line_error(finished, "finished run")


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

    def in_place():
        return sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix != ".part")

    held = in_place()
    release.touch()
    deadline = time.monotonic() + 60  # a hang guard: every worker exits on its own
    while not all(gone(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers kept running after the command died"
        time.sleep(0.05)
    assert in_place() == held, "a file was put in place after the command was killed"
    assert finished_files(out) == 40


def test_a_source_replaced_during_the_build_stops_it_and_names_the_file(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 6, "b": 2}, size=40, ext=".png")
    out, release = tmp_path / "out", tmp_path / "release"
    args = ["build", src, "--out", out, "--nmin", "30", "--transforms", "rotate", "-j", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from balancer.cli import main; main()", *map(str, args), "-q"],
        cwd=REPO,
        env=gated_env(out, 10, release),  # held after 10 of 60 files: 'b' not yet read
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: finished_files(out) == 10, proc)
    victim = src / "b" / "b_001.png"
    edit_in_place(victim)  # other pixels, same inode, its times set back
    release.touch()
    _, stderr = proc.communicate(timeout=T)
    assert proc.returncode == 1 and "Traceback" not in stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "b/b_001.png changed while the build ran" in errors[0]
    assert json.loads((out / "balance.json").read_text())["status"] == "running"
    journal = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert "b/b_001.png" not in set(journal.source)  # nothing made from the replaced file


@pytest.mark.slow
def test_fit_fails_in_one_line_when_its_data_changes_while_it_reads(tmp_path):
    import keras

    from balancer.common.errors import TrainError
    from trainer.config import TrainConfig
    from trainer.data import Parts, holdout, list_folder
    from trainer.training import train_run

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=24)
    folder = list_folder(data)
    train, val = holdout(folder.table, 0.25, seed=0)
    victim = Path(train.path.iloc[0])

    class ReplaceAFile(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                write_image(victim, textured(30, 30, seed=123))

    config = TrainConfig(  # no cache: every epoch reads the files again
        model="tiny", weights="none", epochs=3, batch=4, cache="off"
    )
    (tmp_path / "run").mkdir()
    with pytest.raises(TrainError, match=f"{victim.name}.*changed while it was being read"):
        train_run(
            Parts(train, val),
            folder.class_names,
            config,
            tmp_path / "run",
            control=RunControl(progress=False, callbacks=(ReplaceAFile(),)),
        )


def test_a_killed_cv_of_another_plan_says_how_to_go_on(tmp_path, no_training):
    from trainer.crossval import cross_validate

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=16)
    cv = tmp_path / "cv"
    cross_validate(data, cv, folds=5, control=SILENT)
    record = json.loads((cv / "cv.json").read_text())
    (cv / "cv.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed
    for fold in ("fold-3", "fold-4"):
        for f in (cv / fold).iterdir():
            f.unlink()
        (cv / fold).rmdir()
    proc = run_cli("trainer", "cv", data, "--out", cv, "--folds", "2", "--weights", "none")
    assert_one_line_error(proc, "folds was 5, now 2", "--overwrite replaces it")


def test_ctrl_c_over_an_epochs_end_is_raised_once_its_state_is_saved():
    """A fresh-clone run once ended a Ctrl-C'd `train fit` with exit 1 and a TypeError: the
    interrupt landed in NumPy's fallback for Keras' `Variable.__array__` while the weights
    were saved. Over a held stretch (an epoch's end) the handler only notes it; releasing
    the stretch raises it, once."""
    from balancer.common import interrupts

    interrupts.hold()
    interrupts.deliver()  # Ctrl-C while held: nothing raised yet
    with pytest.raises(KeyboardInterrupt):
        interrupts.release()
    interrupts.release()  # raised once: nothing is left pending
    with pytest.raises(KeyboardInterrupt):
        interrupts.deliver()  # not held: at once


def test_ctrl_c_that_lands_in_a_gc_callback_is_sent_again_not_printed(capfd):
    """A fresh-clone run once printed "Exception ignored in: <function _xla_gc_callback>" and
    a traceback after Ctrl-C: the interrupt was raised inside JAX's garbage-collection
    callback, where Python can only print and drop it. The command's hook sends it again,
    to land in ordinary code, and prints nothing."""
    import gc
    import threading

    from balancer.common import cli

    landed = threading.Event()
    raised = []

    def callback(phase, info):
        if phase == "start" and not raised:
            raised.append(phase)
            raise KeyboardInterrupt  # where Ctrl-C landed: inside a GC callback

    previous = signal.signal(signal.SIGINT, lambda *_: landed.set())
    hook, sys.unraisablehook = sys.unraisablehook, cli._unraisable
    gc.callbacks.append(callback)
    try:
        gc.collect()
        deadline = time.monotonic() + 10
        while not landed.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in this thread, between bytecodes
    finally:
        gc.callbacks.remove(callback)
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)
    assert raised and landed.is_set()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command", CTRL_C)
def test_ctrl_c_stops_every_train_command_in_one_line_saying_how_to_go_on(tmp_path, command):
    """A run that cannot end by itself, Ctrl-C at its second epoch (seen in the epoch lines a
    log gets, with their estimate of the time left): exit 130, one line, no traceback, and
    what a later run needs is kept."""
    import signal
    import threading

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=24)
    out = tmp_path / "runs" / "r"
    extra, hint = CTRL_C[command]
    args = [*command.replace("study", "study transforms").split(), data, "--out", out]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from trainer.cli import main; main()",
            *map(str, args),
            *ENDLESS,
            *extra,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,  # SIGINT unblocked, as a terminal's job has it
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    wait_until(lambda: any("epoch 2/100000" in ln for ln in lines), proc)  # training, for sure
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=T)
    reader.join(timeout=T)
    stderr = "".join(lines)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert "interrupted: " in stderr.splitlines()[-1] and hint in stderr.splitlines()[-1]
    second = next(ln for ln in lines if "epoch 2/100000" in ln)
    assert "left" in second and second.count("\n") == 1  # one line, with an estimate
    if command == "fit":  # the staged run folder, holding what --resume needs, and nothing else
        left = sorted(p.name for p in (tmp_path / "runs").iterdir())
        assert len(left) == 1 and left[0].startswith(".r.") and left[0].endswith(".partial")
        assert (tmp_path / "runs" / left[0] / "resume" / "state.json").is_file()
    else:  # the folder is there, marked unfinished, with no finished run in it yet
        record = json.loads(next(out.glob("*.json")).read_text())
        assert record["status"] == "running"
        assert not list(out.rglob("model.keras"))


@pytest.mark.parametrize("trap", ["swallow", "thread"])
def test_ctrl_c_ends_a_train_command_even_when_a_library_holds_it(trap):
    """What the trainer's commands rely on: after Ctrl-C the process ends within the deadline
    (exit 130, the one line, once), even when the interrupt is swallowed or a thread would
    keep the process alive."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING, trap],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=T)
    assert proc.returncode == 130
    assert stderr.count("interrupted: what was kept") == 1, stderr


def test_verify_while_a_build_runs_says_so_in_one_line(tmp_path):
    """A folder being written is not damaged: verify names the process writing it and exits
    non-zero without listing its files as problems."""
    src = make_folder(tmp_path / "src", {"a": 6, "b": 2}, size=40)
    out, release = tmp_path / "out", tmp_path / "release"
    args = ["build", src, "--out", out, "--nmin", "30", "--transforms", "rotate", "-j", "1", "-q"]
    proc = start(args, env=gated_env(out, 10, release))
    wait_until(lambda: finished_files(out) == 10, proc)
    try:
        checked = run_cli("balancer", "verify", out)
        assert_one_line_error(checked, f"being written by process {proc.pid}")
        assert "problem:" not in checked.stderr
    finally:
        release.touch()
        proc.communicate(timeout=T)
    assert proc.returncode == 0
    assert run_cli("balancer", "verify", out).returncode == 0


@pytest.mark.slow
def test_data_changed_after_it_was_cached_stops_the_run_in_one_line(tmp_path):
    """With the inputs cached after the first epoch a changed file is not read again; the
    stamps checked as each epoch starts still stop the run, naming the file."""
    import keras

    from balancer.common.errors import TrainError
    from trainer import RunControl, TrainConfig, fit

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=32)
    victim = data / "b" / "b_002.jpg"

    class EditAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                edit_in_place(victim)  # same inode, times set back

    config = TrainConfig(model="tiny", weights="none", epochs=3, batch=4, cache="on")
    with pytest.raises(TrainError, match=r"b_002\.jpg: .* the data changed while"):
        fit(
            data,
            tmp_path / "run",
            config,
            callbacks=[EditAfterFirstEpoch()],
            control=RunControl(progress=False),
        )
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.slow
def test_a_full_disk_while_saving_weights_is_one_line_naming_the_file(tmp_path):
    """HDF5 fails to write a weights file (here: the file-size limit): one line naming the
    file, exit 1, no traceback and no crash; a disk too small for what the run saves is
    refused before training starts."""
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=32)
    args = [*FIT[:-1], "--model", "efficientnet-b0", "--image-size", "32", "-q"]

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from trainer.cli import main; main()",
            "fit",
            str(data),
            "--out",
            str(tmp_path / "run"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        preexec_fn=small_files,
        timeout=T,
    )
    assert_one_line_error(proc, "File too large: ", ".weights.h5")
    assert proc.returncode == 1 and "Exception ignored" not in proc.stderr
    assert not (tmp_path / "run").exists()
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small]).returncode:
        return  # no mounts here (not root): the file-size limit above is the same HDF5 path
    try:
        proc = run_process("trainer", "fit", data, "--out", small / "run", *args)
        assert_one_line_error(proc, f"{small} has 2 MiB free", "free some space")
    finally:
        subprocess.run(["umount", small])


def test_a_resumed_run_says_where_it_resumes():
    from trainer.config import TrainConfig
    from trainer.resume import where

    def state(done, phase=1, phase1=None, stopped=False):
        return {"epochs_done": done, "phase": phase, "phase1_epochs": phase1, "stopped": stopped}

    plain = TrainConfig(epochs=10)
    tuned = TrainConfig(epochs=4, freeze_base=True, fine_tune_epochs=3)
    assert where(state(3), plain) == "resuming from epoch 4 of 10 (1-3 were saved)"
    assert where(state(10), plain).endswith("ended after epoch 10; writing the run folder")
    assert "ended after epoch 6" in where(state(6, stopped=True), plain)  # early stopping
    # the first phase ended (early or not): fine-tuning is still to come
    assert where(state(2, stopped=True), tuned) == "resuming from epoch 3 of 7 (1-2 were saved)"
    assert where(state(5, phase=2, phase1=4), tuned).startswith("resuming from epoch 6 of 7")
    assert "ended after epoch 7" in where(state(7, phase=2, phase1=4), tuned)
