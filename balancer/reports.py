"""The shapes of what the balancer writes and returns, as TypedDicts: a reader of
balance.json or of `balance stats --json` (and mypy) knows each field and its type from here."""

from __future__ import annotations

from typing import Any, TypedDict

from .common.shapes import OutputRecord


class ClassCounts(TypedDict):
    """One class in balance.json's `counts`."""

    before: int
    copies: int
    after: int


class BuildRecord(OutputRecord, total=False):
    """balance.json: who wrote it, the settings (the resume key), the counts, what was left
    out, and (once complete) the manifest's checksum."""

    source: str
    newest_source_mtime_ns: int
    newest_source_ctime_ns: int  # a file changed after the scan, even with its times set back
    transforms: dict[str, dict[str, Any]]  # name -> {magnitude, summary}
    counts: dict[str, ClassCounts]
    files: int
    estimated_bytes: int
    empty_classes: list[str]
    skipped: list[dict[str, str]]  # {path, reason}
    ignored: int
    warnings: list[str]
    unchanged_copies: list[str]  # copies no draw made differ from their original
    manifest_sha256: str


class SplitRecord(OutputRecord, total=False):
    """split.json: who wrote it, the settings (the resume key), the counts per class and
    part, and (once complete) split.csv's checksum."""

    source: str
    counts: dict[str, dict[str, int]]
    split_sha256: str


class ClassStats(TypedDict, total=False):
    """One class in `balance stats`: its count; a balanced folder's originals and copies; a
    plan's copies and count after."""

    count: int
    originals: int
    augmented: int
    copies: int
    after: int


class PlanStats(TypedDict):
    """What a build with the given target would write."""

    copies: int
    after: int
    estimated_bytes: int
    imbalance_ratio_after: float


class FolderStats(TypedDict, total=False):
    """`balance stats --json` (and `folder_stats`)."""

    folder: str
    balanced_folder: bool
    recipe: bool  # a recipe-only build: its images planned, none written
    classes: dict[str, ClassStats]
    images: int
    imbalance_ratio: float
    originals_imbalance_ratio: float
    skipped: list[dict[str, str]]
    empty_classes: list[str]
    warnings: list[str]
    plan: PlanStats
