"""How `balance` behaves from ten thousand to a million source images: time, memory, first output.

    .venv/bin/pip install psutil     # once (the `bench` extra)
    .venv/bin/python bench/scale.py                      # 10k, 100k and 1M files
    .venv/bin/python bench/scale.py --sizes 10000 100000 --build-up-to 100000

Synthetic sources of tiny JPEGs (10 classes, sizes 1:2:...:10), written once and kept under
bench/scale/ (about 4 KiB of disk per file). For each size: `balance stats SRC --nmin N`,
`balance build SRC --out OUT --nmin N --dry-run` and, up to --build-up-to files, a real
build (N = the largest class, so about 0.8 copies per source file). Each command runs with
its stderr on a pseudo-terminal, as a user sees it, so the time to its first progress output
is measured too. Peak RSS is sampled every 20 ms: of the largest single process, and summed
over the process tree (the command and its workers).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np

from balancer.common.opencv import cv2

HERE = Path(__file__).resolve().parent / "scale"
BALANCE = str(Path(sys.executable).with_name("balance"))
WEIGHTS = np.arange(1, 11)  # class k holds a share (k + 1) / 55 of the files


def class_counts(n: int) -> list[int]:
    counts = (n * WEIGHTS // WEIGHTS.sum()).tolist()
    counts[-1] += n - sum(counts)
    return counts


def make_source(n: int) -> Path:
    """bench/scale/src-<n>/c<k>/<i>.jpg, written once (a marker file says it is complete)."""
    root = HERE / f"src-{n}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    blobs = [
        cv2.imencode(".jpg", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))[1].tobytes()
        for _ in range(97)
    ]
    start = time.perf_counter()
    written = 0
    for k, count in enumerate(class_counts(n)):
        folder = root / f"c{k}"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{i:07d}.jpg").write_bytes(blobs[(written + i) % len(blobs)])
        written += count
    (root / ".complete").write_text("")
    print(f"  wrote {n:,} files in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return root


def measure(cmd: list[str]) -> dict:
    """Wall seconds, seconds to the first byte on stderr, peak RSS (one process, the tree)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    env = dict(os.environ)
    start = time.perf_counter()
    proc = psutil.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env
    )
    os.close(slave)
    first: list[float] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            if not first and data.strip():
                first.append(time.perf_counter() - start)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    one = tree = 0
    while proc.poll() is None:
        try:
            sizes = [p.memory_info().rss for p in [proc, *proc.children(recursive=True)]]
            one, tree = max(one, *sizes), max(tree, sum(sizes))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    reader.join(timeout=5)
    os.close(master)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return {
        "seconds": seconds,
        "first": first[0] if first else float("nan"),
        "one_mb": one / 2**20,
        "tree_mb": tree / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--build-up-to", type=int, default=100_000, help="largest real build")
    args = ap.parse_args()
    print(
        f"{'files':>9} {'command':<16} {'seconds':>8} {'us/file':>8} {'first out':>9} "
        f"{'peak MB (1 proc)':>16} {'peak MB (tree)':>14}"
    )
    for n in args.sizes:
        src = make_source(n)
        nmin = str(max(class_counts(n)))
        out = HERE / f"out-{n}"
        shutil.rmtree(out, ignore_errors=True)
        commands = {
            "stats": [BALANCE, "stats", str(src), "--nmin", nmin],
            "build --dry-run": [
                BALANCE,
                "build",
                str(src),
                "--out",
                str(out),
                "--nmin",
                nmin,
                "--dry-run",
            ],
        }
        if n <= args.build_up_to:
            commands["build"] = [BALANCE, "build", str(src), "--out", str(out), "--nmin", nmin]
        for name, cmd in commands.items():
            m = measure(cmd)
            print(
                f"{n:>9,} {name:<16} {m['seconds']:>8.1f} {m['seconds'] / n * 1e6:>8.0f} "
                f"{m['first']:>8.2f}s {m['one_mb']:>16.0f} {m['tree_mb']:>14.0f}",
                flush=True,
            )
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
