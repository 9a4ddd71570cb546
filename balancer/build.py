"""Run a balancing plan on joblib's process pool: atomic writes, deterministic, resumable.

OUT is a pure function of SRC, the settings and the seed: each file's bytes depend only on
its own plan item, so the number of workers and the order of work never show. Every file
appears under its final name only once whole, so after a kill a present file is a finished
file, and `resume=True` does only what is missing.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Mapping

import numpy as np

from . import __version__, imageio
from .errors import BalanceError
from .manifest import RECORD, manifest_rows, read_record, write_manifest, write_record
from .parallel import chunked, pool, run_chunks
from .plan import Item, class_targets, make_plan
from .scan import Scan, check_source, scan
from .transforms import PAPER_SET, TRANSFORMS, parse_transforms


@dataclass
class BuildResult:
    out: Path
    scan: Scan
    targets: dict[str, int]
    items: list[Item]
    record: dict = field(default_factory=dict)
    written: bool = False  # False for a dry run


def _work_chunk(src: str, out: str, quality: int, link: bool, tasks: list[Item]) -> list:
    """Make each item's file unless it is already there; return (file_name, params) of copies.

    Tasks come sorted by source, so an original used for several copies is decoded once.
    """
    results, cached = [], (None, None)
    for item in tasks:
        dst, source = Path(out, item.file_name), Path(src, item.source)
        try:
            if item.action == "augment":
                if cached[0] != item.source:
                    cached = (item.source, imageio.load(source).image)
                image = cached[1]
                transform = TRANSFORMS[item.transform]
                params = transform.draw(image.shape, np.random.default_rng(item.seed),
                                        item.magnitude)
                if not dst.exists():
                    fmt = "jpeg" if dst.suffix == ".jpg" else "png"
                    imageio.write_atomic(dst, imageio.encode(transform.apply(image, params),
                                                             fmt, quality))
                results.append((item.file_name, params))
            elif dst.exists():
                continue
            elif item.action == "copy":
                imageio.copy_atomic(source, dst, link)
            else:
                imageio.write_atomic(dst, imageio.encode(imageio.load(source).image, "png"))
        except imageio.BadImage as exc:
            raise BalanceError(f"{item.source} changed since it was checked: {exc}") from None
        except OSError as exc:
            raise BalanceError(f"cannot write {dst}: {exc.strerror or exc}") from None
    return results


def check_output(root: Path, out: str | Path, *, resume: bool = False, overwrite: bool = False,
                 marker: str = RECORD) -> Path:
    """OUT, resolved, once it is safe to write: not SRC or inside it, empty, or an earlier
    output of ours (it holds `marker`) that we may resume or replace; else BalanceError."""
    out = Path(out).resolve()
    if out == root or root in out.parents:
        raise BalanceError(f"output folder {out} must not be the source folder or inside it")
    if out in root.parents:
        raise BalanceError(f"source folder {root} must not be inside the output folder {out}")
    if out.exists() and not out.is_dir():
        raise BalanceError(f"output exists and is not a folder: {out}")
    if resume and overwrite:
        raise BalanceError("give --resume or --overwrite, not both")
    if out.exists() and any(out.iterdir()):
        if not (resume or overwrite):
            hint = "--resume finishes an interrupted build, " if marker == RECORD else ""
            raise BalanceError(f"output folder exists and is not empty: {out} "
                               f"({hint}--overwrite replaces it)")
        if not (out / marker).exists():
            raise BalanceError(f"{out} holds no {marker}: not an output of this tool, so it is "
                               "neither resumed nor deleted")
    return out


def run_items(root: Path, out: Path, items: list[Item], workers: int, *, quality: int = 95,
              link: bool = False, progress: bool = True, replace: bool = False,
              before=None) -> dict[str, dict]:
    """Create OUT's folders and every item's file (those present are kept); return params.

    `replace` deletes OUT first; `before(out)` runs once the folders exist (to write the
    run record before any image). Temporaries of an interrupted run are swept.
    """
    if replace and out.exists():
        shutil.rmtree(out)
    try:
        for folder in sorted({str(Path(it.file_name).parent) for it in items}):
            (out / folder).mkdir(parents=True, exist_ok=True)
        _sweep_temporaries(out)
        if before:
            before(out)
    except OSError as exc:
        raise BalanceError(f"cannot write to {out}: {exc.strerror or exc}") from None
    tasks = sorted(items, key=lambda it: (it.source, it.file_name))
    chunks = chunked(tasks, workers)
    work = partial(_work_chunk, str(root), str(out), quality, link)
    params: dict[str, dict] = {}
    try:
        for _, drawn in run_chunks(work, chunks, workers, progress, desc="writing"):
            params.update(drawn)
    except BaseException:
        _sweep_temporaries(out)  # workers stopped mid-write leave temporaries behind
        raise
    return params


def _settings_differ(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} was {old.get(k)!r}, now {new.get(k)!r}" for k in keys)


def _sweep_temporaries(out: Path) -> None:
    for tmp in out.rglob(f"*{imageio.TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


def build(src: str | Path, out: str | Path, *, nmin: int | None = None,
          target: str | None = None, per_class: Mapping[str, int] | None = None,
          transforms: str | Mapping[str, float | None] = PAPER_SET, seed: int = 0,
          quality: int = 95, link: bool = False, workers: int | None = None,
          resume: bool = False, overwrite: bool = False, dry_run: bool = False,
          progress: bool = True, backend: str = "loky", scheduler: str | None = None) -> BuildResult:
    """Balance SRC into OUT (see DESIGN.md); BalanceError for every user error.

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
    if workers is not None and workers < 1:
        raise BalanceError(f"--workers must be at least 1 (got {workers})")
    root = check_source(src)
    out = check_output(root, out, resume=resume, overwrite=overwrite)
    with pool(backend, scheduler, workers) as p:
        p.check_shared(root, next(d for d in (out, *out.parents) if d.exists()))
        return _build(root, out, chosen, nmin, target, per_class, seed, quality, link,
                      p.workers, resume, overwrite, dry_run, progress)


def _build(root, out, chosen, nmin, target, per_class, seed, quality, link, workers, resume,
           overwrite, dry_run, progress) -> BuildResult:
    previous = read_record(out) if out.exists() else None

    found = scan(root, workers, progress)
    targets = class_targets(found.counts(), nmin, target, per_class)
    items = make_plan(found.images, targets, chosen, seed)
    settings = {"source_digest": found.digest(), "nmin": nmin, "target": target,
                "per_class": dict(sorted((per_class or {}).items())),
                "transforms": chosen, "seed": seed, "quality": quality}
    if resume and previous is not None and previous.get("settings") != settings:
        raise BalanceError("--resume with other settings than the interrupted run: "
                           + _settings_differ(previous.get("settings", {}), settings))
    counts = found.counts()
    record = {
        "tool": "balanced-aug", "version": __version__, "status": "running",
        "source": str(root), "settings": settings,
        "transforms": {n: {"magnitude": m, "summary": TRANSFORMS[n].summary}
                       for n, m in chosen.items()},
        "counts": {label: {"before": counts[label], "copies": targets[label] - counts[label],
                           "after": targets[label]} for label in sorted(counts)},
        "files": len(items), "empty_classes": found.empty,
        "skipped": [{"path": s.path, "reason": s.reason} for s in found.skipped],
        "ignored": found.ignored,
    }
    result = BuildResult(out, found, targets, items, record)
    if dry_run:
        return result

    params = run_items(root, out, items, workers, quality=quality, link=link,
                       progress=progress, replace=overwrite,
                       before=lambda folder: write_record(folder, record))
    write_manifest(out, manifest_rows(items, params))
    record["status"] = "complete"
    write_record(out, record)
    result.written = True
    return result
