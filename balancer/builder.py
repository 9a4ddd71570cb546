"""`balance build`: scan SRC, plan, write OUT on joblib's process pool; resumable.

OUT is a pure function of SRC and the BuildSettings: each file's bytes depend only on its
own plan item, so the number of workers and the order of work never show. Every file
appears under its final name only once whole, so after a kill a present file is a finished
file, and `resume=True` does only what is missing. The command holds a lock on OUT while it
runs, and replaces or resumes only a folder proven to be a build output (see ownership.py).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import __version__, imageio
from .errors import BalanceError, ToolWarning
from .manifest import MANIFEST, RECORD, manifest_rows, write_manifest, write_record
from .ownership import TOOL, OutputKind, check_output, files_only, locked
from .parallel import pool
from .plan import Item, check_seed, check_target, class_targets, make_plan
from .source import Scan, check_source, scan, sizes_by_class
from .transforms import PAPER_SET, TRANSFORMS, parse_transforms, unsuited
from .writing import is_written, prepare_folders, run_items, sweep


@dataclass(frozen=True, kw_only=True)
class BuildSettings:
    """What OUT's contents depend on, checked once when made and passed whole.

    transforms: 'crop,rotate=30' or {name: magnitude or None}; kept as that dict. Give one of
    nmin (every class up to at least N), target='majority', or per_class counts (which may
    also override nmin/target for named classes). link hard-links the originals instead of
    copying them (same bytes, less disk).
    """

    nmin: int | None = None
    target: str | None = None
    per_class: Mapping[str, int] = field(default_factory=dict)
    transforms: str | Mapping[str, float | None] = PAPER_SET
    seed: int = 0
    quality: int = 95
    max_image_mb: int = imageio.MAX_IMAGE_BYTES >> 20
    link: bool = False

    def __post_init__(self) -> None:
        given = self.transforms
        chosen = dict(given) if isinstance(given, Mapping) else parse_transforms(given)
        if not chosen:
            raise BalanceError("no transforms chosen")
        for name, magnitude in chosen.items():
            if name not in TRANSFORMS:
                raise BalanceError(
                    f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}"
                )
            chosen[name] = TRANSFORMS[name].check(magnitude)
        if not 1 <= self.quality <= 100:
            raise BalanceError(f"--quality must be between 1 and 100 (got {self.quality})")
        if not 1 <= self.max_image_mb <= 1 << 20:
            raise BalanceError(
                f"--max-image-mb must be between 1 and {1 << 20} (got {self.max_image_mb})"
            )
        check_seed(self.seed)
        per_class = dict(sorted(check_target(self.nmin, self.target, self.per_class).items()))
        object.__setattr__(self, "transforms", chosen)
        object.__setattr__(self, "per_class", per_class)

    @property
    def chosen(self) -> dict[str, float | None]:
        """The transform set T: {name: magnitude}."""
        return dict(self.transforms)  # type: ignore[arg-type]  # a dict after __post_init__

    def key(self, found: Scan) -> dict:
        """The resume key (balance.json's "settings"): everything that decides a file's bytes,
        and the source's digest. `link` is not in it: a link and a copy hold the same bytes."""
        return {
            "source_digest": found.digest(),
            "nmin": self.nmin,
            "target": self.target,
            "per_class": dict(self.per_class),
            "transforms": self.chosen,
            "seed": self.seed,
            "quality": self.quality,
            "max_image_mb": self.max_image_mb,
        }


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
    items: list[Item]  # the plan; empty for a dry run (the counts are in record)
    record: dict = field(default_factory=dict)
    written: bool = False  # False for a dry run


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
    settings: BuildSettings,
    *,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    backend: str = "loky",
    scheduler: str | None = None,
    space_check: bool = True,
) -> BuildResult:
    """Balance SRC into OUT (see ARCHITECTURE.md); BalanceError for every user error.

    Nothing is written until the source is scanned and the plan is made, so a bad
    option or a bad source leaves OUT untouched. backend='dask' runs the same chunks on a
    Dask cluster (`scheduler`, or a local one): SRC and OUT must be on shared storage.
    """
    root = check_source(src)
    guard: dict[str, Any] = dict(inputs={"source folder": root}, resume=resume, overwrite=overwrite)
    out, _ = check_output(out, BUILD_OUTPUT, **guard)
    with pool(backend, scheduler, workers) as p:
        p.check_shared(root, next(d for d in (out, *out.parents) if d.exists()))
        plan = partial(_plan, root, settings=settings, workers=p.workers, progress=progress)
        if dry_run:
            return plan(out, space_check=space_check)
        with locked(out):  # OUT was proven above; again under the lock, as `claimed` does
            _, previous = check_output(out, BUILD_OUTPUT, **guard)
            result = plan(out, space_check=space_check)
            if resume and previous is not None:
                _check_resume(previous, result)
            result.items = make_plan(
                result.scan.images, result.targets, settings.chosen, settings.seed
            )
            prepare_folders(out, result.items, BUILD_OUTPUT, result.record, previous, overwrite)
            return _write(result, settings, workers=p.workers, progress=progress)


def _record(root: Path, found: Scan, settings: BuildSettings, targets: dict[str, int]) -> dict:
    """balance.json: the settings, the counts, what was skipped, as the run starts."""
    counts = found.counts()
    chosen = settings.chosen
    return {
        "tool": TOOL,
        "kind": "build",
        "version": __version__,
        "status": "running",
        "source": str(root),
        "settings": settings.key(found),
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
        "files": sum(targets.values()),
        "estimated_bytes": estimate_bytes(found, targets, settings.link),
        "empty_classes": found.empty,
        "skipped": found.skipped_list(),
        "ignored": found.ignored,
        "warnings": unsuited(chosen, sizes_by_class(found)),
    }


def _plan(
    root: Path,
    out: Path,
    *,
    settings: BuildSettings,
    workers: int,
    progress: bool,
    space_check: bool,
) -> BuildResult:
    found = scan(root, workers=workers, progress=progress, max_bytes=settings.max_image_mb << 20)
    targets = class_targets(
        found.counts(), nmin=settings.nmin, target=settings.target, per_class=settings.per_class
    )
    record = _record(root, found, settings, targets)
    for message in record["warnings"]:
        warnings.warn(message, ToolWarning, stacklevel=3)
    if space_check:
        present = (
            sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) if out.exists() else 0
        )
        check_space(out, record["estimated_bytes"] - present, record["files"])
    return BuildResult(out, found, targets, [], record)


def _check_resume(previous: dict, result: BuildResult) -> None:
    """Refuse to finish an interrupted run of another source or other settings."""
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
    result: BuildResult, settings: BuildSettings, *, workers: int, progress: bool
) -> BuildResult:
    out, record, items = result.out, result.record, result.items
    written = run_items(
        result.scan.root,
        out,
        items,
        workers,
        quality=settings.quality,
        link=settings.link,
        max_bytes=settings.max_image_mb << 20,
        progress=progress,
    )
    sweep(out, items)  # a killed run's stray worker may have finished a file after the first sweep
    record["manifest_sha256"] = write_manifest(out, manifest_rows(items, written))
    record["status"] = "complete"
    write_record(out, record)
    result.written = True
    return result
