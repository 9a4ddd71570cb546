"""Check a balanced folder against the contract in DESIGN.md, naming every problem."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path, PurePosixPath

from .errors import BalanceError
from .imageio import TEMP_SUFFIX
from .manifest import COLUMNS, MANIFEST, RECORD, read_manifest
from .parallel import chunked, default_workers, run_chunks
from .scan import IMAGE_EXTENSIONS, check_chunk


def verify(folder: str | Path, workers: int | None = None, progress: bool = True) -> dict:
    """{'ok', 'problems', 'files', 'classes'}: manifest <-> files, labels, counts, decoding,
    and nothing at the root or in class folders that a loader would misread."""
    root = Path(folder)
    if not root.is_dir():
        raise BalanceError(f"not a folder: {root}")
    problems: list[str] = []
    for name in (MANIFEST, RECORD):
        if not (root / name).is_file():
            problems.append(f"missing {name}: not a balance output (or not finished)")
    if problems:
        return {"ok": False, "problems": problems, "files": 0, "classes": {}}

    files: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name in (MANIFEST, RECORD):
            continue
        if not entry.is_dir() or entry.name.startswith("."):
            problems.append(f"stray entry at the root: {entry.name}")
            continue
        inside = sorted(entry.iterdir())
        if not inside:
            problems.append(f"empty class folder: {entry.name}")
        for f in inside:
            rel = f"{entry.name}/{f.name}"
            if f.is_dir():
                problems.append(f"subfolder inside a class folder: {rel}")
            elif f.name.endswith(TEMP_SUFFIX):
                problems.append(f"temporary file left behind: {rel}")
            elif f.name.startswith("."):
                problems.append(f"hidden file in a class folder: {rel}")
            elif f.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(f"not an image file: {rel}")
            else:
                files.append(rel)

    m = read_manifest(root)
    missing_cols = [c for c in COLUMNS if c not in m.columns]
    if missing_cols:
        problems.append(f"manifest.csv lacks columns: {', '.join(missing_cols)}")
        return {"ok": False, "problems": problems, "files": len(files), "classes": {}}
    for name in m.file_name[m.file_name.duplicated()]:
        problems.append(f"manifest lists a file twice: {name}")
    listed, present = set(m.file_name), set(files)
    problems += [f"manifest row without its file: {n}" for n in sorted(listed - present)]
    problems += [f"file without a manifest row: {n}" for n in sorted(present - listed)]
    folder_of = m.file_name.map(lambda n: PurePosixPath(n).parts[0])
    for row in m[folder_of != m.label].itertuples():
        problems.append(f"label '{row.label}' does not match the folder of {row.file_name}")

    record = json.loads((root / RECORD).read_text(encoding="utf-8"))
    if record.get("status") != "complete":
        problems.append(f"balance.json says the build is '{record.get('status')}', not complete "
                        "(run the build again with --resume)")
    counts = m.label.value_counts().to_dict()
    expected = {label: c["after"] for label, c in record.get("counts", {}).items()}
    for label in sorted(set(counts) | set(expected)):
        if counts.get(label, 0) != expected.get(label, 0):
            problems.append(f"class '{label}': manifest has {counts.get(label, 0)} images, "
                            f"balance.json says {expected.get(label, 0)}")

    workers = workers or default_workers()
    decodable = sorted(present & listed)
    chunks = chunked(decodable, workers)
    for index, results in run_chunks(partial(check_chunk, str(root)), chunks, workers,
                                     progress, desc="decoding"):
        for rel, (status, value) in zip(chunks[index], results):
            if status != "ok":
                problems.append(f"image does not decode: {rel} ({value})")
    return {"ok": not problems, "problems": problems, "files": len(files),
            "classes": {k: int(v) for k, v in sorted(counts.items())}}
