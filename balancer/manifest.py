"""manifest.csv and balance.json: the record of a balanced folder (see ARCHITECTURE.md).

Lazy imports: pandas loads only when a manifest is read: the command line starts fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pandas as pd

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .common.errors import BalanceError
from .common.ownership import read_json_record, write_json
from .common.shapes import shape_problems
from .common.storage import Remote, location
from .reports import BuildRecord

MANIFEST = "manifest.csv"
RECORD = "balance.json"
# balance.json's status for a recipe-only build (`build --recipe-only`): its manifest lists
# every planned file, checksummed, and none of them is written (it proves no file ours).
RECIPE = "recipe"
# "augmentation" is the transform a copy got ("" for originals); not "transform", which would
# hide DataFrame.transform.
COLUMNS = [
    "file_name",
    "label",
    "source",
    "origin",
    "augmentation",
    "params",
    "seed",
    "size",
    "sha256",
]
# RFC 4180's line end. The csv module quotes a field only for the characters of its line
# terminator, so with "\n" alone a name holding a lone "\r" would be written bare and read
# back as two rows; with "\r\n" any CR or LF in a field is quoted.
CSV_LINE_END = "\r\n"


def manifest_row(item: Any, written: Any) -> dict:
    """A plan item's manifest row, with its file's drawn parameters (JSON text), size and
    sha256 as written (a `journal.Written`)."""
    return {
        "file_name": item.file_name,
        "label": item.label,
        "source": item.source,
        "origin": item.origin,
        "augmentation": item.transform,
        "params": written.params or "",
        "seed": "" if item.seed is None else item.seed,
        "size": written.size,
        "sha256": written.sha256,
    }


def csv_bytes(rows: Iterable[dict], columns: list[str], *, header: bool = True) -> bytes:
    """Rows as CSV bytes (UTF-8, the manifest's line end) in the order of `columns`."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=CSV_LINE_END)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def read_csv(path: Path | Remote) -> pd.DataFrame:
    """A CSV written by the tools as a DataFrame of strings; BalanceError when unreadable."""
    import pandas as pd  # only here: the CLI must start fast

    try:
        where = io.BytesIO(path.read_bytes()) if isinstance(path, Remote) else path
        return pd.read_csv(where, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BalanceError(f"{path} is not a readable CSV file ({first})") from None


REQUIRED = ["file_name", "label", "source", "origin"]  # what a reader of the folder needs


def is_balanced_folder(folder: str | Path | Remote) -> bool:
    """Whether FOLDER is a balancer output: its balance.json is this tool's record, or its
    manifest.csv has the balancer's `source` and `origin` columns. A manifest.csv of anyone
    else (Hugging Face's `file_name,text` metadata, say) does not make it one."""
    from .common.ownership import tool_record

    folder = location(folder)
    found = tool_record(folder)
    if found is not None and found[0] == RECORD:
        return True
    path = folder / MANIFEST
    if not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            first = io.TextIOWrapper(f, encoding="utf-8", newline="")
            header = next(csv.reader(first), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return {"source", "origin"} <= set(header)


def leaves_folder(name: str) -> bool:
    """A manifest path that would point outside its folder: absolute, empty, or with '..'."""
    p = PurePosixPath(name)
    return not name or p.is_absolute() or ".." in p.parts


def read_manifest(folder: str | Path | Remote) -> pd.DataFrame:
    """A balanced folder's manifest as a pandas DataFrame with typed columns: `params` a dict
    (None for plain originals), `seed` an integer (pandas' nullable Int64; <NA> for
    originals), the others strings. BalanceError (one line) for an unfinished build (its
    manifest is a journal of the files written so far), and for a manifest that lacks the
    columns a reader needs, lists a file twice, or names a path outside the folder. A
    recipe's manifest (`build --recipe-only`) lists the files it plans, none written."""
    import pandas as pd

    path = location(folder) / MANIFEST
    if not path.is_file():
        raise BalanceError(f"{folder} has no {MANIFEST}: not a balanced folder")
    record = read_record(folder)
    if record is not None and record.get("status") not in ("complete", RECIPE):
        raise BalanceError(
            f"{folder} is an unfinished build ({RECORD} says '{record.get('status')}'; its "
            f"{MANIFEST} lists only the files written so far): finish it with "
            "`balance build --resume`"
        )
    m = read_csv(path)
    missing = [c for c in REQUIRED if c not in m.columns]
    if missing:
        raise BalanceError(
            f"{path} lacks the column(s) {', '.join(missing)}: not a balancer manifest"
        )
    twice = m.file_name[m.file_name.duplicated()]
    if len(twice):
        raise BalanceError(
            f"{path} lists {twice.iloc[0]!r} more than once ({len(twice)} duplicate row(s))"
        )
    for column in ("file_name", "source"):
        outside = m[column][m[column].map(leaves_folder)]
        if len(outside):
            raise BalanceError(
                f"{path}: {column} {outside.iloc[0]!r} points outside the folder; "
                "such a manifest is never read"
            )
    try:
        if "params" in m:
            m["params"] = [json.loads(p) if p else None for p in m["params"]]
        if "seed" in m:
            m["seed"] = pd.array([int(x) if x else None for x in m["seed"]], dtype="Int64")
    except ValueError as exc:
        raise BalanceError(f"{path}: a params or seed cell does not parse ({exc})") from None
    if "params" in m and not all(p is None or isinstance(p, dict) for p in m["params"]):
        raise BalanceError(f"{path}: a params cell is not a JSON object")
    return m


def write_record(out: Path, record: dict) -> None:
    """Write OUT's balance.json atomically."""
    write_json(Path(out) / RECORD, record)


def read_record(folder: str | Path | Remote) -> BuildRecord | None:
    """balance.json, None when absent; BalanceError (one line) when it is unreadable or a field
    is not of the type `BuildRecord` declares."""
    path = location(folder) / RECORD
    if not path.exists():
        return None
    record = read_json_record(path)
    problems = shape_problems(record, BuildRecord)
    if problems:
        raise BalanceError(f"{path} is damaged: {', '.join(problems)} of the wrong type")
    return cast("BuildRecord", record)
