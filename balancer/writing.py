"""Make a plan's files: every file written whole under its final name, or not at all.

The machinery `balance build`, `balance split` and the trainer's study share: run the plan's
items on the process pool (each original decoded once per task), keep the files already
there (resume), and sweep what an interrupted run left. `render` is the one function that
turns an original and an item into a file's bytes: the writer uses it, and so does
`balance verify --replay`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .common import imageio
from .common.atomic import TEMP_SUFFIX, copy_atomic, parent_gone, write_atomic
from .common.errors import OVERWRITE, BalanceError
from .common.limits import IMAGE_MB, JPEG_QUALITY, MAX_IMAGE_MB, QUALITY, image_bytes
from .common.parallel import chunked, run_chunks
from .plan import Item
from .transforms import TRANSFORMS, Params

WRITTEN_SUFFIXES = (".jpg", ".png", TEMP_SUFFIX)  # what the tools write in a class folder


@dataclass(frozen=True)
class Writing:
    """How files are written: what decides their bytes (quality), the largest image decoded
    (the limit the sources were scanned with) and whether originals are hard-linked."""

    quality: int = JPEG_QUALITY
    max_image_mb: int = MAX_IMAGE_MB
    link: bool = False

    def __post_init__(self) -> None:
        QUALITY.check(self.quality, "quality")
        IMAGE_MB.check(self.max_image_mb, "max_image_mb")

    @property
    def max_bytes(self) -> int:
        """The decoded-size limit in bytes."""
        return image_bytes(self.max_image_mb)


def is_written(name: str) -> bool:
    """A file name the tools write in a class folder (an image, or one being written)."""
    return name.endswith(WRITTEN_SUFFIXES) and not name.startswith(".")


def output_format(file_name: str) -> str:
    """The format a planned file is written in, from its name: 'jpeg' or 'png'."""
    return "jpeg" if file_name.lower().endswith((".jpg", ".jpeg")) else "png"


def render(
    image: np.ndarray,
    *,
    transform: str,
    magnitude: float | None,
    seed: int | None,
    fmt: str,
    quality: int,
) -> tuple[Params | None, bytes]:
    """(drawn params, file bytes) of one planned file from its upright original: the
    transform's draw from the item's own seed, applied, encoded. transform="" re-encodes."""
    params = None
    if transform:
        t = TRANSFORMS[transform]
        params = t.draw(image.shape, np.random.default_rng(seed), t.check(magnitude))
        image = t.apply(image, params)
    return params, imageio.encode(image, fmt, quality)


def _make(item: Item, cache: list, *, src: str, out: str, writing: Writing) -> tuple:
    """Write one item's file unless present; return (params or None, sha256 of the file)."""
    dst, source = Path(out, item.file_name), Path(src, item.source)
    expect = (item.size, item.mtime_ns) if item.size else None
    if dst.exists():  # a resumed run: the file is whole, only its params are wanted
        shape = partial(_upright_shape, source, item, cache, writing.max_bytes)
        return _params(item, shape), _sha256(imageio.read_bytes(dst))
    if item.action == "copy":
        data = imageio.read_bytes(source, expect=expect)
        if writing.link:
            copy_atomic(source, dst, link=True, check=partial(_same_file, expect=expect))
        else:
            write_atomic(dst, data)
        return None, _sha256(data)
    image = _pixels(source, item, cache, writing.max_bytes)
    if item.action == "augment":
        params, data = render(
            image,
            transform=item.transform,
            magnitude=item.magnitude,
            seed=item.seed,
            fmt=output_format(item.file_name),
            quality=writing.quality,
        )
    else:  # re-encoded original
        params, data = (
            _params(item, lambda: image.shape),
            imageio.encode(image, output_format(item.file_name), writing.quality),
        )
    write_atomic(dst, data)
    return params, _sha256(data)


def _params(item: Item, shape: Callable[[], tuple[int, ...]]) -> Params | None:
    """An item's params for the manifest; `shape()`, the upright image's, is called only for a
    draw."""
    if item.action == "copy":
        return None
    if item.action == "encode":
        return {"exif_orientation": item.orientation} if item.orientation != 1 else None
    t = TRANSFORMS[item.transform]
    return t.draw(shape(), np.random.default_rng(item.seed), t.check(item.magnitude))


def _pixels(source: Path, item: Item, cache: list, max_bytes: int) -> np.ndarray:
    """The upright image of `source`; tasks come sorted by source, so each original is
    decoded once per task."""
    if cache[0] != item.source:
        expect = (item.size, item.mtime_ns) if item.size else None
        cache[:] = [item.source, imageio.load(source, max_bytes=max_bytes, expect=expect).image]
    return cache[1]


def _upright_shape(source: Path, item: Item, cache: list, max_bytes: int) -> tuple:
    """The upright image's shape without decoding it where the header tells: a JPEG's or
    PNG's decoder gives exactly the header's size (turned by its EXIF orientation)."""
    if cache[0] == item.source:
        return cache[1].shape
    try:
        data = imageio.read_bytes(source, expect=(item.size, item.mtime_ns) if item.size else None)
    except OSError:
        data = b""  # decoding it says why
    header = imageio.read_header(data) if imageio.sniff(data) != "other" else None
    if header is None:
        return _pixels(source, item, cache, max_bytes).shape
    width, height = header.upright_size
    return (height, width)


def _same_file(linked: Path, expect: imageio.Stamp | None) -> None:
    """A hard link made after the bytes were read must still be the file the scan saw."""
    imageio.check_stamp(os.stat(linked), expect)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _work_chunk(src: str, out: str, writing: Writing, tasks: list[Item]) -> list:
    """Make each item's file unless it is already there; return (file_name, params as the
    manifest's JSON text or None, sha256): small to send back, small to keep."""
    results, cache = [], [None, None]
    for item in tasks:
        if parent_gone():
            raise SystemExit(1)
        try:
            params, sha = _make(item, cache, src=src, out=out, writing=writing)
            text = None if params is None else json.dumps(params, sort_keys=True)
            results.append((item.file_name, text, sha))
        except imageio.SourceChanged as exc:
            raise BalanceError(
                f"{item.source} changed while the build ran ({exc}): the output is not "
                f"complete; run the build again with {OVERWRITE} once the source is settled"
            ) from None
        except imageio.BadImage as exc:
            raise BalanceError(f"{item.source} changed since it was checked: {exc}") from None
        except OSError as exc:
            raise BalanceError(
                f"cannot write {Path(out, item.file_name)}: {exc.strerror or exc}"
            ) from None
    return results


def make_folders(out: Path, items: list[Item]) -> None:
    """The plan's folders, and nothing in them that the plan does not name."""
    try:
        for folder in sorted({str(Path(it.file_name).parent) for it in items}):
            (out / folder).mkdir(parents=True, exist_ok=True)
        sweep(out, items)
    except OSError as exc:
        raise BalanceError(f"cannot write to {out}: {exc.strerror or exc}") from None


def sweep(out: Path, items: list[Item]) -> int:
    """Remove temporaries, and files in the plan's folders that the plan does not name
    (left by an interrupted run with other settings; only we write there, under the lock)."""
    planned = {it.file_name for it in items}
    removed = 0
    for folder in sorted({Path(it.file_name).parent for it in items}):
        if not (out / folder).is_dir():
            continue
        for f in (out / folder).iterdir():
            rel = (folder / f.name).as_posix()
            if f.name.endswith(TEMP_SUFFIX) or rel not in planned:
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def run_items(
    root: Path,
    out: Path,
    items: list[Item],
    workers: int,
    writing: Writing = Writing(),
    *,
    progress: bool = True,
) -> dict[str, tuple]:
    """Make every item's file (those present are kept); {file_name: (params JSON, sha256)}.
    `writing.max_image_mb` must be the limit the items' sources were scanned with."""
    make_folders(out, items)
    tasks = sorted(items, key=lambda it: (it.source, it.file_name))
    chunks = chunked(tasks, workers, key=lambda it: it.source)
    work = partial(_work_chunk, str(root), str(out), writing)
    written: dict[str, tuple] = {}
    try:
        for _, results in run_chunks(work, chunks, workers, progress=progress, desc="writing"):
            written.update((name, (params, sha)) for name, params, sha in results)
    except BaseException:
        sweep(out, items)  # workers stopped mid-write leave temporaries behind
        raise
    sweep(out, items)  # a killed run's stray worker may have finished a file after the first sweep
    return written
