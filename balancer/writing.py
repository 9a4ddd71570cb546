"""Make a plan's files: every file written whole under its final name, or not at all.

The machinery `balance build`, `balance split` and the trainer's study share: run the plan's
items on the process pool (each original decoded once per task), keep the files already
there (resume), and sweep what an interrupted run left.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from . import imageio
from .errors import BalanceError
from .ownership import OutputKind, clear, write_json
from .parallel import chunked, run_chunks
from .plan import Item
from .transforms import TRANSFORMS

WRITTEN_SUFFIXES = (".jpg", ".png", imageio.TEMP_SUFFIX)  # what the tools write in a class folder


def is_written(name: str) -> bool:
    """A file name the tools write in a class folder (an image, or one being written)."""
    return name.endswith(WRITTEN_SUFFIXES) and not name.startswith(".")


def _make(
    item: Item, cache: list, *, src: str, out: str, quality: int, link: bool, max_bytes: int | None
) -> tuple:
    """Write one item's file unless present; return (params or None, sha256 of the file)."""
    dst, source = Path(out, item.file_name), Path(src, item.source)
    if dst.exists():  # a resumed run: the file is whole, only its params are wanted
        shape = partial(_upright_shape, source, item.source, cache, max_bytes)
        return _params(item, shape), _sha256(imageio.read_bytes(dst))
    if item.action == "copy":
        data = imageio.read_bytes(source)
        if link:
            imageio.copy_atomic(source, dst, link=True)
        else:
            imageio.write_atomic(dst, data)
        return None, _sha256(data)
    image = _pixels(source, item.source, cache, max_bytes)
    params = _params(item, lambda: image.shape)
    if item.action == "augment":
        assert params is not None  # a draw always gives params
        image = TRANSFORMS[item.transform].apply(image, params)
    data = imageio.encode(image, "jpeg" if dst.suffix == ".jpg" else "png", quality)
    imageio.write_atomic(dst, data)
    return params, _sha256(data)


def _params(item: Item, shape: Callable[[], tuple[int, ...]]) -> dict | None:
    """An item's params for the manifest; `shape()`, the upright image's, is called only for a
    draw."""
    if item.action == "copy":
        return None
    if item.action == "encode":
        return {"exif_orientation": item.orientation} if item.orientation != 1 else None
    rng = np.random.default_rng(item.seed)
    return TRANSFORMS[item.transform].draw(shape(), rng, item.magnitude)


def _pixels(source: Path, key: str, cache: list, max_bytes: int | None) -> np.ndarray:
    """The upright image of `source`; tasks come sorted by source, so each original is
    decoded once per task."""
    if cache[0] != key:
        cache[:] = [key, imageio.load(source, max_bytes=max_bytes).image]
    return cache[1]


def _upright_shape(source: Path, key: str, cache: list, max_bytes: int | None) -> tuple:
    """The upright image's shape without decoding it where the header tells: a JPEG's or
    PNG's decoder gives exactly the header's size (turned by its EXIF orientation)."""
    if cache[0] == key:
        return cache[1].shape
    try:
        data = imageio.read_bytes(source)
    except OSError:
        data = b""  # decoding it says why
    header = imageio.read_header(data) if imageio.sniff(data) != "other" else None
    if header is None:
        return _pixels(source, key, cache, max_bytes).shape
    width, height = header.upright_size
    return (height, width)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _work_chunk(
    src: str, out: str, quality: int, link: bool, max_bytes: int | None, tasks: list[Item]
) -> list:
    """Make each item's file unless it is already there; return (file_name, params as the
    manifest's JSON text or None, sha256): small to send back, small to keep. `max_bytes`:
    the scan's limit on an image's decoded size (None: the default)."""
    results, cache = [], [None, None]
    for item in tasks:
        if imageio.parent_gone():
            raise SystemExit(1)
        try:
            params, sha = _make(
                item, cache, src=src, out=out, quality=quality, link=link, max_bytes=max_bytes
            )
            text = None if params is None else json.dumps(params, sort_keys=True)
            results.append((item.file_name, text, sha))
        except imageio.BadImage as exc:
            raise BalanceError(f"{item.source} changed since it was checked: {exc}") from None
        except OSError as exc:
            raise BalanceError(
                f"cannot write {Path(out, item.file_name)}: {exc.strerror or exc}"
            ) from None
    return results


def prepare_folders(
    out: Path,
    items: list[Item],
    kind: OutputKind,
    record: dict,
    previous: dict | None,
    overwrite: bool,
) -> None:
    """Under the lock: remove an earlier output when replacing it, write the run record
    before any image (so a killed run's folder is provably ours), make the folders and
    sweep the temporaries of an interrupted run."""
    try:
        if overwrite and previous is not None:
            clear(out, kind, previous)
        write_json(out / kind.record, record)
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
            if f.name.endswith(imageio.TEMP_SUFFIX) or rel not in planned:
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def run_items(
    root: Path,
    out: Path,
    items: list[Item],
    workers: int,
    *,
    quality: int = 95,
    link: bool = False,
    max_bytes: int | None = None,
    progress: bool = True,
) -> dict[str, tuple]:
    """Make every item's file (those present are kept); {file_name: (params JSON, sha256)}.
    `max_bytes` must be the limit the items' sources were scanned with."""
    try:
        for folder in sorted({str(Path(it.file_name).parent) for it in items}):
            (out / folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BalanceError(f"cannot write to {out}: {exc.strerror or exc}") from None
    tasks = sorted(items, key=lambda it: (it.source, it.file_name))
    chunks = chunked(tasks, workers, key=lambda it: it.source)
    work = partial(_work_chunk, str(root), str(out), quality, link, max_bytes)
    written: dict[str, tuple] = {}
    try:
        for _, results in run_chunks(work, chunks, workers, progress, desc="writing"):
            written.update((name, (params, sha)) for name, params, sha in results)
    except BaseException:
        sweep(out, items)  # workers stopped mid-write leave temporaries behind
        raise
    return written
