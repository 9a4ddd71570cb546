"""Peak memory of one worker making a copy of an image at the decoded-size limit.

For each transform, a fresh process decodes a 16-bit RGBA PNG (the deepest image the
balancer accepts), applies the transform and encodes the result, as a build's worker does.
Printed: the process's peak RSS as a multiple of the image's decoded size, so that
`--max-image-mb` bounds a worker's memory. Run: .venv/bin/python bench/memory_large.py [MiB]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import resource, sys
from pathlib import Path
from balancer.common.imageio import encode, load
from balancer.transforms import TRANSFORMS
import numpy as np
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load(Path(sys.argv[2])).image
copy, _ = TRANSFORMS[sys.argv[1]](image, np.random.default_rng(1))
encode(copy, "png")
print(idle, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, image.nbytes)
"""


def main(mib: int = 128) -> None:
    import numpy as np

    from balancer.common.opencv import cv2
    from balancer.transforms import TRANSFORMS

    side = int((mib * 2**20 / 8) ** 0.5)  # 4 channels x 2 bytes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deep.png"
        rng = np.random.default_rng(0)
        image = rng.integers(0, 65535, (side, side, 4), dtype=np.uint16)
        cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        print(f"{side}x{side} 16-bit RGBA PNG: {image.nbytes / 2**20:.0f} MiB decoded")
        print(f"{'transform':<10}  {'peak RSS':>9}  {'over idle':>9}  {'/ image':>7}")
        for name in TRANSFORMS:
            out = subprocess.run(
                [sys.executable, "-c", WORKER, name, str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            idle, peak, nbytes = map(int, out.split())
            grown = (peak - idle) * 1024
            print(
                f"{name:<10}  {peak / 1024:>7.0f}MB  {grown / 2**20:>7.0f}MB  {grown / nbytes:>6.2f}x"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
