"""What the tests share: small, real image folders, and running the tools as a user does."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess as Completed
from unittest.mock import patch

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from balancer.common.opencv import cv2
from balancer.common.ownership import list_files
from balancer.common.parallel import QUIET, RunOptions  # noqa: F401  (tests import them from here)
from trainer import TrainConfig
from trainer.control import RunControl

REPO = Path(__file__).resolve().parents[1]


def textured(h: int, w: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A smooth gradient with a few shapes: every geometric transform visibly moves it."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    planes = []
    for _ in range(min(channels, 3)):
        a, b = rng.uniform(0.2, 1.0, 2)
        plane = (a * xx / max(w - 1, 1) + b * yy / max(h - 1, 1)) / (a + b)
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), max(2, min(h, w) // 4)
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1)
        planes.append(plane)
    img = np.stack(planes, axis=-1) if channels > 1 else planes[0]
    img = (img * top).astype(dtype)
    if channels == 4:
        alpha = np.full((h, w, 1), top, dtype)
        alpha[: h // 3] = top // 2
        img = np.concatenate([img, alpha], axis=-1)
    return img


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, image, params)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def edit_in_place(path: Path) -> None:
    """Other pixels in the same file (same inode), its modification time set back to what it
    was (as `touch -r` or an editor that keeps times does): size and mtime cannot tell."""
    st = path.stat()
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    image[: image.shape[0] // 2] = 255 - image[: image.shape[0] // 2]
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    with open(path, "r+b") as f:  # the same inode, written over
        f.truncate(0)
        f.write(buf.tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def make_folder(root: Path, counts: dict[str, int], size: int = 32, ext: str = ".jpg") -> Path:
    """root/<class>/<class>_<i><ext> with distinct textured images."""
    for k, (label, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            write_image(
                root / label / f"{label}_{i:03d}{ext}", textured(size, size + 8, seed=1000 * k + i)
            )
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file under root."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


TOOLS = {"balancer": "balance", "trainer": "train"}
HUNG = 600  # seconds: a command run as a process that takes longer is hung  # package: the command a user types


def run_cli(tool: str, *args, check: bool = False, env: dict | None = None) -> Completed:
    """Run `balance`/`train` in this process, through typer's CliRunner: the same app and the
    same error door as the console script, without starting an interpreter. `env` adds
    variables for the run; whatever the command sets in os.environ is undone after it."""
    app = importlib.import_module(f"{tool}.cli").app
    argv = [str(a) for a in args]
    with patch.dict(os.environ, env or {}):
        result = CliRunner().invoke(app, argv, prog_name=TOOLS[tool], catch_exceptions=False)
    proc = Completed(argv, result.exit_code, result.stdout, result.stderr)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def run_process(tool: str, *args, check: bool = False, **kwargs) -> Completed:
    """Run `balance`/`train` as a user would, in a subprocess of this interpreter: for what
    belongs to a process (signals, imports, the Keras backend, environment hooks, locks)."""
    code = f"from {tool}.cli import main; main()"
    env = {**kwargs.pop("env", os.environ), "PYTHONIOENCODING": "utf-8"}
    kwargs.setdefault("timeout", HUNG)
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=kwargs.pop("cwd", REPO),
        **kwargs,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_line_error(proc: Completed, *fragments: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


ONE = RunOptions(workers=1, progress=False)  # a library call in one process, no bar
SILENT = RunControl(progress=False)  # a trainer library call without progress output


GATE = Path(__file__).resolve().parent / "gate"


def gated_env(out: Path, at: int, release: Path) -> dict[str, str]:
    """The environment for a command whose writers all stop once OUT holds `at` finished
    files, until `release` exists (tests/gate/sitecustomize.py)."""
    path = os.pathsep.join(p for p in (str(GATE), os.environ.get("PYTHONPATH", "")) if p)
    gate = os.pathsep.join([str(Path(out).absolute()), str(at), str(release)])
    return {**os.environ, "PYTHONPATH": path, "BALANCED_AUG_GATE": gate}


def finished_files(out: Path) -> int:
    """Files in OUT's class folders, less those still being written."""
    if not out.is_dir():
        return 0
    return sum(
        not f.name.endswith(".part") for d in out.iterdir() if d.is_dir() for f in d.iterdir()
    )


def wait_until(condition, proc, hang: float = 300.0) -> None:
    """Poll until condition() holds; the process ending first is a failure, and so is
    `hang` seconds without it (a hang guard: the gate makes every awaited state certain)."""
    import time

    deadline = time.monotonic() + hang
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (exit {proc.returncode}) before the state")
        if time.monotonic() > deadline:
            raise AssertionError("hung: the awaited state never came")
        time.sleep(0.01)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """A process that has exited (or is only a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def held_env(suffix: str, count: int) -> dict[str, str]:
    """The environment for a command that stops for good right after it has renamed its
    `count`-th file ending with `suffix` into place (tests/gate/sitecustomize.py)."""
    path = os.pathsep.join(p for p in (str(GATE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "BALANCED_AUG_HOLD": f"{suffix}{os.pathsep}{count}"}


def as_from_a_terminal() -> None:
    """In the child: SIGINT delivered and default, as for a terminal's foreground job. A
    signal mask is inherited across exec, and a library in this test process (a process
    pool's helper, spawned with SIGINT blocked) can leave SIGINT blocked here; Python never
    unblocks it, so Ctrl-C would never arrive."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fake_metrics(classes=("a", "b"), folder: Path | None = None) -> dict:
    """What a finished run's metrics.json holds, as far as the folder's readers look; with
    `folder`, the listing of the files already in it (what proves the run folder ours)."""
    metrics = {
        "tool": "balanced-aug",
        "kind": "run",
        "class_names": list(classes),
        "config": {"weights": "none", "image_size": 32},
        "accuracy": 0.5,
        "macro_f1": 0.5,
        "weighted_f1": 0.5,
        "epochs_run": 1,
        "scored_epoch": 1,
        "epoch_rule": "the last epoch: every epoch trained, nothing was chosen",
        "per_class": {
            c: {"f1": 0.5, "precision": 0.5, "recall": 0.5, "support": 1} for c in classes
        },
        "data": {"train": {"files": 1}, "validation": {"files": 1}},
    }
    if folder is not None:
        metrics["files"] = list_files(folder, leave_out={"metrics.json"})
    return metrics


def write_metrics(folder: Path, metrics: dict) -> dict:
    """A run folder's metrics.json, written last as the trainer writes it: listing every
    other file of the folder."""
    metrics = {**metrics, "files": list_files(folder, leave_out={"metrics.json"})}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def fake_train_run(parts, class_names, config, folder, **kwargs):
    """Stands for training: writes what a run folder holds."""
    (folder / "model.keras").write_bytes(b"model")
    return write_metrics(folder, fake_metrics(class_names))


def assert_no_leak(train: pd.DataFrame, val: pd.DataFrame) -> None:
    assert (val.origin == "original").all()
    assert not set(train.source) & set(val.source)
    assert not set(train.file) & set(val.file)


# Studies on tiny data, one epoch (their logic, not an architecture, is under test).
TINY = TrainConfig(weights="none", image_size=32, epochs=1, batch=16, patience=1)
MODELS = ("tiny",)  # the logic of a study, not an architecture: the three-block CNN


def run_files(study, arm_slug):
    """The train/validation file lists each fold's run really used."""
    for fold_dir in sorted((study / "runs" / "tiny-focal" / arm_slug).iterdir()):
        yield fold_dir.name, pd.read_csv(fold_dir / "files.csv")
