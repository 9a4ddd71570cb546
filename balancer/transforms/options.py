"""Choosing transforms: the `--transforms` text ('paper', 'all', NAME[=MAGNITUDE],...) and
the warnings for transforms that cannot change some images."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..common.errors import BalanceValueError
from .registry import TRANSFORMS, lookup, pixels

PAPER_SET = "crop,rotate,cutout,width,zoom"  # the paper's chosen transform set T
# T with the paper's own pixel magnitudes, for photos of 200-300 px like its data
PAPER_PIXELS = "crop=200,rotate,cutout=70,width,zoom"


def parse_transforms(spec: str | Iterable[str]) -> dict[str, float | None]:
    """'crop,rotate=0.1' -> {name: magnitude}, every magnitude checked.

    'paper' stands for the paper's set T and 'all' for every transform, each at its default
    (crop and cutout as fractions of the shorter side: any image size); 'paper-px' is T at
    the paper's own pixels (crop 200, cutout 70). Names after them override magnitudes
    ('all,crop=160,cutout=20'). Names and keywords are read in any case; an error quotes what
    was typed.

    >>> parse_transforms("rotate=0.1,flip")
    {'rotate': 0.1, 'flip': None}
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise BalanceValueError(f"no transforms given; choose from {', '.join(TRANSFORMS)}")
    named = {
        "paper": PAPER_SET.split(","),
        "paper-px": PAPER_PIXELS.split(","),
        "all": list(TRANSFORMS),
    }
    chosen: dict[str, float | None] = {}
    for item in items:
        for entry in named.get(item.lower(), ()):
            name, _, value = entry.partition("=")
            chosen[name] = TRANSFORMS[name].check(float(value) if value else None)
    given: set[str] = set()
    for item in items:
        if item.lower() in named:
            continue
        typed, _, value = item.partition("=")
        name = typed.strip().lower()
        if name not in TRANSFORMS:
            raise BalanceValueError(
                f"unknown transform '{typed.strip()}'; choose from {', '.join(TRANSFORMS)}, "
                "or 'paper', 'paper-px' or 'all'"
            )
        if name in given:
            raise BalanceValueError(f"transform '{name}' given twice")
        given.add(name)
        try:
            magnitude = float(value) if value.strip() else None
        except ValueError:
            raise BalanceValueError(
                f"bad magnitude for '{name}': '{value}' is not a number"
            ) from None
        chosen[name] = TRANSFORMS[name].check(magnitude)
    return chosen


def check_spec(spec: object, name: str = "transforms") -> dict[str, float | None]:
    """A transform set given as text ('crop,rotate=0.1', 'paper', 'all') or as a mapping
    {name: magnitude or None}, checked; anything else is a TypeError naming the parameter."""
    if isinstance(spec, str):
        return parse_transforms(spec)
    if isinstance(spec, Mapping):
        return check_chosen(spec)
    raise TypeError(
        f"{name} must be a text like 'crop,rotate=0.1' (or 'paper', 'paper-px', 'all') or a mapping "
        f"{{name: magnitude or None}}, not {type(spec).__name__}"
    )


def check_chosen(chosen: Mapping[str, float | None]) -> dict[str, float | None]:
    """A {name: magnitude} choice given as a mapping, each name and magnitude checked (the
    defaults for None), as `parse_transforms` checks a text."""
    if not chosen:
        raise BalanceValueError("no transforms chosen", parameters=("transforms",))
    return {name: lookup(name).check(magnitude) for name, magnitude in chosen.items()}


def unsuited(
    transforms: dict[str, float | None], sizes: dict[str, list[tuple[int, int]]]
) -> list[str]:
    """Warnings, with counts per class, for magnitudes that do not suit these image sizes
    ((width, height) per class): a crop as large as the image (it is clamped to a 90 % crop),
    a cutout that can cover more than half of it, and any transform that cannot change an
    image at all (1x1 px, or a side too short for a width/height factor): those copies are
    identical to their original. A class named "" is not named."""
    checks = {
        "crop": (
            "is as large as the image",
            "copies get a 90 % crop instead; try crop=0.8",
            lambda side, w, h: side >= min(w, h),
        ),
        "cutout": (
            "can cover more than half of the image",
            "try cutout=0.25",
            lambda side, w, h: side * side > 0.5 * w * h,
        ),
    }
    images = sum(len(d) for d in sizes.values())
    found = []
    for name, (what, hint, bad) in checks.items():
        m = TRANSFORMS[name].check(transforms[name]) if name in transforms else None
        if m is None:
            continue
        per_class = {
            label: sum(bad(pixels(m, (h, w)), w, h) for w, h in dims)
            for label, dims in sizes.items()
        }
        if sum(per_class.values()):
            found.append(f"{name}={m:g} {what} for {_counted(per_class, images)}: {hint}")
    for name, given in transforms.items():
        t = TRANSFORMS[name]
        m = t.check(given)
        per_class = {
            label: sum(not t.can_change((h, w), m) for w, h in dims)
            for label, dims in sizes.items()
        }
        if sum(per_class.values()):
            shown = name if m is None else f"{name}={m:g}"
            found.append(
                f"{shown} cannot change {_counted(per_class, images)} (1x1 px, or a side too "
                "short for the factor): their copies with it are identical to the original"
            )
    return found


def _counted(per_class: dict[str, int], images: int) -> str:
    """'3 of 20 images (a 2, b 1)'."""
    counts = ", ".join(f"{label} {n}" for label, n in per_class.items() if n and label)
    return f"{sum(per_class.values())} of {images} images" + (f" ({counts})" if counts else "")
