"""manifest.csv and balance.json: the record of a balanced folder (see DESIGN.md)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable

from .errors import BalanceError
from .imageio import write_atomic

MANIFEST = "manifest.csv"
RECORD = "balance.json"
COLUMNS = ["file_name", "label", "source", "origin", "transform", "params", "seed"]


def manifest_rows(items: Iterable, params: dict[str, dict]) -> list[dict]:
    """Rows for plan items, with the parameters each augmented copy drew."""
    rows = []
    for it in items:
        drawn = params.get(it.file_name)
        rows.append({
            "file_name": it.file_name, "label": it.label, "source": it.source,
            "origin": it.origin, "transform": it.transform,
            "params": "" if drawn is None else json.dumps(drawn, sort_keys=True),
            "seed": "" if it.seed is None else it.seed,
        })
    rows.sort(key=lambda r: r["file_name"])
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(path), buf.getvalue().encode("utf-8"))


def write_manifest(out: Path, rows: list[dict]) -> None:
    write_csv(Path(out) / MANIFEST, rows, COLUMNS)


def read_manifest(folder: str | Path):
    """A balanced folder's manifest as a pandas DataFrame (strings; seed may be empty)."""
    import pandas as pd  # only here: the CLI must start fast

    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BalanceError(f"{folder} has no {MANIFEST}: not a balanced folder")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_record(out: Path, record: dict) -> None:
    data = json.dumps(record, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    write_atomic(Path(out) / RECORD, data.encode("utf-8"))


def read_record(folder: str | Path) -> dict | None:
    path = Path(folder) / RECORD
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
