"""What the tests share: small, real image folders, and running the tools as a user does."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from balancer.opencv import cv2

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


def run_cli(tool: str, *args, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Run `balance`/`train` as a user would, in a subprocess of this interpreter."""
    code = f"from {tool}.cli import main; main()"
    env = {**kwargs.pop("env", os.environ), "PYTHONIOENCODING": "utf-8"}
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


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
