"""Check a balanced folder against the contract in ARCHITECTURE.md, naming every problem.

Each check adds `problem` lines and never raises on bad content: a record that does not
parse, a manifest with the wrong shape, a FIFO in place of an image are all problems. The
manifest records every file's sha256 and balance.json the manifest's, so a flipped byte,
two swapped copies or an edited row are found; `replay=True` also re-renders every copy
from its original, its seed and its parameters and compares the bytes.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from . import imageio
from .errors import BalanceError
from .manifest import COLUMNS, MANIFEST, RECORD, read_csv
from .ownership import read_json_record
from .parallel import chunked, resolve_workers, run_chunks
from .source import IMAGE_EXTENSIONS, printable
from .transforms import TRANSFORMS


def verify(
    folder: str | Path, *, workers: int | None = None, progress: bool = True, replay: bool = False
) -> dict:
    """{'ok', 'problems', 'files', 'classes'}: records, manifest <-> files, labels, counts,
    checksums, decoding, nothing a loader would misread; with replay, every copy's bytes."""
    root = Path(folder)
    if not root.is_dir():
        raise BalanceError(f"not a folder: {root}")
    problems: list[str] = []
    record = _read_record(root, problems)
    manifest = _read_manifest(root, problems)
    files = _layout(root, problems)
    if manifest is None:
        return _report(problems, files, {})
    _match(manifest, files, problems)
    counts = {k: int(v) for k, v in sorted(manifest.label.value_counts().items())}
    if record is not None:
        _against_record(root, record, counts, problems)
    workers = resolve_workers(workers)
    rows = manifest[manifest.file_name.isin(set(files))]
    limit = _image_limit(record)
    _check_contents(root, rows, workers, progress, limit, problems)
    if replay and record is not None:
        _check_replay(
            root,
            record,
            manifest,
            workers=workers,
            progress=progress,
            limit=limit,
            problems=problems,
        )
    return _report(problems, files, counts)


def _image_limit(record: dict | None) -> int | None:
    """The build's limit on an image's decoded bytes (--max-image-mb), None for the default."""
    settings = (record or {}).get("settings")
    mb = settings.get("max_image_mb") if isinstance(settings, dict) else None
    return mb << 20 if isinstance(mb, int) and mb > 0 else None


def _report(problems: list[str], files: list[str], counts: dict) -> dict:
    return {"ok": not problems, "problems": problems, "files": len(files), "classes": counts}


def _read_record(root: Path, problems: list[str]) -> dict | None:
    path = root / RECORD
    if not path.is_file():
        problems.append(f"missing {RECORD}: not a balance output (or not finished)")
        return None
    try:
        record = read_json_record(path)
    except Exception as exc:
        problems.append(str(exc).replace("; nothing was changed", ""))
        return None
    if not isinstance(record.get("counts"), dict) or not all(
        isinstance(c, dict) and isinstance(c.get("after"), int) for c in record["counts"].values()
    ):
        problems.append(f"{RECORD} has no per-class counts (its 'counts' is malformed)")
        return None
    return record


def _read_manifest(root: Path, problems: list[str]):
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
    empty = m.file_name.str.strip() == ""
    for i in m.index[empty]:
        problems.append(f"{MANIFEST} row {i + 2} has an empty file_name")
    return m[~empty]


def _layout(root: Path, problems: list[str]) -> list[str]:
    """Image files in class folders; a problem for anything else a loader would misread."""
    files: list[str] = []
    for entry in sorted(root.iterdir()):
        name = printable(entry.name)
        if entry.name in (MANIFEST, RECORD):
            continue
        if entry.is_symlink() or not entry.is_dir() or entry.name.startswith("."):
            problems.append(f"stray entry at the root: {name}")
            continue
        inside = sorted(entry.iterdir())
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


def _misfit(f: Path) -> str | None:
    if f.is_symlink():
        return "symbolic link"
    if f.is_dir():
        return "subfolder"
    if not f.is_file():
        return "not a regular file (FIFO, socket or device)"
    if f.name.endswith(imageio.TEMP_SUFFIX):
        return "temporary file left behind"
    if f.name.startswith("."):
        return "hidden file"
    if f.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file"
    return None


def _match(m, files: list[str], problems: list[str]) -> None:
    for name in m.file_name[m.file_name.duplicated()]:
        problems.append(f"manifest lists a file twice: {name}")
    listed, present = set(m.file_name), set(files)
    problems += [f"manifest row without its file: {n}" for n in sorted(listed - present)]
    problems += [f"file without a manifest row: {n}" for n in sorted(present - listed)]
    folder_of = m.file_name.map(lambda n: PurePosixPath(n).parts[0])
    for row in m[folder_of != m.label].itertuples():
        problems.append(f"label '{row.label}' does not match the folder of {row.file_name}")


def _against_record(root: Path, record: dict, counts: dict, problems: list[str]) -> None:
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
    root: Path, rows, workers: int, progress: bool, limit: int | None, problems: list[str]
) -> None:
    tasks = sorted(zip(rows.file_name, rows.sha256, strict=False))
    chunks = chunked(tasks, workers)
    for _, found in run_chunks(
        partial(_content_chunk, str(root), limit), chunks, workers, progress, desc="checking"
    ):
        problems += found


def _content_chunk(root: str, limit: int | None, tasks: list[tuple[str, str]]) -> list[str]:
    """Problems of each (file, recorded sha256): its bytes, and whether it decodes whole."""
    found = []
    for rel, sha in tasks:
        try:
            data = imageio.read_bytes(Path(root, rel))
            if sha and hashlib.sha256(data).hexdigest() != sha:
                found.append(f"file differs from the one written (sha256 mismatch): {rel}")
                continue
            imageio.decode(data, check_only=True, max_bytes=limit)
        except (imageio.BadImage, OSError) as exc:
            found.append(f"image does not decode: {rel} ({getattr(exc, 'strerror', None) or exc})")
    return found


def _check_replay(
    root: Path, record: dict, m, *, workers: int, progress: bool, limit: int | None, problems: list
) -> None:
    """Every copy re-rendered from its original, seed and params must match byte for byte."""
    settings = record.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    originals = dict(
        zip(m.source[m.origin == "original"], m.file_name[m.origin == "original"], strict=False)
    )
    copies = m[m.origin == "augmented"].sort_values(["source", "file_name"])
    tasks = [
        (r.file_name, r.source, originals.get(r.source, ""), r.augmentation, r.params, r.seed)
        for r in copies.itertuples()
    ]
    job = partial(
        _replay_chunk,
        str(root),
        str(record.get("source", "")),
        settings.get("transforms") or {},
        int(settings.get("quality") or 95),
        limit,
    )
    for _, found in run_chunks(job, chunked(tasks, workers), workers, progress, desc="replaying"):
        problems += found


def _replay_chunk(
    root: str, src: str, magnitudes: dict, quality: int, limit: int | None, tasks: list
) -> list[str]:
    found, cache = [], (None, None)
    for rel, source, original, name, params, seed in tasks:
        if cache[0] != source:
            cache = (source, _original_pixels(Path(src, source), Path(root, original), limit))
        image = cache[1]
        if image is None:
            found.append(
                f"cannot replay {rel}: its original {source} is neither in the source "
                f"folder nor in {MANIFEST}"
            )
            continue
        problem = _replay_one(
            Path(root, rel), image, name, params, seed, magnitudes=magnitudes, quality=quality
        )
        if problem:
            found.append(f"{problem}: {rel}")
    return found


def _original_pixels(in_src: Path, in_out: Path, limit: int | None):
    for path in (in_src, in_out):
        try:
            if path.name and path.is_file():
                return imageio.load(path, max_bytes=limit).image
        except imageio.BadImage:
            continue
    return None


def _replay_one(
    path: Path, image, name: str, params: str, seed: str, *, magnitudes: dict, quality: int
) -> str | None:
    transform = TRANSFORMS.get(name)
    if transform is None:
        return f"unknown transform '{name}' in {MANIFEST}"
    try:
        recorded = json.loads(params)
        drawn = transform.draw(image.shape, np.random.default_rng(int(seed)), magnitudes.get(name))
    except (ValueError, TypeError):
        return f"params or seed in {MANIFEST} do not parse"
    if drawn != recorded:
        return "params in the manifest are not the ones its seed draws"
    fmt = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    try:
        expected = imageio.encode(transform.apply(image, recorded), fmt, quality)
        if imageio.read_bytes(path) != expected:
            return "copy differs from its replay (original + params)"
    except (imageio.BadImage, OSError, ValueError) as exc:
        return f"cannot replay ({exc})"
    return None
