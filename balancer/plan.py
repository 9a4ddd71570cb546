"""The paper's random over-sampling plan: which original, which transform, which seed per copy.

A plan is a pure function of the source listing, the per-class targets, the transforms and
the seed. Each class draws from its own generator (seeded by the run seed and the class
name), so adding a class never changes another class's copies.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

import numpy as np

from .common.errors import BalanceValueError
from .common.formats import for_source
from .common.limits import COUNT, SEED
from .source import SourceImage


@dataclass(frozen=True, slots=True)
class Item:
    """One file of the balanced folder: a manifest row before its params are known."""

    file_name: str  # posix, relative to OUT
    label: str
    source: str  # posix, relative to SRC
    origin: str  # 'original' | 'augmented'
    action: str  # 'copy' (byte for byte) | 'encode' (re-encoded) | 'augment'
    transform: str = ""
    magnitude: float | None = None
    seed: int | None = None
    orientation: int = 1  # the source's EXIF orientation, applied when it is re-encoded
    digest: bytes = b""  # of the source's bytes as scanned: a source read with other bytes
    # stops the run (empty: not checked)


def check_seed(seed: int) -> int:
    """The seed, once it is in range."""
    return SEED.check(seed, "seed")


def class_rng(seed: int, label: str) -> np.random.Generator:
    """A class's own generator: its draws depend on the run seed and its name only, so adding
    or removing another class never changes them."""
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def check_target(
    nmin: int | None, target: str | None, per_class: Mapping[str, int] | None
) -> dict[str, int]:
    """The per-class counts as a dict, once the three ways of saying a target make sense."""
    per_class = dict(per_class or {})
    if nmin is not None and target is not None:
        raise BalanceValueError(
            "give either nmin or target, not both", parameters=("nmin", "target")
        )
    if nmin is None and target is None and not per_class:
        raise BalanceValueError(
            "say how many images per class: nmin, target ('majority') or per_class",
            parameters=("nmin", "target", "per_class"),
        )
    if nmin is not None:
        COUNT.check(nmin, "nmin")
    if target is not None and target != "majority":
        raise BalanceValueError(
            f"unknown target '{target}'; the only target is 'majority'", parameters=("target",)
        )
    for label, n in per_class.items():
        COUNT.check(n, f"per_class {label}")
    return per_class


def class_targets(
    counts: Mapping[str, int],
    *,
    nmin: int | None = None,
    target: str | None = None,
    per_class: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Images per class after balancing; a class is never brought below what it has.

    nmin: every class up to at least N (the paper's N_min). target='majority': every
    class up to the largest (imbalanced-learn's 'not majority'). per_class: a count for
    named classes, overriding the others.
    """
    per_class = check_target(nmin, target, per_class)
    unknown = sorted(set(per_class) - set(counts))
    if unknown:
        raise BalanceValueError(
            f"per_class names unknown class(es) {', '.join(unknown)}; "
            f"classes are {', '.join(counts)}",
            parameters=("per_class",),
        )
    base = max(counts.values()) if target == "majority" else (nmin or 0)
    return {label: max(n, per_class.get(label, base)) for label, n in counts.items()}


THIN = 10  # an original reused more often than this for copies: the class is named


def thin_classes(counts: Mapping[str, int], targets: Mapping[str, int]) -> list[str]:
    """Warnings for classes whose copies reuse each original more than THIN times: their
    copies will be variations on very few pictures."""
    found = []
    for label, n in counts.items():
        copies = targets[label] - n
        if n and copies / n > THIN:
            found.append(
                f"class '{label}' has {n} original(s) for {copies:,} copies (each reused about "
                f"{copies / n:.0f} times): its copies are variations on very few pictures"
            )
    return found


def even_reuse(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k draws from range(n), each index used floor(k/n) or ceil(k/n) times, in random order."""
    uses = np.full(n, k // n)
    uses[rng.choice(n, k % n, replace=False)] += 1
    return rng.permutation(np.repeat(np.arange(n), uses))


MAX_STEM_BYTES = 160  # leaves room for '__aug<j>_<transform>' and '_<n>' in 255 bytes


def _stem(image: SourceImage) -> str:
    """Readable, flat file stem: 'cat/2019/a b.JPG' -> '2019_a b'. A stem too long for a
    file name (deep folders, long names) keeps its start and gains a hash of the whole path,
    so it stays unique and the same on every run."""
    inner = PurePosixPath(image.path).relative_to(image.label)
    stem = "_".join((*inner.parent.parts, inner.stem))
    if len(stem.encode("utf-8")) <= MAX_STEM_BYTES:
        return stem
    head = stem.encode("utf-8")[: MAX_STEM_BYTES - 10].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha1(image.path.encode('utf-8')).hexdigest()[:8]}"


def original_item(label: str, image: SourceImage, name: str) -> Item:
    """An original's item: copied byte for byte when loaders read it as it is; re-encoded
    when its format is not JPEG/PNG, or when it carries an EXIF rotation (written upright,
    so EXIF-aware and raw loaders see the same pixels as in its copies)."""
    copy = image.fmt in ("jpeg", "png") and image.orientation == 1
    return Item(
        f"{label}/{name}",
        label,
        image.path,
        "original",
        "copy" if copy else "encode",
        orientation=image.orientation,
        digest=image.digest,
    )


def _claim(stem: str, ext: str, taken: set[str]) -> str:
    """stem+ext, or with a numeric suffix when the name (case-insensitively) is taken."""
    name, i = stem + ext, 1
    while name.casefold() in taken:
        name, i = f"{stem}_{i}{ext}", i + 1
    taken.add(name.casefold())
    return name


def plan_class(
    label: str,
    images: list[SourceImage],
    target: int,
    transforms: Mapping[str, float | None],
    seed: int,
) -> list[Item]:
    """Items for one class: every original, then target - n copies, each with one transform
    drawn from `transforms`, or plain byte copies when `transforms` is empty."""
    rng = class_rng(seed, label)
    taken: set[str] = set()
    items, stems = [], []
    for image in images:
        ext = for_source(image.fmt).extension
        stem = _stem(image)
        if stem.casefold() + ext in taken:  # a.jpg beside a.png: keep both, say which
            stem += "_" + PurePosixPath(image.path).suffix.lower().lstrip(".")
        name = _claim(stem, ext, taken)
        stems.append((PurePosixPath(name).stem, ext))
        items.append(original_item(label, image, name))
    k = target - len(images)
    if k <= 0:
        return items
    picks = even_reuse(len(images), k, rng)
    width = max(4, len(str(k - 1)))
    if not transforms:  # plain random over-sampling: the originals' files again
        for j in range(k):
            stem, ext = stems[picks[j]]
            name = _claim(f"{stem}__copy{j:0{width}d}", ext, taken)
            items.append(replace(original_item(label, images[picks[j]], name), origin="augmented"))
        return items
    names = list(transforms)
    chosen = rng.integers(0, len(names), size=k)
    seeds = rng.integers(0, 2**31 - 1, size=k)
    for j in range(k):
        image, tname = images[picks[j]], names[chosen[j]]
        stem, ext = stems[picks[j]]
        name = _claim(f"{stem}__aug{j:0{width}d}_{tname}", ext, taken)
        items.append(
            Item(
                f"{label}/{name}",
                label,
                image.path,
                "augmented",
                "augment",
                tname,
                transforms[tname],
                int(seeds[j]),
                digest=image.digest,
            )
        )
    return items


def make_plan(
    images: Mapping[str, list[SourceImage]],
    targets: Mapping[str, int],
    transforms: Mapping[str, float | None],
    seed: int,
) -> list[Item]:
    """Every item of the balanced folder, classes in sorted order."""
    return [
        item
        for label in sorted(images)
        for item in plan_class(label, images[label], targets[label], transforms, seed)
    ]
