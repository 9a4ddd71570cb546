"""Whether a source is still the one a build read: scanned again and compared by content
(the record's source digest), and what changed, in words."""

from __future__ import annotations

from collections.abc import Mapping

from .common.errors import BalanceError
from .common.storage import Place
from .source import Scan, scan


def unchanged_source(
    record: Mapping,
    root: Place,
    since: str,
    *,
    workers: int | None,
    progress: bool,
    max_bytes: int | None,
) -> Scan:
    """ROOT scanned again, once its content is proven the one a build's `record` read (its
    source digest); BalanceError "ROOT changed since <since> (what changed)" otherwise."""
    found = scan(root, workers=workers, progress=progress, max_bytes=max_bytes)
    if found.digest() != (record.get("settings") or {}).get("source_digest"):
        changes = source_changes(dict(record), found)
        raise BalanceError(f"{root} changed since {since} ({changes})")
    return found


def source_changes(previous: dict, found: Scan) -> str:
    """What changed in SRC since an interrupted run started, in words."""
    since = previous.get("newest_source_mtime_ns") or 0
    changed_since = previous.get("newest_source_ctime_ns") or 0  # an edit with its times set back
    changed = [
        im.path
        for ims in found.images.values()
        for im in ims
        if im.mtime_ns > since or (changed_since and im.ctime_ns > changed_since)
    ]
    before = {
        label: c.get("before")
        for label, c in previous.get("counts", {}).items()
        if isinstance(c, dict)
    }
    parts = []
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        parts.append(
            f"{len(changed)} file(s) modified since it started: {', '.join(changed[:5])}{more}"
        )
    for label in sorted(set(before) | set(found.images)):
        now = len(found.images.get(label, []))
        if before.get(label) != now:
            parts.append(f"class '{label}' had {before.get(label, 0)} images, now {now}")
    return "; ".join(parts) or "files were replaced, renamed or re-tagged"
