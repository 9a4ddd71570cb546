"""The disk a build's plan needs, against the room on OUT's file system."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from .common.errors import BalanceError
from .common.storage import Remote
from .source import Scan


def estimate_bytes(
    found: Scan, targets: Mapping[str, int], *, link: bool, block: int = 4096
) -> int:
    """Disk space the plan needs: originals (unless hard-linked) plus each class's copies at
    its originals' mean size, every file rounded up to whole blocks of the file system."""

    def on_disk(size: float) -> int:
        return -(-int(size) // block) * block

    total = 0
    for label, images in found.images.items():
        mean = sum(im.size for im in images) / len(images)
        if not link:
            total += sum(on_disk(im.size) for im in images)
        total += on_disk(mean) * (targets[label] - len(images))
    return total


def block_size(out: Path | Remote) -> int:
    """The allocation unit of the file system OUT is (or will be) on (1 in a store, which
    bills bytes)."""
    if isinstance(out, Remote):
        return 1
    where = next(d for d in (out, *out.parents) if d.exists())
    try:
        return os.statvfs(where).f_frsize or 4096
    except (OSError, AttributeError):
        return 4096


def check_space(out: Path, needed: int, files: int) -> None:
    """Refuse a plan that cannot fit on OUT's file system."""
    where = next(d for d in (out, *out.parents) if d.exists())
    free = shutil.disk_usage(where).free
    if needed > free:
        raise BalanceError(
            f"the plan writes {files:,} files, about {needed / 2**30:.2f} GiB, but "
            f"{where} has {free / 2**30:.2f} GiB free (fewer copies, another disk, "
            "or --no-space-check to go on anyway)"
        )
