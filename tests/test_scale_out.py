"""Scale-out: the balancer on a Dask cluster, the trainer's distribution strategies."""

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helpers import (
    REPO,
    SILENT,
    RunOptions,
    assert_one_line_error,
    make_folder,
    run_cli,
    tree_digest,
)

from balancer import BuildSettings, build
from balancer.common.errors import BalanceError
from balancer.common.parallel import pool

distributed = pytest.importorskip("distributed")  # the `dask` extra, part of `test`


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        yield c


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_folder(
        tmp_path_factory.mktemp("dask") / "src", {"big": 12, "small": 2}, size=120, ext=".png"
    )


SETTINGS = BuildSettings(nmin=400, transforms="rotate,zoom,contrast,cutout=30", seed=5)


@pytest.fixture(scope="module")
def reference(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    build(src, out, SETTINGS, run=RunOptions(workers=2, progress=False))
    return tree_digest(out)


def test_dask_cluster_output_is_byte_identical(src, reference, cluster, tmp_path, recwarn):
    build(
        src,
        tmp_path / "out",
        SETTINGS,
        run=RunOptions(workers=64, backend="dask", scheduler=cluster.scheduler_address),
    )
    assert tree_digest(tmp_path / "out") == reference
    # The remote cluster's threads are not this machine's cores: no warning about them.
    assert not [w for w in recwarn if "cores here" in str(w.message)]


def test_killed_worker_is_rescheduled_and_output_identical(src, reference, cluster, tmp_path):
    out = tmp_path / "out"
    with distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
    errors = []

    def run():
        try:
            build(
                src,
                out,
                SETTINGS,
                run=RunOptions(backend="dask", scheduler=cluster.scheduler_address, progress=False),
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while len(list(out.glob("small/*__aug*"))) < 60 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(sorted(pids.values())[0], signal.SIGKILL)  # mid-run; the nanny restarts it
    thread.join(timeout=300)
    assert not errors, errors
    assert tree_digest(out) == reference
    assert not list(out.rglob("*.part"))


def test_workers_must_see_src_and_out(cluster, tmp_path):
    with distributed.Client(cluster) as client:  # a worker killed by an earlier test restarts
        client.wait_for_workers(2, timeout=60)
    with pool(RunOptions(backend="dask", scheduler=cluster.scheduler_address)) as p:
        assert p.workers == 2
        p.check_shared(tmp_path)
        with pytest.raises(BalanceError, match="cannot see .*/not-mounted: SRC and OUT must be"):
            p.check_shared(tmp_path, tmp_path / "not-mounted")


def test_dask_errors_are_one_line(small_src, tmp_path):
    hide_dask = (
        "import sys; sys.modules['dask'] = sys.modules['dask.distributed'] = None; "
        "from balancer.cli import main; main()"
    )
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            hide_dask,
            "build",
            str(small_src),
            "--out",
            str(tmp_path / "o"),
            "--nmin",
            "3",
            "--backend",
            "dask",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert_one_line_error(proc, "pip install 'balanced-aug[dask]'")
    assert_one_line_error(
        run_cli(
            "balancer",
            "build",
            small_src,
            "--out",
            tmp_path / "o",
            "--nmin",
            "3",
            "--backend",
            "spark",
        ),
        "loky or dask",
    )
    assert_one_line_error(
        run_cli(
            "balancer",
            "build",
            small_src,
            "--out",
            tmp_path / "o",
            "--nmin",
            "3",
            "--scheduler",
            "tcp://x:1",
        ),
        "--backend dask",
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_worker_processes_train_together_and_only_the_chief_writes(tmp_path):
    """MultiWorkerMirroredStrategy for real: two `train fit` processes on this machine, each
    with its TF_CONFIG (localhost ports); both finish, the chief alone writes the run folder,
    and its scores are those of the validation files it lists."""
    import socket
    import subprocess

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=32)
    args = ["fit", data, "--out", tmp_path / "run", "--weights", "none", "--model", "tiny"]
    args += ["--image-size", "32", "--epochs", "2", "--batch", "8", "--quiet", "--json"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "from trainer.cli import main; main()", *map(str, args)],
            cwd=REPO,
            env={
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}}
                ),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=900) for p in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    chief, other = (json.loads(out) for out, _ in outputs)
    assert chief["strategy"] == other["strategy"] == "MultiWorkerMirroredStrategy"
    assert chief["replicas"] == 2 and chief["out"] == str((tmp_path / "run").resolve())
    assert "out" not in other  # the other worker's copy of the outputs was discarded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
    files = pd.read_csv(tmp_path / "run" / "files.csv")
    cm = np.array(chief["confusion_matrix"])
    assert cm.sum() == (files.split == "validation").sum() == chief["data"]["validation"]["files"]
    assert chief["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert chief["confusion_matrix"] == other["confusion_matrix"]  # one model, trained together


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "worker", "index": 0},
            },
            False,
        ),
        (
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            },
            True,
        ),
    ],
)
def test_only_the_chief_writes_the_run_folder(tf_config, chief, tmp_path, monkeypatch):
    """fit() on every worker: the chief's run folder appears, the others write nothing."""
    import trainer.runtime as runtime
    import trainer.training as training

    seen = []

    def fake_train_run(parts, class_names, config, folder, **kwargs):
        seen.append(folder)
        (folder / "metrics.json").write_text("{}")  # stands for what training writes
        return {"accuracy": 1.0}

    monkeypatch.setattr(training, "train_run", fake_train_run)
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    training.fit(data, tmp_path / "run", control=SILENT)
    assert len(seen) == 1  # every worker trains
    assert (tmp_path / "run").exists() is chief
    assert ((tmp_path / "run" / "metrics.json").is_file()) is chief
    assert not seen[0].exists() or chief  # a worker's scratch folder is gone
    assert runtime.is_chief() is chief
