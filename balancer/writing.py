"""Make a plan's files: every file written whole under its final name, or not at all.

The machinery `balance build`, `balance split` and the trainer's study share: run the plan's
items on the process pool (each original decoded once per task), keep the files already
there that the journal proves done (resume), and sweep what an interrupted run was writing.
Workers write each file under a temporary name and flush it; this process records the files
in the journal (`balancer.journal`) and only then renames them into place. `render` is the
one function that turns an original and an item into a file's bytes: the writer uses it, and
so does `balance verify --replay`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from .common import imageio
from .common.atomic import (
    TEMP_SUFFIX,
    command_gone,
    copy_temp,
    durable,
    place,
    sync_filesystem,
    sync_folder,
    temp_path,
    write_temp,
)
from .common.checks import flag
from .common.errors import OVERWRITE, BalanceError, ToolWarning
from .common.formats import written_format
from .common.limits import IMAGE_MB, JPEG_QUALITY, MAX_IMAGE_MB, QUALITY, image_bytes
from .common.ownership import sha256_file
from .common.parallel import chunked, remote, run_chunks
from .common.storage import Place, Remote, joined
from .journal import Journal, ObjectJournal, Written
from .manifest import MANIFEST
from .plan import Item
from .transforms import IDENTICAL, PIXEL_REDRAWS, TRANSFORMS, Params, marked_identical


@dataclass(frozen=True)
class Writing:
    """How files are written: what decides their bytes (quality), the largest image decoded
    (the limit the sources were scanned with) and whether originals are hard-linked."""

    quality: int = JPEG_QUALITY
    max_image_mb: int = MAX_IMAGE_MB
    link: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "link", flag(self.link, "link"))
        QUALITY.check(self.quality, "quality")
        IMAGE_MB.check(self.max_image_mb, "max_image_mb")

    @property
    def max_bytes(self) -> int:
        """The decoded-size limit in bytes."""
        return image_bytes(self.max_image_mb)


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
    transform's draw from the item's own seed, applied, encoded. transform="" re-encodes.

    A draw whose pixels equal the original's is drawn again from the same generator (up to
    PIXEL_REDRAWS times; a copy that differs at once is untouched by this). When none changes the
    image (a flat image, 1 x 1), the params say `"identical": true`."""
    params = None
    if transform:
        params, image = changed_copy(image, transform, magnitude, seed)
    return params, imageio.encode(image, fmt, quality)


def changed_copy(
    image: np.ndarray, transform: str, magnitude: float | None, seed: int | None
) -> tuple[Params, np.ndarray]:
    """(params, pixels) of the first draw from `seed` whose pixels differ from `image`'s,
    judged on the pixels themselves; the last draw, marked identical, if none does."""
    t = TRANSFORMS[transform]
    rng, m = np.random.default_rng(seed), t.check(magnitude)
    for _ in range(PIXEL_REDRAWS):
        params = t.draw(image.shape, rng, m)
        copy = t.apply(image, params)
        if copy.shape != image.shape or not np.array_equal(copy, image):
            return params, copy
    return {**params, IDENTICAL: True}, copy


def _make(
    item: Item,
    expect: Written | None,
    cache: list,
    *,
    src: str | Remote,
    out: str,
    how: tuple[Writing, bool],
) -> tuple[Written, bool]:
    """(how the item's file is written, whether it waits under its temporary name to be
    renamed): a file already in place that its journal row proves (size, then sha256) is
    kept; anything else is made again (`how`: the Writing, and whether it is flushed)."""
    writing, flush = how
    dst, source = Path(out, item.file_name), joined(src, item.source)
    if expect is not None and _proven(dst, expect):
        return expect, False
    if item.action == "copy" and writing.link and isinstance(source, Path):
        data = imageio.read_bytes(source, digest=item.digest)
        check = partial(_same_bytes, digest=item.digest)
        copy_temp(source, dst, link=True, check=check, flush=flush)
        return Written(None, len(data), _sha256(data)), True
    written, data = made(item, partial(read_original, source, item.digest), cache, writing)
    write_temp(dst, data, flush=flush)
    return written, True


def read_original(source: Place, digest: bytes) -> bytes:
    """An original's bytes, which must be the ones the scan read (BadImage, else)."""
    try:
        return imageio.read_bytes(source, digest=digest)
    except OSError as exc:
        raise imageio.BadImage(f"unreadable ({exc.strerror or exc})") from None


def made(
    item: Item, original: Callable[[], bytes], cache: list, writing: Writing
) -> tuple[Written, bytes]:
    """(how the item's file is written, its bytes): the original's bytes for a copy, else its
    pixels (`original()` read and decoded once per source: tasks come sorted by source)
    rendered as the item says."""
    if item.action == "copy":
        data = original()
        return Written(None, len(data), _sha256(data)), data
    fmt = written_format(item.file_name).name
    if cache[0] != item.source:
        cache[:] = [item.source, imageio.decode(original(), max_bytes=writing.max_bytes).image]
    image = cache[1]
    if item.action == "augment":
        params, data = render(
            image,
            transform=item.transform,
            magnitude=item.magnitude,
            seed=item.seed,
            fmt=fmt,
            quality=writing.quality,
        )
    else:  # re-encoded original
        params = {"exif_orientation": item.orientation} if item.orientation != 1 else None
        data = imageio.encode(image, fmt, writing.quality)
    text = None if params is None else json.dumps(params, sort_keys=True)
    return Written(text, len(data), _sha256(data)), data


def _proven(dst: Path, expect: Written) -> bool:
    """Whether the file in place is the one the journal records: a regular file of that
    size and sha256 (a zero-length or half-flushed file left by a power cut is not)."""
    try:
        st = os.lstat(dst)
        return (
            st.st_size == expect.size
            and os.path.isfile(dst)
            and not os.path.islink(dst)
            and sha256_file(dst) == expect.sha256
        )
    except OSError:
        return False


def _same_bytes(linked: Path, digest: bytes) -> None:
    """A hard link made after the bytes were read must hold the bytes the scan read."""
    imageio.check_content(imageio.read_bytes(linked), digest)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _work_chunk(
    src: str | Remote,
    out: str,
    writing: Writing,
    tasks: list[tuple[int, Item, Written | None]],
    *,
    flush: bool,
) -> list[tuple[int, Written, bool]]:
    """Make each item's file under its temporary name (flushed with `flush`) unless the one
    in place is proven; return (its index in the plan, Written, whether it waits to be
    renamed): small to send back."""
    results, cache = [], [None, None]
    for index, item, expect in tasks:
        if command_gone():
            raise SystemExit(1)
        try:
            written, fresh = _make(item, expect, cache, src=src, out=out, how=(writing, flush))
            results.append((index, written, fresh))
        except (imageio.BadImage, OSError) as exc:
            raise failure(item, exc, Path(out, item.file_name)) from None
    return results


def failure(item: Item, exc: Exception, dst: Place) -> BalanceError:
    """The one line for an item that could not be made: its original changed or is gone,
    or its file could not be written."""
    if isinstance(exc, imageio.SourceChanged):
        return BalanceError(
            f"{item.source} changed while the build ran ({exc}): the output is not "
            f"complete; run the build again with {OVERWRITE} once the source is settled"
        )
    if isinstance(exc, imageio.BadImage):
        return BalanceError(f"{item.source} changed since it was checked: {exc}")
    strerror = getattr(exc, "strerror", None)
    return BalanceError(f"cannot write {dst}: {strerror or exc}")


def make_folders(out: Path, items: list[Item], listed: set[str]) -> None:
    """The plan's folders, and nothing in them that the tool was writing or no longer plans."""
    try:
        for folder in sorted({str(Path(it.file_name).parent) for it in items}):
            (out / folder).mkdir(parents=True, exist_ok=True)
        sweep(out, items, listed)
    except OSError as exc:
        raise BalanceError(f"cannot write to {out}: {exc.strerror or exc}") from None


def sweep(out: Path, items: list[Item], listed: set[str]) -> int:
    """Remove, in the plan's folders, the files the tool was writing (temporary names) and
    the files its journal lists that the plan does not name; anything else is not the tool's
    to remove (a file that appeared while the command ran): it stays, with a warning."""
    planned = {it.file_name for it in items}
    removed, foreign = 0, []
    for folder in sorted({Path(it.file_name).parent for it in items}):
        if not (out / folder).is_dir():
            continue
        for f in sorted((out / folder).iterdir()):
            rel = (folder / f.name).as_posix()
            if f.name.endswith(TEMP_SUFFIX) or (rel in listed and rel not in planned):
                f.unlink(missing_ok=True)
                removed += 1
            elif rel not in planned:
                foreign.append(rel)
    if foreign:
        warnings.warn(
            f"{out} holds {len(foreign)} file(s) the tool did not write ({foreign[0]} ...): "
            "they appeared while it ran and were left where they are",
            ToolWarning,
            stacklevel=3,
        )
    return removed


def run_items(
    root: Place,
    out: Place,
    items: list[Item],
    workers: int,
    writing: Writing = Writing(),
    *,
    journal: Journal | ObjectJournal,
    progress: bool = True,
) -> dict[str, Written]:
    """Make every item's file; {file_name: Written}. Files in place that `journal` proves
    done are kept (resume), every other is written by a worker under a temporary name,
    recorded in the journal, then renamed into place here. `writing.max_image_mb` must be
    the limit the items' sources were scanned with."""
    if isinstance(out, Remote) or isinstance(journal, ObjectJournal):
        from .store_writing import run_items_in_store

        assert isinstance(out, Remote) and isinstance(journal, ObjectJournal)
        return run_items_in_store(
            root, out, items, workers, writing, journal=journal, progress=progress
        )
    done = journal.resume()
    make_folders(out, items, set(done))
    tasks = sorted(
        ((i, it, done.get(it.file_name)) for i, it in enumerate(items)),
        key=lambda t: (t[1].source, t[1].file_name),
    )
    chunks = chunked(tasks, workers, key=lambda t: t[1].source)
    # Local workers leave their files unflushed and this process flushes each chunk's in one
    # call (syncfs): a journal commit per chunk, not per file. Workers on other machines
    # (Dask) flush their own, as does every worker where that call is missing.
    batched = durable() and not remote() and sync_filesystem(out)
    src = root if isinstance(root, Remote) else str(root)
    work = partial(_work_chunk, src, str(out), writing, flush=durable() and not batched)
    written: dict[str, Written] = {}
    try:
        for _, results in run_chunks(work, chunks, workers, progress=progress, desc="writing"):
            fresh = [(items[i], w) for i, w, new in results if new]
            _land(out, fresh, journal, flush=batched)
            written.update((items[i].file_name, w) for i, w, _ in results)
    except BaseException:
        sweep(out, items, set(done))  # workers stopped mid-write leave temporaries behind
        raise
    sweep(
        out, items, set(done)
    )  # a killed run's stray worker may have written after the first sweep
    return written


def unchanged_copies(items: list[Item], written: dict[str, Written]) -> list[Item]:
    """The copies whose params say no draw made them differ from their original
    (`changed_copy`)."""
    return [
        it
        for it in items
        if it.origin == "augmented" and marked_identical(written[it.file_name].params)
    ]


def unchanged_warning(copies: list[Item]) -> str:
    """'3 copies equal their original ...': per transform, and the first originals named."""
    per = Counter(it.transform for it in copies)
    sources = sorted({it.source for it in copies})
    shown = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
    return (
        f"{len(copies)} cop{'y equals' if len(copies) == 1 else 'ies equal'} their original: "
        f"no draw of {', '.join(f'{t} ({n})' for t, n in sorted(per.items()))} changed the "
        f"pixels of {shown} in {PIXEL_REDRAWS} tries (an image flat where the transform "
        f'acts, or 1x1); {MANIFEST} marks them "{IDENTICAL}": true'
    )


def _land(out: Path, fresh: list[tuple[Item, Written]], journal: Journal, *, flush: bool) -> None:
    """Record a chunk's new files in the journal (flushed), then rename them into place and
    flush their folders: a file under its final name is always in the journal, and its bytes
    on the disk first (flushed here with `flush`, else by the worker that wrote it)."""
    try:
        if flush and fresh:
            sync_filesystem(out)
        journal.append(fresh)
        for item, _ in fresh:
            dst = out / item.file_name
            place(temp_path(dst), dst)
        for folder in sorted({(out / it.file_name).parent for it, _ in fresh}):
            sync_folder(folder)
    except OSError as exc:
        where = exc.filename or journal.path
        raise BalanceError(f"cannot write {where}: {exc.strerror or exc}") from None
