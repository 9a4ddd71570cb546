"""`balance build`: scan SRC, plan, write OUT on joblib's process pool; resumable.

OUT is a pure function of SRC and the BuildSettings: each file's bytes depend only on its
own plan item, so the number of workers and the order of work never show. Every file
appears under its final name only once whole and recorded in the manifest (the journal), so
`existing=Existing.RESUME` keeps what its row proves and does only what is missing. The
command holds a lock on OUT while it runs, and replaces or resumes only a folder its own
listing proves a build output (balancer.common.ownership).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import __version__
from .common.atomic import write_atomic
from .common.checks import flag, instance
from .common.errors import OVERWRITE, RESUME, BalanceError, ToolWarning
from .common.limits import JPEG_QUALITY, MAX_IMAGE_MB
from .common.ownership import (
    Claim,
    Existing,
    OutputKind,
    check_claim,
    claim,
    differences,
    stamp,
    tool_record,
)
from .common.parallel import Pool, RunOptions, pool
from .common.storage import Place, Remote, local_folders, location
from .journal import Journal, ObjectJournal, Written, csv_listing, journal_for
from .manifest import (
    COLUMNS,
    MANIFEST,
    RECIPE,
    RECORD,
    csv_bytes,
    is_balanced_folder,
    manifest_row,
)
from .plan import Item, check_seed, check_target, class_targets, make_plan, thin_classes
from .reports import BuildRecord
from .source import Scan, check_source, scan, sizes_by_class
from .space import block_size, check_space, estimate_bytes
from .store_writing import check_link
from .transforms import PAPER_SET, TRANSFORMS, check_spec, unsuited
from .unchanged import source_changes
from .writing import Writing, run_items, unchanged_copies, unchanged_warning


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
    quality: int = JPEG_QUALITY
    max_image_mb: int = MAX_IMAGE_MB
    link: bool = False

    def __post_init__(self) -> None:
        chosen = check_spec(self.transforms)
        object.__setattr__(self, "link", flag(self.link, "link"))
        if not isinstance(self.per_class, Mapping):
            raise TypeError(
                f"per_class must be a mapping of class names to counts, not "
                f"{type(self.per_class).__name__}"
            )
        self.writing  # noqa: B018  (checks quality and max_image_mb, in one place)
        check_seed(self.seed)
        per_class = dict(sorted(check_target(self.nmin, self.target, self.per_class).items()))
        object.__setattr__(self, "transforms", chosen)
        object.__setattr__(self, "per_class", per_class)

    @property
    def chosen(self) -> dict[str, float | None]:
        """The transform set T: {name: magnitude}."""
        return dict(self.transforms)  # type: ignore[arg-type]  # a dict after __post_init__

    @property
    def writing(self) -> Writing:
        """How this build writes each file (format, quality, size limit)."""
        return Writing(quality=self.quality, max_image_mb=self.max_image_mb, link=self.link)

    @classmethod
    def from_key(cls, key: Mapping) -> BuildSettings:
        """The settings a resume key (balance.json's "settings") records."""
        fields = ("nmin", "target", "per_class", "transforms", "seed", "quality", "max_image_mb")
        try:
            return cls(**{f: key[f] for f in fields if f in key})
        except (TypeError, ValueError) as exc:
            raise BalanceError(f"{RECORD}'s settings are not a build's ({exc})") from None

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


BUILD_OUTPUT = OutputKind(
    "balance build output",
    RECORD,
    "build",
    listing=csv_listing(MANIFEST, "manifest_sha256"),
    listing_file=MANIFEST,
    shape=BuildRecord,
)


@dataclass
class BuildResult:
    """A build's outcome: where it went, the scan, the targets, the planned items, the record."""

    out: Place
    scan: Scan
    targets: dict[str, int]
    items: list[Item]  # the plan; empty for a dry run (the counts are in record)
    record: dict = field(default_factory=dict)
    written: bool = False  # False for a dry run

    def __repr__(self) -> str:
        what = "written" if self.written else "planned"
        return (
            f"BuildResult(out={str(self.out)!r}, files={sum(self.targets.values())}, "
            f"classes={len(self.targets)}, {what})"
        )


def build(
    src: str | Place,
    out: str | Place,
    settings: BuildSettings,
    *,
    existing: Existing = Existing.ERROR,
    run: RunOptions = RunOptions(),
    dry_run: bool = False,
    space_check: bool = True,
    recipe_only: bool = False,
) -> BuildResult:
    """Balance SRC into OUT (see ARCHITECTURE.md); BalanceError for every user error.

    Nothing is written until the source is scanned and the plan is made, so a bad option
    or a bad source leaves OUT untouched. `existing` says what to do with an OUT that holds
    an earlier build: refuse it, resume it (same source and settings), or replace it.
    `run.backend='dask'` runs the same chunks on a Dask cluster: SRC and OUT must then be on
    storage every worker sees. `recipe_only` writes the records alone: balance.json and a
    manifest.csv of every planned file, none written (see `recipe` and `materialize`).
    """
    settings = instance(settings, BuildSettings, "settings", "BuildSettings(nmin=1500)")
    run = instance(run, RunOptions, "run", "RunOptions(workers=4)")
    dry_run, space_check = flag(dry_run, "dry_run"), flag(space_check, "space_check")
    space_check = space_check and not flag(recipe_only, "recipe_only")
    root = check_source(src)
    if is_balanced_folder(root):  # its copies would become originals, each its own source
        raise BalanceError(
            f"{root} is already a balanced folder ({RECORD}): build from its source "
            f"({_source_of(root)}), as its copies are not sources of their own"
        )
    inputs = {"source folder": root}
    out, _ = check_claim(out, BUILD_OUTPUT, inputs=inputs, existing=existing)
    check_link(out, link=settings.link)
    with pool(run) as p:
        p.check_shared(*local_folders(root, out))
        if dry_run:
            return _survey(root, out, settings, p, space_check=space_check)
        with claim(out, BUILD_OUTPUT, inputs=inputs, existing=existing) as c:
            result = _survey(root, out, settings, p, space_check=space_check)
            if c.resuming:
                _check_resume(c.previous or {}, result)
            result.items = make_plan(
                result.scan.images, result.targets, settings.chosen, settings.seed
            )
            c.begin(result.record)
            if recipe_only:
                return _write_recipe(c, result)
            return _write(c, result, settings, p)


def materialize(folder: str | Place, *, run: RunOptions = RunOptions()) -> BuildResult:
    """Write every file a recipe-only build of FOLDER plans, into FOLDER: the build it
    records, resumed from nothing, byte-identical to a direct build; refused when its source
    changed since (one line naming what changed). An interrupted build (a materialize, or
    any build) is continued with its recorded settings."""
    from .manifest import read_record

    record = read_record(folder)
    if record is None or record.get("status") not in (RECIPE, "running"):
        raise BalanceError(f"{folder} is not a recipe (`balance build --recipe-only` writes one)")
    settings = BuildSettings.from_key(record.get("settings") or {})
    source = location(str(record.get("source", "")))
    if not source.is_dir():
        raise BalanceError(f"the source {source} that {folder} was planned from is not there")
    return build(source, folder, settings, existing=Existing.RESUME, run=run)


def _write_recipe(c: Claim, result: BuildResult) -> BuildResult:
    """A recipe-only build's records: the manifest of every planned file (params, size and
    sha256 empty: nothing was drawn or written), then balance.json, status 'recipe'."""
    blank = Written(None, 0, "")
    rows = (
        {**manifest_row(it, blank), "size": "", "sha256": ""}
        for it in sorted(result.items, key=lambda it: it.file_name)
    )
    data = csv_bytes(rows, COLUMNS)
    try:
        write_atomic(c.path / MANIFEST, data)
    except OSError as exc:
        raise BalanceError(f"cannot write {c.path / MANIFEST}: {exc.strerror or exc}") from None
    record = {**result.record, "manifest_sha256": hashlib.sha256(data).hexdigest()}
    result.record = c.complete(record, status=RECIPE)
    return result


def _source_of(root: Place) -> str:
    """The source a balanced folder was built from, as its record names it."""
    found = tool_record(root)
    source = found[1].get("source") if found else None
    return source if isinstance(source, str) else "the folder it was built from"


def _record(
    root: Place, found: Scan, settings: BuildSettings, targets: dict[str, int], block: int
) -> dict:
    """balance.json: the settings, the counts, what was skipped, as the run starts."""
    counts = found.counts()
    chosen = settings.chosen
    return stamp(
        BUILD_OUTPUT,
        {
            "status": "planned",
            "source": str(root),
            "settings": settings.key(found),
            "newest_source_mtime_ns": max(
                im.mtime_ns for ims in found.images.values() for im in ims
            ),
            "newest_source_ctime_ns": max(
                im.ctime_ns for ims in found.images.values() for im in ims
            ),
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
            "estimated_bytes": estimate_bytes(found, targets, link=settings.link, block=block),
            "empty_classes": found.empty,
            "skipped": found.skipped_list(),
            "ignored": found.ignored,
            "warnings": unsuited(chosen, sizes_by_class(found)) + thin_classes(counts, targets),
        },
    )


def _survey(
    root: Place, out: Place, settings: BuildSettings, p: Pool, *, space_check: bool
) -> BuildResult:
    """Scan SRC and choose each class's target, writing nothing: the record as the build
    starts (its warnings said) and, with `space_check`, room for it on OUT's disk. The plan's
    items are made later, once OUT is claimed."""
    found = scan(root, workers=p.workers, progress=p.progress, max_bytes=settings.writing.max_bytes)
    targets = class_targets(
        found.counts(), nmin=settings.nmin, target=settings.target, per_class=settings.per_class
    )
    block = block_size(out)
    record = _record(root, found, settings, targets, block)
    for message in record["warnings"]:
        warnings.warn(message, ToolWarning, stacklevel=3)
    if space_check and not isinstance(out, Remote):  # a store has no disk to fill
        present = (
            sum(
                f.stat().st_blocks * 512
                for f in out.rglob("*")
                if f.is_file() and not f.is_symlink()
            )
            if out.exists()
            else 0
        )
        check_space(out, record["estimated_bytes"] - present, record["files"])
    return BuildResult(out, found, targets, [], record)


def _check_resume(previous: dict, result: BuildResult) -> None:
    """Refuse to finish an interrupted run of another source, other settings or another
    version of the tool (its files might be rendered differently)."""
    old, new = previous.get("settings"), result.record["settings"]
    if not isinstance(old, dict):
        raise BalanceError(
            f"{RECORD} in {result.out} has no settings to resume from; "
            f"use {OVERWRITE} to start again"
        )
    if previous.get("version") != __version__:
        raise BalanceError(
            f"{RESUME}: {result.out} was started by version {previous.get('version')} of "
            f"the tool, this is {__version__}; use {OVERWRITE} to start again"
        )
    if old.get("source_digest") != new["source_digest"]:
        raise BalanceError(
            f"{RESUME}: the source changed since the interrupted run ("
            + source_changes(previous, result.scan)
            + "); resuming would mix "
            f"old and new pixels: use {OVERWRITE} to start again"
        )
    if old != new:
        raise BalanceError(
            f"{RESUME} with other settings than the interrupted run: " + differences(old, new)
        )


def manifest_journal(out: Place) -> Journal | ObjectJournal:
    """The journal a build keeps in OUT's manifest.csv while its files land (in a store,
    in objects beside it)."""
    return journal_for(out, MANIFEST, COLUMNS, manifest_row)


def _write(c: Claim, result: BuildResult, settings: BuildSettings, p: Pool) -> BuildResult:
    items, journal = result.items, manifest_journal(c.path)
    written = run_items(
        result.scan.root,
        c.path,
        items,
        p.workers,
        settings.writing,
        journal=journal,
        progress=p.progress,
    )
    record = dict(result.record)
    unchanged = unchanged_copies(items, written)
    if unchanged:
        record["warnings"] = [*record["warnings"], unchanged_warning(unchanged)]
        warnings.warn(record["warnings"][-1], ToolWarning, stacklevel=3)
    record["unchanged_copies"] = [it.file_name for it in unchanged]
    record["manifest_sha256"] = journal.finish(items, written)
    result.record = c.complete(record)
    result.written = True
    return result
