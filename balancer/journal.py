"""The listing of a plan's files, kept as they land: what proves them ours and done.

A plan's files are written by pool workers under temporary names; the command then appends
their rows (name, size, sha256, and what else its listing holds) to the journal, flushes it,
and only then renames the files into place. So a file under a final name is always in the
journal, a kill or a power cut at any moment leaves a journal that lists every file in place
(plus perhaps a few not yet renamed), and a resumed run knows what is done by checking each
file against its row. At the end the journal is rewritten in file-name order: it is then the
output's listing (`manifest.csv`, `split.csv`), which the finished record checksums.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common.atomic import write_all, write_atomic
from .common.errors import BalanceError
from .common.ownership import Listed
from .manifest import CSV_LINE_END, RECIPE, csv_bytes

SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Written:
    """One file as written: its drawn parameters (JSON text, None: none), size and sha256."""

    params: str | None
    size: int
    sha256: str

    @property
    def listed(self) -> Listed:
        """As an ownership listing records it."""
        return Listed(self.size, self.sha256)


def read_rows(data: bytes, *, torn_tail: bool = False) -> tuple[list[str], list[dict]]:
    """(header, rows whose size and sha256 are well formed) of a listing's bytes. With
    `torn_tail`, the bytes may end in the middle of a row (a journal cut by a kill or a power
    cut): that row is dropped; a finished listing is read strictly (ValueError)."""
    text = data.decode("utf-8", "replace" if torn_tail else "strict")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[list[str]] = []
    try:
        records.extend(reader)
    except csv.Error:
        if not torn_tail:
            raise ValueError("not a well-formed CSV file") from None
    if torn_tail and records and not text.endswith(CSV_LINE_END):
        records.pop()
    if not records:
        return [], []
    header, rows = records[0], []
    for fields in records[1:]:
        row = dict(zip(header, fields, strict=False))
        if len(fields) != len(header) or not _well_formed(row):
            if not torn_tail:
                raise ValueError(f"row {fields[:1]} is not a listing row")
            continue
        rows.append(row)
    return header, rows


def _well_formed(row: dict) -> bool:
    size = row.get("size", "")
    return size.isdigit() and SHA256.fullmatch(row.get("sha256", "")) is not None


def listing_of(rows: Iterable[dict]) -> dict[str, Listed]:
    """{file_name: Listed} of listing rows (a later row for a name wins)."""
    return {r["file_name"]: Listed(int(r["size"]), r["sha256"]) for r in rows}


def csv_listing(name: str, digest_key: str) -> Callable[[Path, dict], dict[str, Listed]]:
    """An output kind's listing read from the CSV file `name` beside its record: while the
    run is unfinished, the journal (a torn last row dropped); once finished, the listing
    whose sha256 the record holds under `digest_key` (an edited one proves nothing)."""

    def listing(out: Path, record: dict) -> dict[str, Listed]:
        path = out / name
        finished = record.get("status") in ("complete", RECIPE)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if finished:
                raise BalanceError(f"its {name} is missing") from None
            return {}
        except OSError as exc:
            raise BalanceError(f"its {name} cannot be read ({exc.strerror or exc})") from None
        if finished and hashlib.sha256(data).hexdigest() != record.get(digest_key):
            raise BalanceError(
                f"its {name} was edited after it was written (its sha256 is not the one "
                "its record holds)"
            )
        if record.get("status") == RECIPE:
            return {}  # it plans files, none written
        try:
            _, rows = read_rows(data, torn_tail=not finished)
        except ValueError as exc:
            raise BalanceError(
                f"its {name} is not a listing of files with their size and sha256 ({exc}; "
                f"written by version {record.get('version')!r}?)"
            ) from None
        return listing_of(rows)

    return listing


@dataclass
class Journal:
    """A listing file being kept while a plan's files land (see the module's doc). `row`
    makes a file's row from its plan item and how it was written; `columns` must hold
    file_name, size and sha256 (and params, to give a resumed run each file's parameters)."""

    path: Path
    columns: list[str]
    row: Callable[[Any, Written], dict]

    def resume(self) -> dict[str, Written]:
        """The files an earlier run of this plan recorded (its last row per name; a torn last
        row dropped and cut from the file), the journal made ready to append to."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
            self.path.parent.mkdir(parents=True, exist_ok=True)
        header, rows = read_rows(data, torn_tail=True) if data else ([], [])
        clean = csv_bytes(rows, self.columns) if header == self.columns else b""
        if header != self.columns:
            rows = []
            clean = csv_bytes([], self.columns)
        if clean != data:
            write_atomic(self.path, clean)
        return {
            r["file_name"]: Written(r.get("params") or None, int(r["size"]), r["sha256"])
            for r in rows
        }

    def append(self, done: Sequence[tuple[Any, Written]]) -> None:
        """Record files before they are renamed into place: appended and flushed."""
        if not done:
            return
        data = csv_bytes((self.row(item, w) for item, w in done), self.columns, header=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, data, self.path)
        finally:
            os.close(fd)

    def finish(self, items: Iterable[Any], written: Mapping[str, Written]) -> str:
        """Replace the journal by the whole listing, a row per plan item in file-name order
        (made one at a time: a million rows are never held as dicts); its sha256."""
        ordered = sorted(items, key=lambda it: it.file_name)
        rows = (self.row(it, written[it.file_name]) for it in ordered)
        data = csv_bytes(rows, self.columns)
        write_atomic(self.path, data)
        return hashlib.sha256(data).hexdigest()
