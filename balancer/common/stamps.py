"""What proves a file (or an object in a store) unchanged since a scan read it: its stamp
and its bytes' digest; the errors a reader raises when it is not."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .storage import TAG_KEYS, Remote, location, modified_ns


def version_tag(info: dict) -> str:
    """The store's version of an object (ETag, generation): new bytes, a new tag."""
    return next((str(info[k]) for k in TAG_KEYS if info.get(k)), "")


def object_stamp(info: dict) -> tuple[int, int, int, int]:
    """An object's stamp in the four slots of a file's (imageio.Stamp): size, modification
    time, its version tag folded to 64 bits where a file has its inode, and 0."""
    tag = version_tag(info)
    folded = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little") if tag else 0
    return (int(info.get("size") or 0), modified_ns(info), folded, 0)


class BadImage(Exception):
    """A source file that is not a whole, readable image; the message is the reason."""


class SourceChanged(BadImage):
    """A file that is no longer the one the scan saw (its stamp or its bytes differ)."""


# What a scan saw of a file without reading it again: (size in bytes, modification time,
# inode, change time; times in ns). Size and mtime alone miss a file replaced by `cp -p` or
# `mv` (a new inode) and an edit whose times were set back (`touch -r`: the change time,
# which no user can set, moves); a hard link made to it moves the change time too, which
# is noticed as a change (the safe side). Where the bytes are read anyway, their digest is
# checked instead (`content_digest`): the thing itself.
Stamp = tuple[int, int, int, int]


def stamp_now(path: str | Path) -> os.stat_result | Stamp:
    """What a file (its stat) or an object (its stamp) is now, for check_stamp."""
    place = location(path)
    return object_stamp(place.info()) if isinstance(place, Remote) else os.stat(place)


def stamp_of(st: os.stat_result) -> Stamp:
    """A file's stamp from its stat."""
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def check_stamp(st: os.stat_result | Stamp, expect: Stamp | None) -> None:
    """SourceChanged, saying what moved, when a file's stat (or an object's stamp: size,
    time, version tag) is not the one the scan saw."""
    if expect is None:
        return
    if not isinstance(st, os.stat_result):  # an object in a store (storage.object_stamp)
        _check_object(st, expect)
        return
    size, mtime, ino, ctime = expect
    if st.st_size != size:
        raise SourceChanged(f"its size differs from the scan's: {st.st_size} bytes, was {size}")
    if st.st_ino != ino:
        raise SourceChanged("replaced by another file since the scan (its inode differs)")
    if st.st_mtime_ns != mtime:
        raise SourceChanged("modified after the scan (its modification time differs)")
    if st.st_ctime_ns != ctime:
        raise SourceChanged(
            "changed after the scan (its change time differs: edited with its times set "
            "back, or linked or re-permissioned)"
        )


def _check_object(now: Stamp, expect: Stamp) -> None:
    if now[0] != expect[0]:
        raise SourceChanged(f"its size differs from the scan's: {now[0]} bytes, was {expect[0]}")
    if now[2] != expect[2]:
        raise SourceChanged("replaced since the scan (its ETag or generation differs)")
    if now[1] != expect[1]:
        raise SourceChanged("modified after the scan (its modification time differs)")


DIGEST_BYTES = 16  # of sha256: what proves a source's bytes unchanged (2**-128 to fool)


def content_digest(data: bytes) -> bytes:
    """The digest a scan records of a file's bytes, and a reader checks them against."""
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


def check_content(data: bytes, digest: bytes | None) -> None:
    """SourceChanged when bytes read are not the ones the scan read (`digest`; None or
    empty: not checked)."""
    if digest and content_digest(data) != digest:
        raise SourceChanged("its bytes differ from the ones the scan read (sha256)")


def read_object(
    obj: Remote, expect: Stamp | None, digest: bytes | None, *, max_bytes: int
) -> tuple[bytes, Stamp]:
    """An object's bytes and its stamp (size, time, version tag), refusing one that is not
    the one the scan saw, or too large to be a sane image; its length is checked against
    the size the store gave, so an object replaced between the two requests is noticed."""
    now = object_stamp(obj.info())
    check_stamp(now, expect)
    if now[0] > max_bytes:
        raise BadImage(f"file too large ({now[0]} bytes)")
    data = obj.read_bytes()
    if len(data) != now[0]:
        raise SourceChanged(f"replaced while it was read ({len(data)} bytes, not {now[0]})")
    check_content(data, digest)
    return data, now
