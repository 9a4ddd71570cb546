"""Run a balancing plan on joblib's process pool: atomic writes, deterministic, resumable.

OUT is a pure function of SRC, the settings and the seed: each file's bytes depend only on
its own plan item, so the number of workers and the order of work never show. Every file
appears under its final name only once whole, so after a kill a present file is a finished
file, and `resume=True` does only what is missing. The command holds a lock on OUT while it
runs, and replaces or resumes only a folder proven to be a build output (see ownership.py).
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from . import __version__, imageio
from .errors import BalanceError, ToolWarning
from .manifest import MANIFEST, RECORD, manifest_rows, write_manifest, write_record
from .ownership import (
    TOOL,
    OutputKind,
    check_inputs,
    clear,
    files_only,
    locked,
    owned_record,
    write_json,
)
from .parallel import chunked, pool, run_chunks
from .plan import Item, check_seed, class_targets, make_plan
from .scan import Scan, check_source, scan, sizes_by_class
from .transforms import PAPER_SET, TRANSFORMS, parse_transforms, unsuited

WRITTEN_SUFFIXES = (".jpg", ".png", imageio.TEMP_SUFFIX)  # what the tools write in a class folder


def is_written(name: str) -> bool:
    return name.endswith(WRITTEN_SUFFIXES) and not name.startswith(".")


def _build_holds(record: dict, entry: Path) -> bool:
    if entry.name in (MANIFEST, RECORD):
        return entry.is_file() and not entry.is_symlink()
    counts = record.get("counts")
    return isinstance(counts, dict) and entry.name in counts and files_only(entry, is_written)


BUILD_OUTPUT = OutputKind("balance build output", RECORD, "build", _build_holds)


@dataclass
class BuildResult:
    out: Path
    scan: Scan
    targets: dict[str, int]
    items: list[Item]  # empty for a dry run (the counts are in record)
    record: dict = field(default_factory=dict)
    written: bool = False  # False for a dry run


def _make(item: Item, src: str, out: str, quality: int, link: bool, cache: list) -> tuple:
    """Write one item's file unless present; return (params or None, sha256 of the file)."""
    dst, source = Path(out, item.file_name), Path(src, item.source)
    if item.action == "copy":
        if dst.exists():
            return None, _sha256(imageio.read_bytes(dst))
        data = imageio.read_bytes(source)
        if link:
            imageio.copy_atomic(source, dst, link=True)
        else:
            imageio.write_atomic(dst, data)
        return None, _sha256(data)
    if cache[0] != item.source:  # tasks come sorted by source: each original decoded once
        cache[:] = [item.source, imageio.load(source).image]
    image = cache[1]
    if item.action == "encode":
        params = {"exif_orientation": item.orientation} if item.orientation != 1 else None
        return params, _put(dst, lambda: image, quality)
    transform = TRANSFORMS[item.transform]
    params = transform.draw(image.shape, np.random.default_rng(item.seed), item.magnitude)
    return params, _put(dst, lambda: transform.apply(image, params), quality)


def _put(dst: Path, render, quality: int) -> str:
    """Encode render() into dst (format by extension) unless dst exists; its sha256."""
    if dst.exists():
        return _sha256(imageio.read_bytes(dst))
    data = imageio.encode(render(), "jpeg" if dst.suffix == ".jpg" else "png", quality)
    imageio.write_atomic(dst, data)
    return _sha256(data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _work_chunk(src: str, out: str, quality: int, link: bool, tasks: list[Item]) -> list:
    """Make each item's file unless it is already there; return (file_name, params, sha256)."""
    results, cache = [], [None, None]
    for item in tasks:
        if imageio.parent_gone():
            raise SystemExit(1)
        try:
            results.append((item.file_name, *_make(item, src, out, quality, link, cache)))
        except imageio.BadImage as exc:
            raise BalanceError(f"{item.source} changed since it was checked: {exc}") from None
        except OSError as exc:
            raise BalanceError(
                f"cannot write {Path(out, item.file_name)}: {exc.strerror or exc}"
            ) from None
    return results


def check_output(
    root: Path,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    kind: OutputKind = BUILD_OUTPUT,
) -> tuple[Path, dict | None]:
    """(OUT resolved, the record of the earlier output it holds or None) once OUT is safe to
    write: not SRC, inside it or around it; missing or empty; or a proven earlier output of
    this kind that the user asked to resume or replace. Else a one-line BalanceError."""
    out = Path(out).resolve()
    check_inputs(out, {"source folder": root})
    if resume and overwrite:
        raise BalanceError("give --resume or --overwrite, not both")
    if out.exists() and not out.is_dir():
        raise BalanceError(f"output exists and is not a folder: {out}")
    if not out.exists() or not any(out.iterdir()):
        return out, None
    if not (resume or overwrite):
        raise BalanceError(
            f"output folder exists and is not empty: {out} "
            "(--resume finishes an interrupted run, --overwrite replaces it)"
        )
    return out, owned_record(out, kind)


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
    progress: bool = True,
) -> dict[str, tuple]:
    """Make every item's file (those present are kept); {file_name: (params, sha256)}."""
    try:
        for folder in sorted({str(Path(it.file_name).parent) for it in items}):
            (out / folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BalanceError(f"cannot write to {out}: {exc.strerror or exc}") from None
    tasks = sorted(items, key=lambda it: (it.source, it.file_name))
    chunks = chunked(tasks, workers)
    work = partial(_work_chunk, str(root), str(out), quality, link)
    written: dict[str, tuple] = {}
    try:
        for _, results in run_chunks(work, chunks, workers, progress, desc="writing"):
            written.update((name, (params, sha)) for name, params, sha in results)
    except BaseException:
        sweep(out, items)  # workers stopped mid-write leave temporaries behind
        raise
    return written


def _settings_differ(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys)


def _source_changes(previous: dict, found: Scan) -> str:
    """What changed in SRC since an interrupted run started, in words."""
    since = previous.get("newest_source_mtime_ns") or 0
    changed = [im.path for ims in found.images.values() for im in ims if im.mtime_ns > since]
    before = {
        label: c.get("before")
        for label, c in previous.get("counts", {}).items()
        if isinstance(c, dict)
    }
    parts = []
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        parts.append(
            f"{len(changed)} file(s) modified since it started: {', '.join(changed[:5])}{more}"
        )
    for label in sorted(set(before) | set(found.images)):
        now = len(found.images.get(label, []))
        if before.get(label) != now:
            parts.append(f"class '{label}' had {before.get(label, 0)} images, now {now}")
    return "; ".join(parts) or "files were replaced, renamed or re-tagged"


def estimate_bytes(found: Scan, targets: Mapping[str, int], link: bool) -> int:
    """Disk space the plan needs: originals (unless hard-linked) plus each class's copies at
    its originals' mean size."""
    total = 0.0
    for label, images in found.images.items():
        sizes = sum(im.size for im in images)
        total += (0 if link else sizes) + sizes / len(images) * (targets[label] - len(images))
    return int(total)


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


def build(
    src: str | Path,
    out: str | Path,
    *,
    nmin: int | None = None,
    target: str | None = None,
    per_class: Mapping[str, int] | None = None,
    transforms: str | Mapping[str, float | None] = PAPER_SET,
    seed: int = 0,
    quality: int = 95,
    link: bool = False,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    backend: str = "loky",
    scheduler: str | None = None,
    max_image_mb: int = imageio.MAX_IMAGE_BYTES >> 20,
    space_check: bool = True,
) -> BuildResult:
    """Balance SRC into OUT (see ARCHITECTURE.md); BalanceError for every user error.

    Nothing is written until the source is scanned and the plan is made, so a bad
    option or a bad source leaves OUT untouched. backend='dask' runs the same chunks on a
    Dask cluster (`scheduler`, or a local one): SRC and OUT must be on shared storage.
    """
    chosen = dict(transforms) if isinstance(transforms, Mapping) else parse_transforms(transforms)
    for name, magnitude in chosen.items():
        if name not in TRANSFORMS:
            raise BalanceError(f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}")
        chosen[name] = TRANSFORMS[name].check(magnitude)
    if not 1 <= quality <= 100:
        raise BalanceError(f"--quality must be between 1 and 100 (got {quality})")
    if not 1 <= max_image_mb <= 1 << 20:
        raise BalanceError(f"--max-image-mb must be between 1 and {1 << 20} (got {max_image_mb})")
    check_seed(seed)
    root = check_source(src)
    out, _ = check_output(root, out, resume=resume, overwrite=overwrite)
    options = dict(
        nmin=nmin,
        target=target,
        per_class=per_class,
        chosen=chosen,
        seed=seed,
        quality=quality,
        link=link,
        max_bytes=max_image_mb << 20,
        progress=progress,
        space_check=space_check,
    )
    with pool(backend, scheduler, workers) as p:
        p.check_shared(root, next(d for d in (out, *out.parents) if d.exists()))
        if dry_run:
            return _plan(root, out, p.workers, **options)
        with locked(out):
            _, previous = check_output(root, out, resume=resume, overwrite=overwrite)
            result = _plan(root, out, p.workers, **options)
            _check_resume(previous, result, resume)
            return _write(
                root, out, result, p.workers, previous, overwrite, quality, link, progress
            )


def _plan(
    root,
    out,
    workers,
    *,
    nmin,
    target,
    per_class,
    chosen,
    seed,
    quality,
    link,
    max_bytes,
    progress,
    space_check,
) -> BuildResult:
    found = scan(root, workers, progress, max_bytes=max_bytes)
    counts = found.counts()
    targets = class_targets(counts, nmin, target, per_class)
    files = sum(targets.values())
    needed = estimate_bytes(found, targets, link)
    settings = {
        "source_digest": found.digest(),
        "nmin": nmin,
        "target": target,
        "per_class": dict(sorted((per_class or {}).items())),
        "transforms": chosen,
        "seed": seed,
        "quality": quality,
        "max_image_mb": max_bytes >> 20,
    }
    record = {
        "tool": TOOL,
        "kind": "build",
        "version": __version__,
        "status": "running",
        "source": str(root),
        "settings": settings,
        "newest_source_mtime_ns": max(im.mtime_ns for ims in found.images.values() for im in ims),
        "transforms": {
            n: {"magnitude": m, "summary": TRANSFORMS[n].summary} for n, m in chosen.items()
        },
        "counts": {
            label: {
                "before": counts[label],
                "copies": targets[label] - counts[label],
                "after": targets[label],
            }
            for label in sorted(counts)
        },
        "files": files,
        "estimated_bytes": needed,
        "empty_classes": found.empty,
        "skipped": [{"path": s.path, "reason": s.reason} for s in found.skipped],
        "ignored": found.ignored,
    }
    record["warnings"] = unsuited(chosen, sizes_by_class(found))
    for message in record["warnings"]:
        warnings.warn(message, ToolWarning, stacklevel=3)
    result = BuildResult(out, found, targets, [], record)
    if space_check:
        present = (
            sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) if out.exists() else 0
        )
        check_space(out, needed - present, files)
    return result


def _check_resume(previous: dict | None, result: BuildResult, resume: bool) -> None:
    if not (resume and previous is not None):
        return
    old, new = previous.get("settings"), result.record["settings"]
    if not isinstance(old, dict):
        raise BalanceError(
            f"{RECORD} in {result.out} has no settings to resume from; "
            "use --overwrite to start again"
        )
    if old.get("source_digest") != new["source_digest"]:
        raise BalanceError(
            "--resume: the source changed since the interrupted run ("
            + _source_changes(previous, result.scan)
            + "); resuming would mix "
            "old and new pixels: use --overwrite to start again"
        )
    if old != new:
        raise BalanceError(
            "--resume with other settings than the interrupted run: " + _settings_differ(old, new)
        )


def _write(
    root, out, result: BuildResult, workers, previous, overwrite, quality, link, progress
) -> BuildResult:
    record = result.record
    items = make_plan(
        result.scan.images,
        result.targets,
        record["settings"]["transforms"],
        record["settings"]["seed"],
    )
    result.items = items
    prepare_folders(out, items, BUILD_OUTPUT, record, previous, overwrite)
    written = run_items(root, out, items, workers, quality=quality, link=link, progress=progress)
    sweep(out, items)  # a killed run's stray worker may have finished a file after the first sweep
    record["manifest_sha256"] = write_manifest(out, manifest_rows(items, written))
    record["status"] = "complete"
    write_record(out, record)
    result.written = True
    return result
