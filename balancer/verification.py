"""Check a balanced folder against the contract in ARCHITECTURE.md, naming every problem.

Each check adds `problem` lines and never raises on bad content: a record that does not
parse, a manifest with the wrong shape, a FIFO in place of an image are all problems. The
manifest records every file's sha256 and balance.json the manifest's, so a flipped byte,
two swapped copies or an edited row are found; `replay=True` also re-renders every copy
from its original, its seed and its parameters and compares the bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

import hashlib
import json
from functools import partial
from pathlib import PurePosixPath

from .common import formats, imageio
from .common.atomic import TEMP_SUFFIX
from .common.checks import flag, instance
from .common.errors import BalanceError, UserError
from .common.formats import written_format
from .common.limits import IMAGE_MB, JPEG_QUALITY, QUALITY, image_bytes
from .common.ownership import read_json_record, writer_of
from .common.parallel import Pool, RunOptions, chunked, in_process, pool, run_chunks
from .common.shapes import shape_problems
from .common.storage import Place, Remote, children, joined, location, portable
from .manifest import COLUMNS, MANIFEST, RECIPE, RECORD, leaves_folder, read_csv
from .reports import BuildRecord
from .source import printable
from .transforms import TRANSFORMS, marked_identical
from .writing import render


def verify(
    folder: str | Place,
    *,
    run: RunOptions = RunOptions(),
    replay: bool = False,
) -> dict:
    """{'ok', 'problems', 'files', 'classes'}: records, manifest <-> files, labels, counts,
    checksums, decoding, nothing a loader would misread; with replay, every copy's bytes.
    A manifest path that points outside the folder (or a source outside the source folder)
    is a problem and is never read."""
    replay = flag(replay, "replay")
    run = instance(run, RunOptions, "run", "RunOptions(workers=4)")
    root = location(folder)
    if not root.is_dir():
        raise BalanceError(f"not a folder: {root}")
    writer = writer_of(root)
    if writer:
        raise BalanceError(
            f"{root} is being written by {writer} (a build or split still running): "
            "verify it once that has finished"
        )
    problems: list[str] = []
    record = _read_record(root, problems)
    if record is not None and record.get("status") == RECIPE:
        return _check_recipe(root, record, run, problems)
    manifest = _read_manifest(root, problems)
    files = _layout(root, problems)
    if manifest is None:
        return _report(problems, files, {})
    _match(manifest, files, problems)
    counts = {k: int(v) for k, v in sorted(manifest.label.value_counts().items())}
    if record is not None:
        _against_record(root, record, counts, problems)
    rows = manifest[manifest.file_name.isin(set(files))]
    _unchanged(rows, problems)
    limit = _image_limit(record)
    with pool(run) as p:
        _check_contents(root, rows, p, limit, problems)
        if replay and record is not None:
            _check_replay(root, record, manifest, p, limit=limit, problems=problems)
    return _report(problems, files, counts)


def _check_recipe(root: Place, record: dict, run: RunOptions, problems: list[str]) -> dict:
    """A recipe-only build: its manifest as its record checksums it, no image beside it, and
    its source, scanned again, the one it was planned from (what changed, named)."""
    from .unchanged import unchanged_source

    manifest = _read_manifest(root, problems)
    try:
        data = (root / MANIFEST).read_bytes()
    except OSError:
        data = b""
    if manifest is not None and hashlib.sha256(data).hexdigest() != record.get("manifest_sha256"):
        problems.append(
            f"{MANIFEST} was edited after it was written (not the sha256 {RECORD} holds)"
        )
    files = _layout(root, problems)
    if files:
        problems.append(f"a recipe holds no image, but {root} has {len(files)} ({files[0]} ...)")
    source = location(str(record.get("source", "")))
    try:
        if not source.is_dir():
            raise BalanceError(f"{source} is not there")
        unchanged_source(
            record,
            source,
            "the recipe was written",
            workers=run.workers,
            progress=run.progress,
            max_bytes=_image_limit(record),
        )
    except BalanceError as exc:
        problems.append(f"its source {exc}: materializing it is refused")
    counts = {} if manifest is None else manifest.label.value_counts().sort_index().to_dict()
    return {**_report(problems, files, {k: int(v) for k, v in counts.items()}), "recipe": True}


def _unchanged(rows: Any, problems: list[str]) -> None:
    """A copy the manifest marks as equal to its original (no draw changed its pixels;
    --replay checks that mark on the pixels again)."""
    marked = rows[rows.params.fillna("").astype(str).map(marked_identical)]
    for r in marked.itertuples():
        problems.append(
            f"copy equals its original {r.source} (no draw of {r.augmentation} changed "
            f"its pixels): {r.file_name}"
        )


def _image_limit(record: dict | None) -> int | None:
    """The build's limit on an image's decoded bytes (--max-image-mb), None for the default."""
    settings = (record or {}).get("settings")
    mb = settings.get("max_image_mb") if isinstance(settings, dict) else None
    return image_bytes(mb) if mb in IMAGE_MB else None


def _report(problems: list[str], files: list[str], counts: dict) -> dict:
    return {"ok": not problems, "problems": problems, "files": len(files), "classes": counts}


def _read_record(root: Place, problems: list[str]) -> dict | None:
    path = root / RECORD
    if not path.is_file():
        problems.append(f"missing {RECORD}: not a balance output (or not finished)")
        return None
    try:
        record = read_json_record(path)
    except Exception as exc:
        problems.append(str(exc).replace("; nothing was changed", ""))
        return None
    damaged = shape_problems(record, BuildRecord, required=("counts",))
    if damaged:
        problems.append(f"{RECORD} is damaged: {', '.join(damaged)} missing or of the wrong type")
    return None if "counts" in damaged else record  # without counts nothing is checked against it


def _read_manifest(root: Place, problems: list[str]) -> Any:
    if not (root / MANIFEST).is_file():
        problems.append(f"missing {MANIFEST}: not a balance output (or not finished)")
        return None
    try:
        m = read_csv(root / MANIFEST)
    except BalanceError as exc:
        problems.append(str(exc))
        return None
    missing = [c for c in COLUMNS if c not in m.columns]
    if missing:
        problems.append(f"{MANIFEST} lacks columns: {', '.join(missing)}")
        return None
    bad = m.file_name.map(leaves_folder) | m.source.map(leaves_folder)
    for i in m.index[bad]:
        which = "file_name" if leaves_folder(m.file_name[i]) else "source"
        problems.append(
            f"{MANIFEST} row {i + 2}: {which} {m[which][i]!r} points outside its folder (not read)"
        )
    return m[~bad]


def _layout(root: Place, problems: list[str]) -> list[str]:
    """Image files in class folders; a problem for anything else a loader would misread."""
    files: list[str] = []
    for entry in children(root):
        name = printable(entry.name)
        if entry.name in (MANIFEST, RECORD):
            continue
        if entry.is_symlink() or not entry.is_dir() or entry.name.startswith("."):
            problems.append(f"stray entry at the root: {name}")
            continue
        inside = children(entry)
        if not inside:
            problems.append(f"empty class folder: {name}")
        for f in inside:
            rel = f"{name}/{printable(f.name)}"
            kind = _misfit(f)
            if kind:
                problems.append(f"{kind} in a class folder: {rel}")
            else:
                files.append(rel)
    return files


def _misfit(f: Place) -> str | None:
    if f.is_symlink():
        return "symbolic link"
    if f.is_dir():
        return "subfolder"
    if not f.is_file():
        return "not a regular file (FIFO, socket or device)"
    if f.name.endswith(TEMP_SUFFIX):
        return "temporary file left behind"
    if f.name.startswith("."):
        return "hidden file"
    if formats.of_name(f.name) is None:
        return f"not a format the tools write ({formats.names()})"
    return None


def _match(m: Any, files: list[str], problems: list[str]) -> None:
    for name in m.file_name[m.file_name.duplicated()]:
        problems.append(f"manifest lists a file twice: {name}")
    listed, present = set(m.file_name), set(files)
    problems += [f"manifest row without its file: {n}" for n in sorted(listed - present)]
    problems += [f"file without a manifest row: {n}" for n in sorted(present - listed)]
    folder_of = m.file_name.map(lambda n: PurePosixPath(n).parts[0])
    for row in m[folder_of != m.label].itertuples():
        problems.append(f"label '{row.label}' does not match the folder of {row.file_name}")


def _against_record(root: Place, record: dict, counts: dict, problems: list[str]) -> None:
    if record.get("status") != "complete":
        problems.append(
            f"{RECORD} says the build is '{record.get('status')}', not complete "
            "(run the build again with --resume)"
        )
    expected = {label: c["after"] for label, c in record["counts"].items()}
    for label in sorted(set(counts) | set(expected)):
        if counts.get(label, 0) != expected.get(label, 0):
            problems.append(
                f"class '{label}': manifest has {counts.get(label, 0)} images, "
                f"{RECORD} says {expected.get(label, 0)}"
            )
    digest = record.get("manifest_sha256")
    if digest and hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest() != digest:
        problems.append(
            f"{MANIFEST} was edited after the build (its sha256 is not the one {RECORD} records)"
        )


def _check_contents(
    root: Place, rows: Any, p: Pool, limit: int | None, problems: list[str]
) -> None:
    tasks = sorted(zip(rows.file_name, rows["size"], rows.sha256, strict=False))
    workers = in_process(root, workers=p.workers)
    job = partial(_content_chunk, portable(root), limit)
    chunks = chunked(tasks, workers)
    for _, found in run_chunks(job, chunks, workers, progress=p.progress, desc="checking"):
        problems += found


def _content_chunk(
    root: str | Remote, limit: int | None, tasks: list[tuple[str, str, str]]
) -> list[str]:
    """Problems of each (file, recorded size, recorded sha256): its bytes, whether its content
    is the format its name says, and whether it decodes whole."""
    found = []
    for rel, size, sha in tasks:
        try:
            data = imageio.read_bytes(joined(root, rel))
            if str(len(data)) != size or hashlib.sha256(data).hexdigest() != sha:
                found.append(f"file differs from the one written (size or sha256): {rel}")
                continue
            named = formats.written_format(rel).name
            if imageio.sniff(data) != named:
                found.append(f"content is not the {named.upper()} its name says: {rel}")
                continue
            imageio.decode(data, check_only=True, max_bytes=limit)
        except (imageio.BadImage, OSError) as exc:
            found.append(f"image does not decode: {rel} ({getattr(exc, 'strerror', None) or exc})")
    return found


def _replay_settings(record: dict) -> tuple[dict, int] | str:
    """(magnitudes, quality) of the build, or why the record cannot be replayed."""
    settings = record.get("settings")
    if not isinstance(settings, dict):
        return f"{RECORD} has no settings"
    magnitudes = settings.get("transforms", {})
    if not isinstance(magnitudes, dict) or not all(
        isinstance(k, str)
        and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        for k, v in magnitudes.items()
    ):
        return f"{RECORD}'s settings.transforms is not a map of names to magnitudes"
    quality = settings.get("quality", JPEG_QUALITY)
    if quality not in QUALITY:
        return f"{RECORD}'s settings.quality is not {QUALITY} (got {quality!r})"
    if not isinstance(record.get("source", ""), str):
        return f"{RECORD}'s source is not a path"
    return magnitudes, int(quality)


def _check_replay(
    root: Place, record: dict, m: Any, p: Pool, *, limit: int | None, problems: list
) -> None:
    """Every copy re-rendered from its original, seed and params must match byte for byte."""
    settings = _replay_settings(record)
    if isinstance(settings, str):
        problems.append(f"cannot replay: {settings}")
        return
    magnitudes, quality = settings
    originals = dict(
        zip(m.source[m.origin == "original"], m.file_name[m.origin == "original"], strict=False)
    )
    copies = m[m.origin == "augmented"].sort_values(["source", "file_name"])
    tasks = [
        (r.file_name, r.source, originals.get(r.source, ""), r.augmentation, r.params, r.seed)
        for r in copies.itertuples()
    ]
    src = location(str(record.get("source", "")))
    job = partial(_replay_chunk, portable(root), portable(src), magnitudes, quality, limit)
    workers = in_process(root, src, workers=p.workers)
    chunks = chunked(tasks, workers)
    for _, found in run_chunks(job, chunks, workers, progress=p.progress, desc="replaying"):
        problems += found


def _replay_chunk(
    root: str | Remote,
    src: str | Remote,
    magnitudes: dict,
    quality: int,
    limit: int | None,
    tasks: list,
) -> list[str]:
    found, cache = [], (None, None)
    for rel, source, original, name, params, seed in tasks:
        if cache[0] != source:
            cache = (source, _original_pixels(joined(src, source), joined(root, original), limit))
        image = cache[1]
        if image is None:
            found.append(
                f"cannot replay {rel}: its original {source} is neither in the source "
                f"folder nor in {MANIFEST}"
            )
            continue
        problem = _replay_one(
            joined(root, rel), image, name, params, seed, magnitudes=magnitudes, quality=quality
        )
        if problem:
            found.append(f"{problem}: {rel}")
    return found


def _original_pixels(in_src: Place, in_out: Place, limit: int | None) -> Any:
    for path in (in_src, in_out):
        try:
            if path.name and path.is_file():
                return imageio.load(path, max_bytes=limit).image
        except imageio.BadImage:
            continue
    return None


def _replay_one(
    path: Place,
    image: np.ndarray,
    name: str,
    params: str,
    seed: str,
    *,
    magnitudes: dict,
    quality: int,
) -> str | None:
    if name not in TRANSFORMS:
        return f"unknown transform '{name}' in {MANIFEST}"
    try:
        recorded = json.loads(params)
        drawn, expected = render(
            image,
            transform=name,
            magnitude=magnitudes.get(name),
            seed=int(seed),
            fmt=written_format(path.name).name,
            quality=quality,
        )
    except (ValueError, TypeError, UserError) as exc:
        return f"params, seed or magnitude in the records do not parse ({exc})"
    if drawn != recorded:
        return "params in the manifest are not the ones its seed draws"
    try:
        if imageio.read_bytes(path) != expected:
            return "copy differs from its replay (original + params)"
    except (imageio.BadImage, OSError) as exc:
        return f"cannot replay ({exc})"
    return None
