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

import contextlib
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
from .common.storage import JOURNAL_OBJECT, Place, Remote, journal_name
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


def csv_listing(name: str, digest_key: str) -> Callable[[Place, dict], dict[str, Listed]]:
    """An output kind's listing read from the CSV file `name` beside its record: while the
    run is unfinished, the journal (a torn last row dropped); once finished, the listing
    whose sha256 the record holds under `digest_key` (an edited one proves nothing)."""

    def listing(out: Place, record: dict) -> dict[str, Listed]:
        path = out / name
        finished = record.get("status") in ("complete", RECIPE)
        if isinstance(out, Remote) and not finished:
            return ObjectJournal(out, name, []).listed()
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


TODO, DONE = ".todo", ".csv"


@dataclass
class ObjectJournal:
    """A listing being kept in a store, which has no append and no rename: each chunk of work
    puts one object naming the files it is about to write (`.todo`), then its files, then
    one object of their rows (`.csv`), all under OUT/.<listing>.journal/. So an object under a
    final name is always named by a todo object, and a resumed run proves each file by its
    row (size, sha256 of the bytes read back). At the end the whole listing is put, the
    journal deleted, and the record written last."""

    out: Remote
    name: str
    columns: list[str]
    row: Callable[[Any, Written], dict] | None = None

    @property
    def folder(self) -> Remote:
        """Where the chunks' journal objects are."""
        return self.out / journal_name(self.name)

    def _objects(self, suffix: str = "") -> list[Remote]:
        """The journal's objects (of one kind: `suffix`), by their names."""
        return [
            e
            for e in self.folder.iterdir()
            if JOURNAL_OBJECT.fullmatch(e.name) and e.name.endswith(suffix)
        ]

    def resume(self) -> dict[str, Written]:
        """The files recorded done: the listing's rows where a run got that far, then every
        chunk's rows (a later row for a name wins)."""
        rows: list[dict] = []
        with contextlib.suppress(FileNotFoundError):
            # lenient: a recipe's listing plans files it has no size or sha256 of yet
            rows.extend(read_rows((self.out / self.name).read_bytes(), torn_tail=True)[1])
        for obj in self._objects(DONE):
            rows.extend(read_rows(obj.read_bytes())[1])
        return {
            r["file_name"]: Written(r.get("params") or None, int(r["size"]), r["sha256"])
            for r in rows
        }

    def listed(self) -> dict[str, Listed]:
        """What a running build's objects are proven by: every file recorded done (size,
        sha256) and every file a chunk said it was writing (nothing to check yet)."""
        try:
            found = {n: w.listed for n, w in self.resume().items()}
            for obj in self._objects(TODO):
                for n in obj.read_text().splitlines():
                    found.setdefault(n, Listed(-1, ""))
        except (OSError, ValueError) as exc:
            raise BalanceError(f"its journal in {self.folder} cannot be read ({exc})") from None
        return found

    def begin_chunk(self, key: str, names: Sequence[str]) -> None:
        """Before a chunk's files are put: the names it will write."""
        (self.folder / f"{key}{TODO}").write_bytes("".join(f"{n}\n" for n in names).encode())

    def end_chunk(self, key: str, done: Sequence[tuple[Any, Written]]) -> None:
        """Once a chunk's files are all put: their rows."""
        assert self.row is not None
        data = csv_bytes((self.row(item, w) for item, w in done), self.columns)
        (self.folder / f"{key}{DONE}").write_bytes(data)

    def finish(self, items: Iterable[Any], written: Mapping[str, Written]) -> str:
        """Put the whole listing (file-name order), delete the journal; its sha256."""
        assert self.row is not None
        ordered = sorted(items, key=lambda it: it.file_name)
        data = csv_bytes((self.row(it, written[it.file_name]) for it in ordered), self.columns)
        (self.out / self.name).write_bytes(data)
        for obj in self._objects():  # only the journal's own: anything else stays
            obj.unlink(missing_ok=True)
        return hashlib.sha256(data).hexdigest()


def journal_for(
    out: Path | Remote, name: str, columns: list[str], row: Callable[[Any, Written], dict]
) -> Journal | ObjectJournal:
    """The journal of the listing `name` of OUT while its files land: the listing file
    itself on a disk, objects beside it in a store."""
    if isinstance(out, Remote):
        return ObjectJournal(out, name, columns, row)
    return Journal(out / name, columns, row)
