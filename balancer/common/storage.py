"""Folders in object storage (fsspec URLs: s3://, gs://, az://, memory://) beside local paths.

`location(text)` is a local `Path` for a path or a `file://` URL (local folders keep every
POSIX guarantee: rename into place, flock, fsync), and a `Remote` for any other URL. A
`Remote` answers the part of `pathlib.Path` the tools use (`/`, `name`, `parent`,
`iterdir`, `read_bytes`, `write_bytes`, `is_file`, ...) on its fsspec file system, so the
scanner, the records and the ownership proofs read a store as they read a folder. What a
store lacks is said where it matters: an object appears whole when its put completes (no
temporary name, no rename), "folders" are prefixes, and a lock is an object written with a
conditional put (`create`). An object's stamp is its size, modification time and ETag (or
generation): what a local stamp's size, times and inode stand for.

Credentials and endpoints come from where each library takes them (the environment,
profiles, `AWS_ENDPOINT_URL`); `--storage-option KEY=VALUE` gives the rest. A Remote pickles
with its file system, so a pool or Dask worker reads and writes the store itself.
Lazy imports: fsspec and the store's package load only for a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import BalanceError

URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# The extra that brings a protocol's file system (`pip install 'balanced-aug[s3]'`).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}
# Where each store reports the version of an object: replaced bytes get a new one.
TAG_KEYS = ("ETag", "etag", "generation", "md5Hash", "VersionId")
TIME_KEYS = ("LastModified", "last_modified", "updated", "mtime", "created")
LOCK_NAME = ".balanced-aug.lock"  # the lock object of an output in a store

# The storage options this process was given, per protocol: a URL met later (a file's
# path in a trainer's table, a record's source) is opened with them too.
_GIVEN: dict[str, dict[str, Any]] = {}


# The client libraries of the stores: their errors (no credentials, no endpoint, access
# denied) are not OSErrors, and are a user's to mend.
STORE_LIBRARIES = ("botocore", "aiobotocore", "boto3", "s3fs", "gcsfs", "google", "adlfs", "azure")


def store_error(exc: BaseException) -> str | None:
    """One line for an error a store's client raised (None: not one of theirs)."""
    module = type(exc).__module__.split(".")[0]
    if module not in STORE_LIBRARIES:
        return None
    first = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"the store refused or could not be reached ({type(exc).__name__}: {first}); "
        "credentials and endpoints come from the environment, profiles or --storage-option"
    )


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """`--storage-option KEY=VALUE` pairs as fsspec storage options: a VALUE that reads as
    JSON (true, 3, {"a": 1}) is that value, any other is text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BalanceError(f"--storage-option takes KEY=VALUE, not {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def location(place: str | Path | Remote, options: dict[str, Any] | None = None) -> Path | Remote:
    """A folder or file given on a command line or to a library function: a `Remote` for a
    store's URL, a local `Path` for a path or a `file://` URL. A URL given without
    `options` is opened with the last ones given for its protocol in this process."""
    if isinstance(place, (Path, Remote)):
        return place
    text = str(place)
    match = URL.match(text)
    if match is None:
        return Path(text)
    protocol = match.group(1).lower()
    if protocol in ("file", "local"):
        return Path(text[match.end() :] or "/")
    if options:
        _GIVEN[protocol] = dict(options)
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(text, **(options or _GIVEN.get(protocol, {})))
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        hint = f": pip install 'balanced-aug[{extra}]'" if extra else ""
        raise BalanceError(
            f"{protocol}:// needs a package that is not installed ({exc.name or exc}){hint}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise BalanceError(f"cannot open {text}: {exc}") from None
    return Remote(fs, path)


class Remote:
    """A folder or object in a store, addressed like a `Path` (see the module's doc)."""

    __slots__ = ("fs", "kind", "path")

    def __init__(self, fs: Any, path: str, kind: str | None = None) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.kind = kind  # 'dir' or 'file' where a listing said so (saves a request)

    # -- naming -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL of this folder or object."""
        return str(self.fs.unstrip_protocol(self.path))

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    def __fspath__(self) -> str:  # a local-only library given a Remote fails loudly
        raise TypeError(f"{self.url} is in object storage, not a local path")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Remote) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: Remote) -> bool:
        return self.path < other.path

    def __truediv__(self, rel: str | Path) -> Remote:
        rel = Path(rel).as_posix() if isinstance(rel, Path) else str(rel)
        if rel.startswith("/") or ".." in rel.split("/"):
            raise ValueError(f"{rel!r} is not a path inside {self.url}")
        return Remote(self.fs, f"{self.path}/{rel}" if rel not in ("", ".") else self.path)

    @property
    def name(self) -> str:
        """The last part of the path."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Remote:
        """The folder (prefix) holding this one; the bucket's root is its own parent."""
        head = self.path.rsplit("/", 1)[0] if "/" in self.path else self.path
        return Remote(self.fs, head)

    @property
    def parts(self) -> tuple[str, ...]:
        """The path's parts (bucket first)."""
        return tuple(self.path.split("/"))

    @property
    def parents(self) -> list[Remote]:
        """Every folder above this one, innermost first."""
        found, here = [], self
        while here.parent.path != here.path:
            here = here.parent
            found.append(here)
        return found

    @property
    def shared(self) -> bool:
        """Whether other processes see this store (memory:// is one process's own)."""
        protocol = self.fs.protocol
        return "memory" not in (protocol if isinstance(protocol, tuple) else (protocol,))

    def relative_to(self, root: Remote) -> Path:
        """This path relative to `root`, as a relative (posix) Path."""
        if self.path == root.path:
            return Path(".")
        if not self.path.startswith(root.path + "/"):
            raise ValueError(f"{self.url} is not inside {root.url}")
        return Path(self.path[len(root.path) + 1 :])

    def is_relative_to(self, root: Remote) -> bool:
        """Whether this is `root` or inside it."""
        return self.fs.protocol == root.fs.protocol and (
            self.path == root.path or self.path.startswith(root.path + "/")
        )

    def resolve(self) -> Remote:
        """Itself: a URL names one object."""
        return self

    # -- reading ------------------------------------------------------------------------
    def info(self) -> dict:
        """The store's facts of the object (size, ETag, time, type)."""
        return dict(self.fs.info(self.path))

    def exists(self) -> bool:
        """Whether an object, or any object under this prefix, exists."""
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        """Whether objects exist under this prefix."""
        return self.kind == "dir" if self.kind else bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        """Whether an object of this name exists."""
        return self.kind == "file" if self.kind else bool(self.fs.isfile(self.path))

    def is_symlink(self) -> bool:
        """Never: stores have no links."""
        return False

    def read_bytes(self) -> bytes:
        """The object's bytes (FileNotFoundError when there is none)."""
        return bytes(self.fs.cat_file(self.path))

    def read_text(self, encoding: str = "utf-8") -> str:
        """The object's text."""
        return self.read_bytes().decode(encoding)

    def entries(self) -> list[tuple[str, str]]:
        """(name, 'dir' or 'file') of each entry one level down, sorted by name; on S3
        streamed page by page (only the names are kept: a million objects cost what their
        names do), elsewhere the store's listing of the folder; never kept in the file
        system's listing cache."""
        try:
            found = _streamed(self) if hasattr(self.fs, "_iterdir") else None
            if found is None:
                found = [self._entry(info) for info in self.fs.ls(self.path, detail=True)]
        except FileNotFoundError:
            return []
        finally:
            self.fs.invalidate_cache(self.path)
        found.sort()
        return [e for i, e in enumerate(found) if e[0] and (i == 0 or e != found[i - 1])]

    def _entry(self, info: dict) -> tuple[str, str]:
        """(name, kind) of a listing's entry; ('', kind) for the folder itself."""
        full = str(info["name"]).rstrip("/")
        name = "" if full == self.path else full.rsplit("/", 1)[-1]
        return name, "dir" if info.get("type") == "directory" else "file"

    def iterdir(self) -> Iterator[Remote]:
        """The entries one level down, sorted by name."""
        return (Remote(self.fs, f"{self.path}/{name}", kind) for name, kind in self.entries())

    def walk_files(self) -> Iterator[Remote]:
        """Every object under this prefix, folder by folder in name order (streamed: one
        folder's listing is held at a time)."""
        for entry in self.iterdir():
            if entry.kind == "dir":
                yield from entry.walk_files()
            else:
                yield entry

    def open(self, mode: str = "rb") -> Any:
        """The object as a file (read in blocks, or written whole on close)."""
        return self.fs.open(self.path, mode)

    def stat(self) -> ObjectStat:
        """The object's size and modification time, as `os.stat` gives them."""
        return ObjectStat(self.info())

    # -- writing ------------------------------------------------------------------------
    def write_bytes(self, data: bytes) -> int:
        """Put the object whole: it appears under its name complete, or not at all."""
        self.fs.pipe_file(self.path, bytes(data))
        return len(data)

    def create(self, data: bytes) -> bool | None:
        """Put the object only where none exists (a conditional put): True when written,
        False when one was there; None when the store offers no conditional put (nothing
        written)."""
        try:
            with self.fs.open(self.path, "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError, TypeError):
            return None

    def unlink(self, missing_ok: bool = False) -> None:  # noqa: FBT001, FBT002  (Path's)
        """Delete the object."""
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:  # noqa: FBT001, FBT002
        """Nothing: a store's folders are the prefixes of its objects."""

    def rmdir(self) -> None:
        """Nothing: a prefix with no object left is gone by itself."""


def _streamed(folder: Remote) -> list[tuple[str, str]] | None:
    """An S3 folder's (name, kind) entries, read page by page from s3fs' paginated listing
    (the full info of one page at a time); None where that listing is not offered."""
    from fsspec.asyn import sync

    fs = folder.fs
    bucket, key, _ = fs.split_path(folder.path)

    async def names() -> list[tuple[str, str]]:
        found = []
        async for info in fs._iterdir(bucket, prefix=f"{key}/" if key else ""):
            found.append(folder._entry(info))
        return found

    try:
        return list(sync(fs.loop, names))
    except (AttributeError, TypeError, NotImplementedError):
        return None


Place = Path | Remote  # a folder (or file) on a local disk or in a store


class ObjectStat:
    """An object's facts in `os.stat_result`'s names (st_size, st_mtime_ns)."""

    def __init__(self, info: dict) -> None:
        self.st_size = int(info.get("size") or 0)
        self.st_mtime_ns = modified_ns(info)


def modified_ns(info: dict) -> int:
    """An object's modification time in whole seconds, as ns (a listing and a HEAD request
    give it at different precisions)."""
    for key in TIME_KEYS:
        value = info.get(key)
        if isinstance(value, datetime):
            return int(value.timestamp()) * 10**9
        if isinstance(value, (int, float)):
            return int(value) * 10**9
        if isinstance(value, str) and value:
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()) * 10**9
            except ValueError:
                continue
    return 0


def relative(path: Place, root: Place) -> str:
    """`path` relative to `root`, as posix text (both on a disk, or both in one store)."""
    if isinstance(path, Remote) and isinstance(root, Remote):
        return path.relative_to(root).as_posix()
    if isinstance(path, Path) and isinstance(root, Path):
        return path.relative_to(root).as_posix()
    raise ValueError(f"{path} and {root} are not on one file system")


def children(folder: Place) -> list[Place]:
    """A folder's entries, sorted by name."""
    found: list[Place] = [*folder.iterdir()]
    return sorted(found, key=lambda e: e.name)


def local_folders(*places: Path | Remote) -> list[Path]:
    """The local ones of these folders, each as its nearest existing folder (what every
    Dask worker must see at the same path; a store's every worker reaches by itself)."""
    found = []
    for place in places:
        if isinstance(place, Path):
            found.append(next(d for d in (place, *place.parents) if d.exists()))
    return found


def portable(place: Path | Remote) -> str | Remote:
    """A folder as a pool worker is given it: a local path's text, or the store's folder."""
    return place if isinstance(place, Remote) else str(place)


def joined(root: str | Path | Remote, rel: str) -> Path | Remote:
    """A file inside a folder given as a local path (text) or a store's folder."""
    return root / rel if isinstance(root, Remote) else Path(root, rel)


def journal_name(listing: str) -> str:
    """The prefix, inside an output in a store, of the journal of its listing file."""
    return f".{listing}.journal"


# A journal object's name: <run token>-<chunk key>.todo|.csv (balancer.journal.ObjectJournal).
JOURNAL_OBJECT = re.compile(r"[0-9a-f]{12}-[0-9a-f]{16}\.(todo|csv)")


def journal_strays(folder: Remote) -> list[Remote]:
    """The objects in a journal's folder that are not journal objects, by their names (a
    user's object put there: not the tool's to remove)."""
    return [
        obj
        for obj in folder.walk_files()
        if obj.parent != folder or JOURNAL_OBJECT.fullmatch(obj.name) is None
    ]
