"""Find the classes and images of a class-folder data set; decide what is skipped and why."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import imageio
from .errors import BalanceError
from .parallel import chunked, default_workers, run_chunks

# What OpenCV can decode; anything else in a class folder is reported, not read.
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .bmp .dib .gif .webp .tif .tiff .jp2 .pbm .pgm .ppm .pnm "
    ".pxm .sr .ras .avif".split())
# Operating-system litter, ignored without a word (so are dot-files and dot-folders).
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})


@dataclass(frozen=True)
class SourceImage:
    path: str  # posix, relative to the source root: "<class>/<...>/<name>"
    label: str
    fmt: str  # 'jpeg' | 'png' | 'other' (by content, not extension)
    size: int  # bytes


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Scan:
    """What a source folder holds: usable images per class, and what was skipped."""

    root: Path
    images: dict[str, list[SourceImage]]  # label -> images sorted by path; no empty class
    skipped: list[Skipped] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # class folders with no usable image
    ignored: int = 0  # hidden files and OS junk

    def counts(self) -> dict[str, int]:
        return {label: len(images) for label, images in self.images.items()}

    def digest(self) -> str:
        """Identifies the usable source (paths, formats, sizes): a resume must see the same."""
        h = hashlib.sha256()
        for images in self.images.values():
            for im in images:
                h.update(f"{im.path}\0{im.fmt}\0{im.size}\n".encode())
        return h.hexdigest()[:16]


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def check_chunk(root: str, paths: list[str]) -> list[tuple[str, str]]:
    """For each path, ('ok', fmt) or ('bad', reason): every byte of every file is decoded."""
    out = []
    for rel in paths:
        try:
            out.append(("ok", imageio.load(Path(root, rel), check_only=True).fmt))
        except imageio.BadImage as exc:
            out.append(("bad", str(exc)))
    return out


def check_source(src: Path) -> Path:
    src = Path(src)
    if not src.exists():
        raise BalanceError(f"source folder not found: {src}")
    if not src.is_dir():
        raise BalanceError(f"source is not a folder: {src}")
    return src.resolve()


@dataclass
class Listing:
    """A source folder walked but not yet decoded."""

    root: Path
    class_dirs: list[str]
    candidates: list[tuple[str, str, int]]  # (relative path, label, size in bytes)
    skipped: list[Skipped]
    ignored: int


def list_source(src: str | Path) -> Listing:
    """Walk SRC/<class>/... without decoding: candidate images, skipped and ignored files.

    Symbolic links are not followed. Files in subfolders of a class folder belong to it.
    """
    root = check_source(src)
    listing = Listing(root, [], [], [], 0)
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if is_hidden(entry.name):
            listing.ignored += 1
        elif entry.is_symlink():
            listing.skipped.append(Skipped(entry.name, "symbolic link (not followed)"))
        elif entry.is_dir():
            listing.class_dirs.append(entry.name)
        else:
            listing.skipped.append(Skipped(entry.name, "not inside a class folder"))
    for label in listing.class_dirs:
        for dirpath, dirnames, filenames in os.walk(root / label):
            dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
            base = Path(dirpath)
            for name in sorted(filenames):
                path = base / name
                rel = path.relative_to(root).as_posix()
                if is_hidden(name):
                    listing.ignored += 1
                elif path.is_symlink():
                    listing.skipped.append(Skipped(rel, "symbolic link (not followed)"))
                elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                    listing.skipped.append(
                        Skipped(rel, f"not an image file extension ('{path.suffix}')"))
                else:
                    listing.candidates.append((rel, label, path.stat().st_size))
    return listing


def scan(src: str | Path, workers: int | None = None, progress: bool = True) -> Scan:
    """Walk SRC/<class>/..., decode every candidate image, and sort out the bad ones.

    Raises BalanceError when SRC is missing or has fewer than two usable classes.
    """
    listing = list_source(src)
    root, candidates, skipped = listing.root, listing.candidates, list(listing.skipped)
    workers = workers or default_workers()
    verdicts: dict[str, tuple[str, str]] = {}
    chunks = chunked([c[0] for c in candidates], workers)
    for index, results in run_chunks(partial(check_chunk, str(root)), chunks, workers,
                                     progress, desc="checking"):
        verdicts.update(zip(chunks[index], results))

    images: dict[str, list[SourceImage]] = {label: [] for label in listing.class_dirs}
    for rel, label, size in candidates:
        status, value = verdicts[rel]
        if status == "ok":
            images[label].append(SourceImage(rel, label, value, size))
        else:
            skipped.append(Skipped(rel, value))
    empty = [label for label, ims in images.items() if not ims]
    images = {label: ims for label, ims in images.items() if ims}
    if len(images) < 2:
        raise BalanceError(f"{root} has {len(images)} class folder(s) with usable images; "
                           "need at least 2 (expected SRC/<class>/<image files>)")
    skipped.sort(key=lambda s: s.path)
    return Scan(root, images, skipped, empty, listing.ignored)
