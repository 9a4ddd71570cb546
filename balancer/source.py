"""Find the classes and images of a class-folder data set; decide what is skipped and why."""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from .common import imageio
from .common.atomic import TEMP_SUFFIX
from .common.errors import BalanceError
from .common.ownership.records import refuse_outputs
from .common.parallel import chunked, default_workers, in_process, prefetched, run_chunks
from .common.storage import Place, Remote, location

if TYPE_CHECKING:
    from tqdm.auto import tqdm

# What OpenCV can decode; anything else in a class folder is reported, not read.
# fmt: off
IMAGE_EXTENSIONS = frozenset([
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".gif", ".webp", ".tif", ".tiff", ".jp2",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".avif",
])
# fmt: on
# Operating-system litter, ignored without a word (so are dot-files and dot-folders).
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
# Names of the tools' own records: a class folder of that name would collide with them.
RESERVED_NAMES = frozenset({"manifest.csv", "balance.json", "split.csv", "split.json"})


@dataclass(frozen=True, slots=True)  # slots: a million of them take half the memory
class SourceImage:
    """A readable source image: class, path, format, and what proves it unchanged: the
    digest of the bytes the scan read and the stamp of the file they came from (packed in
    `facts`, one small bytes object: a million images are held at once)."""

    path: str  # posix, relative to the source root: "<class>/<...>/<name>"
    label: str
    fmt: str  # 'jpeg' | 'png' | 'other' (by content, not extension)
    size: int  # bytes
    orientation: int = 1  # EXIF orientation; not 1: the pixels are turned upright when read
    width: int = 0  # of the upright image
    height: int = 0
    facts: bytes = b""  # pack_facts(stamp, digest): modification time, inode, change time, digest

    @property
    def mtime_ns(self) -> int:
        """The file's modification time as the scan read it."""
        return _unpack(self.facts)[0]

    @property
    def ino(self) -> int:
        """The file's inode as the scan read it."""
        return _unpack(self.facts)[1]

    @property
    def ctime_ns(self) -> int:
        """The file's change time as the scan read it."""
        return _unpack(self.facts)[2]

    @property
    def digest(self) -> bytes:
        """The digest of the bytes the scan read (imageio.content_digest)."""
        return _unpack(self.facts)[3]

    @property
    def stamp(self) -> tuple[int, int, int, int]:
        """The stamp of the file the scan read (imageio.Stamp)."""
        return (self.size, self.mtime_ns, self.ino, self.ctime_ns)


_FACTS = struct.Struct(f"<qQq{imageio.DIGEST_BYTES}s")


def pack_facts(stamp: tuple[int, int, int, int], digest: bytes) -> bytes:
    """A SourceImage's `facts` from the stamp of the file read and its bytes' digest."""
    _, mtime_ns, ino, ctime_ns = stamp
    return _FACTS.pack(mtime_ns, ino, ctime_ns, digest)


def _unpack(facts: bytes) -> tuple[int, int, int, bytes]:
    return _FACTS.unpack(facts) if facts else (0, 0, 0, b"")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A source file left out, and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """As records, reports and --json show it."""
        return {"path": self.path, "reason": self.reason}


@dataclass
class Scan:
    """What a source folder holds: usable images per class, and what was skipped."""

    root: Place
    images: dict[str, list[SourceImage]]  # label -> images sorted by path; no empty class
    skipped: list[Skipped] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # class folders with no usable image
    ignored: int = 0  # hidden files and OS junk

    def skipped_list(self) -> list[dict[str, str]]:
        """The skipped files as {path, reason} dicts (balance.json's form)."""
        return [s.as_dict() for s in self.skipped]

    def by_path(self) -> dict[str, SourceImage]:
        """Every usable image by its path (relative to the root)."""
        return {im.path: im for ims in self.images.values() for im in ims}

    def counts(self) -> dict[str, int]:
        """Readable images per class."""
        return {label: len(images) for label, images in self.images.items()}

    def digest(self) -> str:
        """Identifies the usable source by content (each file's path, format, orientation
        and the digest of its bytes): a resume must see the same, so any edit is noticed,
        whatever it did to the file's size and times."""
        h = hashlib.sha256()
        for images in self.images.values():
            for im in images:
                h.update(
                    f"{im.path}\0{im.fmt}\0{im.digest.hex()}\0{im.orientation}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
        return h.hexdigest()[:16]


def sizes_by_class(found: Scan) -> dict[str, list[tuple[int, int]]]:
    """(width, height) of every usable image, per class."""
    return {label: [(im.width, im.height) for im in ims] for label, ims in found.images.items()}


def is_hidden(name: str) -> bool:
    """A dotfile or OS junk (Thumbs.db, desktop.ini, ...): never an image of the data."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def printable(name: str) -> str:
    """A file name as text that can be printed and stored: undecodable bytes as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Whether a file name is valid UTF-8 (a name that is not cannot go into the manifest)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _read(folder: Place, rel: str) -> tuple[bytes, imageio.Stamp] | OSError:
    try:
        return imageio.read_stamped(folder / rel)
    except OSError as exc:  # raised where the result is used, in order
        return exc


def check_chunk(
    root: str | Remote, candidates: list[tuple], max_bytes: int | None = None
) -> list[tuple[str, ...]]:
    """For each listing candidate (path, label), ('ok', fmt, orientation, (width, height),
    size, facts: the stamp of the file read and its bytes' digest) or ('bad', reason): every
    byte is decoded. A store's objects are fetched a few at a time ahead of the decoding."""
    out: list[tuple] = []
    folder = root if isinstance(root, Remote) else Path(root)
    depth = None if isinstance(root, Remote) else 1
    reads = prefetched(partial(_read, folder), [rel for rel, _ in candidates], depth)
    for read in reads:
        try:
            if isinstance(read, OSError):
                raise read
            data, stamp = read
            loaded = imageio.decode(data, check_only=True, max_bytes=max_bytes)
            facts = pack_facts(stamp, imageio.content_digest(data))
            out.append(("ok", loaded.fmt, loaded.orientation, loaded.size, stamp[0], facts))
        except imageio.BadImage as exc:
            out.append(("bad", str(exc)))
        except OSError as exc:
            out.append(("bad", f"unreadable ({exc.strerror or exc})"))
    return out


def check_source(src: str | Place | Remote) -> Place:
    """SRC as a resolved folder (or a store's prefix), or one line saying why it cannot be
    read."""
    src = location(src)
    if isinstance(src, Remote):
        if not src.is_dir():
            raise BalanceError(f"source folder not found: {src} (no object under that prefix)")
        return src
    if not src.exists():
        raise BalanceError(f"source folder not found: {src}")
    if not src.is_dir():
        raise BalanceError(f"source is not a folder: {src}")
    return src.resolve()


@dataclass
class Listing:
    """A source folder walked but not yet decoded."""

    root: Place
    class_dirs: list[str]
    candidates: list[tuple[str, str]]  # (path, label): what is known is read by the check
    skipped: list[Skipped]
    ignored: int


def _why_not_a_class(name: str, kind: str) -> str | None:
    """Why a top-level entry is not a class folder (None: it is one)."""
    if kind == "link":
        return "symbolic link (not followed)"
    if kind != "dir":
        return "not inside a class folder"
    if not is_utf8(name):
        return "folder name is not valid UTF-8 (rename it)"
    if name.lower() in RESERVED_NAMES or name.endswith(TEMP_SUFFIX):
        return "class folder name is reserved for the tool's own files (rename it)"
    return None


def _kind(entry: os.DirEntry) -> str:
    """'link', 'dir', 'file' or 'other', from the directory listing (links not followed)."""
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _entries(folder: Place) -> list[tuple[str, str]]:
    """(name, kind) of each entry, sorted by name; small tuples, not DirEntry objects, so a
    folder of a million files costs little while it is sorted."""
    if isinstance(folder, Remote):
        return folder.entries()
    with os.scandir(folder) as it:
        return sorted((entry.name, _kind(entry)) for entry in it)


def walk_images(
    root: Place, folder: Place
) -> Iterator[tuple[str, str, str | os.stat_result | None]]:
    """Every entry under `folder` (any depth), by the one rule both tools use, as (kind,
    path relative to `root`, detail): ('image', rel, its lstat), ('skipped', rel, reason) or
    ('ignored', rel, '') for hidden files and OS junk (hidden folders are not entered).
    Symbolic links are never followed and only regular files with an image extension are
    images; names are sorted, so the walk is the same on every file system."""
    rel_dir = folder.relative_to(root).as_posix() if folder != root else ""  # type: ignore[arg-type]
    try:
        entries = _entries(folder)
    except OSError as exc:
        yield "skipped", printable(rel_dir), f"unreadable folder ({exc.strerror or exc})"
        return
    for name, kind in entries:
        rel = printable(f"{rel_dir}/{name}" if rel_dir else name)
        suffix = os.path.splitext(name)[1]
        if is_hidden(name):
            if kind != "dir":
                yield "ignored", rel, ""
        elif not is_utf8(name):
            yield "skipped", rel, "name is not valid UTF-8 (rename it)"
        elif kind == "link":
            yield "skipped", rel, "symbolic link (not followed)"
        elif kind == "dir":
            yield from walk_images(root, folder / name)
        elif kind != "file":
            yield "skipped", rel, "not a regular file (a FIFO, socket or device)"
        elif suffix.lower() not in IMAGE_EXTENSIONS:
            yield "skipped", rel, f"not an image file extension ('{suffix}')"
        else:
            yield "image", rel, None if isinstance(folder, Remote) else os.lstat(folder / name)


def _walk_class(listing: Listing, label: str, bar: tqdm) -> None:
    """Add one class folder's files (any depth) to the listing."""
    for kind, rel, detail in walk_images(listing.root, listing.root / label):
        bar.update()
        if kind == "image":
            listing.candidates.append((rel, label))
        elif kind == "skipped":
            listing.skipped.append(Skipped(rel, str(detail)))
        else:
            listing.ignored += 1


def list_source(src: str | Place | Remote, *, progress: bool = False) -> Listing:
    """Walk SRC/<class>/... without decoding: candidate images, skipped and ignored files.

    Symbolic links are not followed and only regular files are ever candidates. Files in
    subfolders of a class folder belong to it. Every entry left out has a reason.
    """
    from tqdm.auto import tqdm  # not in the workers, which import this module too

    root = check_source(src)
    listing = Listing(root, [], [], [], 0)
    try:
        top = _entries(root)
    except OSError as exc:
        raise BalanceError(f"cannot read the source folder {root}: {exc.strerror or exc}") from None
    for name, kind in top:
        if is_hidden(name):
            listing.ignored += 1
            continue
        reason = _why_not_a_class(name, kind)
        if reason:
            listing.skipped.append(Skipped(printable(name), reason))
        else:
            listing.class_dirs.append(name)
    refuse_outputs(root, listing.class_dirs)
    with tqdm(
        desc="listing", unit=" files", disable=None if progress else True, leave=False
    ) as bar:
        for label in listing.class_dirs:
            _walk_class(listing, label, bar)
    return listing


def _image_or_skipped(candidate: tuple | None, verdict: tuple) -> SourceImage | Skipped:
    assert candidate is not None  # each is used once
    rel, label = candidate
    if verdict[0] == "ok":
        _, fmt, orientation, (width, height), size, facts = verdict
        return SourceImage(rel, label, fmt, size, orientation, width, height, facts)
    return Skipped(rel, verdict[1])


def scan(
    src: str | Place | Remote,
    *,
    workers: int | None = None,
    progress: bool = True,
    max_bytes: int | None = None,
) -> Scan:
    """Walk SRC/<class>/..., decode every candidate image, and sort out the bad ones.

    `workers`: the pool's slots, as the command resolved them (None: every core here).
    Raises BalanceError when SRC is missing or has fewer than two usable classes.
    """
    listing = list_source(src, progress=progress)
    root, skipped = listing.root, list(listing.skipped)
    workers = in_process(root, workers=workers or default_workers())
    chunks = chunked(listing.candidates, workers)
    candidates: list[tuple | None] = listing.candidates  # type: ignore[assignment]
    starts = [0, *itertools.accumulate(len(c) for c in chunks)]
    made: list[list[SourceImage | Skipped]] = [[] for _ in chunks]
    for index, results in run_chunks(
        partial(check_chunk, root if isinstance(root, Remote) else str(root), max_bytes=max_bytes),
        chunks,
        workers,
        progress=progress,
        desc="checking",
    ):
        start = starts[index]
        made[index] = [
            _image_or_skipped(candidates[start + j], verdict) for j, verdict in enumerate(results)
        ]
        candidates[start : start + len(results)] = [None] * len(results)
    del chunks, candidates, listing.candidates[:]  # a million files: hold each one once
    images: dict[str, list[SourceImage]] = {label: [] for label in listing.class_dirs}
    for entry in itertools.chain.from_iterable(made):
        if isinstance(entry, SourceImage):
            images[entry.label].append(entry)
        else:
            skipped.append(entry)
    empty = [label for label, ims in images.items() if not ims]
    images = {label: ims for label, ims in images.items() if ims}
    if len(images) < 2:
        raise BalanceError(
            f"{root} has {len(images)} class folder(s) with usable images; "
            "need at least 2 (expected SRC/<class>/<image files>)"
        )
    skipped.sort(key=lambda s: s.path)
    return Scan(root, images, skipped, empty, listing.ignored)
