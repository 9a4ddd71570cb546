"""Find the classes and images of a class-folder data set; decide what is skipped and why."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import imageio
from .errors import BalanceError
from .parallel import chunked, resolve_workers, run_chunks

# What OpenCV can decode; anything else in a class folder is reported, not read.
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .bmp .dib .gif .webp .tif .tiff .jp2 .pbm .pgm .ppm .pnm "
    ".pxm .sr .ras .avif".split()
)
# Operating-system litter, ignored without a word (so are dot-files and dot-folders).
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
# Names of the tools' own records: a class folder of that name would collide with them.
RESERVED_NAMES = frozenset({"manifest.csv", "balance.json", "split.csv", "split.json"})


@dataclass(frozen=True)
class SourceImage:
    path: str  # posix, relative to the source root: "<class>/<...>/<name>"
    label: str
    fmt: str  # 'jpeg' | 'png' | 'other' (by content, not extension)
    size: int  # bytes
    mtime_ns: int = 0
    orientation: int = 1  # EXIF orientation; not 1: the pixels are turned upright when read
    width: int = 0  # of the upright image
    height: int = 0


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """As records, reports and --json show it."""
        return {"path": self.path, "reason": self.reason}


@dataclass
class Scan:
    """What a source folder holds: usable images per class, and what was skipped."""

    root: Path
    images: dict[str, list[SourceImage]]  # label -> images sorted by path; no empty class
    skipped: list[Skipped] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # class folders with no usable image
    ignored: int = 0  # hidden files and OS junk

    def skipped_list(self) -> list[dict[str, str]]:
        return [s.as_dict() for s in self.skipped]

    def counts(self) -> dict[str, int]:
        return {label: len(images) for label, images in self.images.items()}

    def digest(self) -> str:
        """Identifies the usable source (paths, formats, sizes, modification times): a resume
        must see the same, so a file edited in place is noticed."""
        h = hashlib.sha256()
        for images in self.images.values():
            for im in images:
                h.update(
                    f"{im.path}\0{im.fmt}\0{im.size}\0{im.mtime_ns}\0{im.orientation}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
        return h.hexdigest()[:16]


def sizes_by_class(found: Scan) -> dict[str, list[tuple[int, int]]]:
    """(width, height) of every usable image, per class."""
    return {label: [(im.width, im.height) for im in ims] for label, ims in found.images.items()}


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def printable(name: str) -> str:
    """A file name as text that can be printed and stored: undecodable bytes as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_chunk(
    root: str, paths: list[str], max_bytes: int = imageio.MAX_IMAGE_BYTES
) -> list[tuple[str, ...]]:
    """For each path, ('ok', fmt, orientation, (width, height)) or ('bad', reason): every byte
    is decoded."""
    out: list[tuple] = []
    for rel in paths:
        try:
            loaded = imageio.load(Path(root, rel), check_only=True, max_bytes=max_bytes)
            out.append(("ok", loaded.fmt, loaded.orientation, loaded.size))
        except imageio.BadImage as exc:
            out.append(("bad", str(exc)))
    return out


def check_source(src: str | Path) -> Path:
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
    candidates: list[tuple[str, str, int, int]]  # (relative path, label, bytes, mtime_ns)
    skipped: list[Skipped]
    ignored: int


def _why_not_a_class(entry: os.DirEntry) -> str | None:
    """Why a top-level entry is not a class folder (None: it is one)."""
    if entry.is_symlink():
        return "symbolic link (not followed)"
    if not entry.is_dir(follow_symlinks=False):
        return "not inside a class folder"
    if not is_utf8(entry.name):
        return "folder name is not valid UTF-8 (rename it)"
    if entry.name.lower() in RESERVED_NAMES or entry.name.endswith(imageio.TEMP_SUFFIX):
        return "class folder name is reserved for the tool's own files (rename it)"
    return None


def _walk_class(listing: Listing, folder: Path, label: str) -> None:
    """Add one class folder's files (any depth) to the listing; never follows links."""
    rel_dir = folder.relative_to(listing.root).as_posix()
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        listing.skipped.append(
            Skipped(printable(rel_dir), f"unreadable folder ({exc.strerror or exc})")
        )
        return
    for entry in entries:
        rel = printable(f"{rel_dir}/{entry.name}")
        if is_hidden(entry.name):
            listing.ignored += not entry.is_dir(
                follow_symlinks=False
            )  # hidden folders: not counted
        elif not is_utf8(entry.name):
            listing.skipped.append(Skipped(rel, "name is not valid UTF-8 (rename it)"))
        elif entry.is_symlink():
            listing.skipped.append(Skipped(rel, "symbolic link (not followed)"))
        elif entry.is_dir(follow_symlinks=False):
            _walk_class(listing, Path(entry.path), label)
        elif not entry.is_file(follow_symlinks=False):
            listing.skipped.append(Skipped(rel, "not a regular file (a FIFO, socket or device)"))
        elif Path(entry.name).suffix.lower() not in IMAGE_EXTENSIONS:
            listing.skipped.append(
                Skipped(rel, f"not an image file extension ('{Path(entry.name).suffix}')")
            )
        else:
            st = entry.stat(follow_symlinks=False)
            listing.candidates.append((rel, label, st.st_size, st.st_mtime_ns))


def list_source(src: str | Path) -> Listing:
    """Walk SRC/<class>/... without decoding: candidate images, skipped and ignored files.

    Symbolic links are not followed and only regular files are ever candidates. Files in
    subfolders of a class folder belong to it. Every entry left out has a reason.
    """
    root = check_source(src)
    listing = Listing(root, [], [], [], 0)
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise BalanceError(f"cannot read the source folder {root}: {exc.strerror or exc}") from None
    for entry in top:
        if is_hidden(entry.name):
            listing.ignored += 1
            continue
        reason = _why_not_a_class(entry)
        if reason:
            listing.skipped.append(Skipped(printable(entry.name), reason))
        else:
            listing.class_dirs.append(entry.name)
    for label in listing.class_dirs:
        _walk_class(listing, root / label, label)
    return listing


def scan(
    src: str | Path,
    workers: int | None = None,
    progress: bool = True,
    max_bytes: int = imageio.MAX_IMAGE_BYTES,
) -> Scan:
    """Walk SRC/<class>/..., decode every candidate image, and sort out the bad ones.

    Raises BalanceError when SRC is missing or has fewer than two usable classes.
    """
    listing = list_source(src)
    root, candidates, skipped = listing.root, listing.candidates, list(listing.skipped)
    workers = resolve_workers(workers)
    verdicts: dict[str, tuple] = {}
    chunks = chunked([c[0] for c in candidates], workers)
    for index, results in run_chunks(
        partial(check_chunk, str(root), max_bytes=max_bytes),
        chunks,
        workers,
        progress,
        desc="checking",
    ):
        verdicts.update(zip(chunks[index], results, strict=False))

    images: dict[str, list[SourceImage]] = {label: [] for label in listing.class_dirs}
    for rel, label, size, mtime_ns in candidates:
        verdict = verdicts[rel]
        if verdict[0] == "ok":
            images[label].append(
                SourceImage(rel, label, verdict[1], size, mtime_ns, verdict[2], *verdict[3])
            )
        else:
            skipped.append(Skipped(rel, verdict[1]))
    empty = [label for label, ims in images.items() if not ims]
    images = {label: ims for label, ims in images.items() if ims}
    if len(images) < 2:
        raise BalanceError(
            f"{root} has {len(images)} class folder(s) with usable images; "
            "need at least 2 (expected SRC/<class>/<image files>)"
        )
    skipped.sort(key=lambda s: s.path)
    return Scan(root, images, skipped, empty, listing.ignored)
