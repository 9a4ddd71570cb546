"""A killed `train fit` resumes from its last finished epoch and ends as if never killed."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from helpers import (
    REPO,
    assert_one_line_error,
    held_env,
    make_folder,
    run_cli,
    run_process,
    wait_until,
)

pytestmark = pytest.mark.slow  # every test here trains

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
    assert not out.exists() or not any(out.iterdir()), "a run folder appears only when it ends"
    other = run_cli("trainer", "fit", data, "--out", out, *FIT, "--lr", "0.01", "--resume")
    assert_one_line_error(other, "other settings or data", "config.lr was 0.0001, now 0.01")

    resumed = run_process(
        "trainer", "fit", data, "--out", out, *FIT, "--resume", "--json", timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
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
    assert history.equals(pd.read_csv(tmp_path / "ref" / "history.csv"))
    assert list(history.epoch) == [1, 2, 3, 4]  # as Keras' console counts
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "ref").iterdir()
    )
    assert sorted(p.name for p in runs.iterdir()) == ["r"], "checkpoints go when the run ends"
    finished = run_cli("trainer", "fit", data, "--out", out, *FIT, "--resume")
    assert_one_line_error(finished, "finished run")
