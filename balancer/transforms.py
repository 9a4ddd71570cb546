"""The ten transforms of the paper's Table 1: draw parameters, apply parameters.

Every transform is a pure function of (image, random generator): ``draw`` picks the
parameters (JSON-serialisable) from the image shape, the generator and the magnitude;
``apply`` turns (image, params) into pixels and draws nothing, so a manifest row replays
its file exactly. Images are HxW or HxWxC (BGR or BGRA), uint8 or uint16; alpha is never
painted or blended away. Geometric transforms fill uncovered pixels by reflection, like
Keras' preprocessing layers (``fill_mode="reflect"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common.errors import BalanceError
from .common.limits import Interval
from .common.opencv import cv2

PAPER_SET = "crop,rotate,cutout,width,zoom"  # the paper's chosen transform set T

Params = dict[str, Any]  # JSON-serialisable: a manifest row's `params`
Shape = tuple[int, ...]  # an image's .shape


def _color(image: np.ndarray) -> np.ndarray:
    """A view of the colour channels (everything but alpha)."""
    return image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def _center(shape: Shape) -> tuple[float, float]:
    return ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)


# -- apply: pure functions of (image, params) ---------------------------------------------


def apply_blur(image: np.ndarray, p: Params) -> np.ndarray:
    """Gaussian blur with the drawn kernel size."""
    k = p["ksize"]
    return cv2.GaussianBlur(image, (k, k), 0)


def apply_crop(image: np.ndarray, p: Params) -> np.ndarray:
    """The drawn window, as it is (smaller than the image)."""
    return image[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]].copy()


_FLIP_CODES = {"horizontal": 1, "vertical": 0, "both": -1}


def apply_flip(image: np.ndarray, p: Params) -> np.ndarray:
    """Mirror in the drawn direction: horizontal, vertical or both."""
    return cv2.flip(image, _FLIP_CODES[p["mode"]])


def apply_rotate(image: np.ndarray, p: Params) -> np.ndarray:
    """Rotate by the drawn angle about the centre, the corners filled by reflection."""
    return _warp(image, cv2.getRotationMatrix2D(_center(image.shape), p["degrees"], 1.0))


def apply_translate(image: np.ndarray, p: Params) -> np.ndarray:
    """Shift by the drawn offsets, the uncovered edge filled by reflection."""
    h, w = image.shape[:2]
    return _warp(image, np.array([[1, 0, p["x"] * w], [0, 1, p["y"] * h]], np.float64))


def apply_cutout(image: np.ndarray, p: Params) -> np.ndarray:
    """Fill the drawn square (centred on x, y; clipped at the edges) with mid-grey."""
    out = image.copy()
    half = p["size"] // 2
    y0, x0 = max(0, p["y"] - half), max(0, p["x"] - half)
    y1, x1 = p["y"] - half + p["size"], p["x"] - half + p["size"]
    _color(out)[y0 : max(y0, y1), x0 : max(x0, x1)] = (np.iinfo(image.dtype).max + 1) // 2
    return out


def apply_contrast(image: np.ndarray, p: Params) -> np.ndarray:
    """Scale each pixel's distance from its channel's mean by the drawn factor."""
    # One channel at a time, in place: a float copy of one plane, not of the whole image.
    out = image.copy()
    color = _color(out)
    planes = [color] if color.ndim == 2 else [color[..., c] for c in range(color.shape[2])]
    top = np.iinfo(image.dtype).max
    factor = np.float32(p["factor"])
    for plane in planes:
        x = plane.astype(np.float32)
        mean = x.mean(dtype=np.float32)
        x -= mean
        x *= factor
        x += mean
        np.clip(x, 0, top, out=x)
        plane[...] = np.rint(x, out=x)
    return out


def _resize_axis(image: np.ndarray, factor: float, axis: int) -> np.ndarray:
    h, w = image.shape[:2]
    size = [w, h]
    size[1 - axis] = max(1, int(round((h, w)[axis] * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, tuple(size), interpolation=interpolation)


def apply_height(image: np.ndarray, p: Params) -> np.ndarray:
    """Stretch or squeeze vertically by the drawn factor: the height changes, the width not."""
    return _resize_axis(image, p["factor"], axis=0)


def apply_width(image: np.ndarray, p: Params) -> np.ndarray:
    """Stretch or squeeze horizontally by the drawn factor: the width changes, the height not."""
    return _resize_axis(image, p["factor"], axis=1)


def apply_zoom(image: np.ndarray, p: Params) -> np.ndarray:
    """Zoom about the centre, keeping the size; edges filled by reflection."""
    # Keras RandomZoom: a positive factor zooms out (the view grows by 1 + zoom).
    scale = 1.0 / (1.0 + p["zoom"])
    return _warp(image, cv2.getRotationMatrix2D(_center(image.shape), 0.0, scale))


# -- draw: parameters from (shape, generator, magnitude) -----------------------------------
# No draw is a no-op: a value too close to "no change" (within NEAR_ZERO of the magnitude, or
# under half the transform's smallest magnitude, which is what still changes pixels) is drawn
# again from the same generator, so deterministically; a draw that cannot change an image of
# this shape (a width factor that rounds back to the same width, a horizontal flip of a
# one-pixel-wide image) is drawn again too; a crop as large as the image is clamped; a cutout
# has at least one pixel.

NEAR_ZERO = 0.05  # of the magnitude: closer to "no change" than this is drawn again
CLAMPED_CROP = 0.9  # a crop that would keep the whole image keeps this fraction of each side
REDRAWS = 100  # draws tried for one that changes an image of this shape


def pixels(m: float, shape: Shape) -> int:
    """A crop/cutout magnitude in pixels: a fraction (< 1) of the shorter side, or pixels."""
    return max(1, int(round(m * min(shape[:2])))) if m < 1 else int(m)


def _uniform(rng: np.random.Generator, m: float, floor: float, count: int = 1) -> Any:
    """`count` values in [-m, m], drawn again while all are within max(NEAR_ZERO * m, floor)
    of 0 (floor <= m / 2, so at least half the draws pass)."""
    least = max(NEAR_ZERO * m, floor)
    for _ in range(1000):
        values = [float(rng.uniform(-m, m)) for _ in range(count)]
        if max(abs(v) for v in values) >= least:
            return values if count > 1 else values[0]
    raise AssertionError("unreachable: 1000 draws near zero")


def draw_blur(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """An odd kernel size from 3 up to the magnitude."""
    return {"ksize": 2 * int(rng.integers(1, int(m) // 2 + 1)) + 1}


def draw_crop(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """A window of the magnitude's side (a fraction of the shorter side, or pixels) at a
    random place; never the whole image."""
    h, w = shape[:2]
    side = pixels(m, shape)
    ch, cw = min(side, h), min(side, w)
    if ch == h and cw == w and h * w > 1:  # the whole image: clamp to a real crop
        ch, cw = (
            max(1, min(h - 1, int(h * CLAMPED_CROP))),
            max(1, min(w - 1, int(w * CLAMPED_CROP))),
        )
    return {
        "x": int(rng.integers(0, w - cw + 1)),
        "y": int(rng.integers(0, h - ch + 1)),
        "width": cw,
        "height": ch,
    }


def draw_flip(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """horizontal, vertical or both, with equal chances."""
    return {"mode": list(_FLIP_CODES)[int(rng.integers(0, 3))]}


def draw_rotate(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """An angle within +- magnitude x 360 degrees (a fraction of a turn, as Keras'
    RandomRotation's factor)."""
    return {"degrees": _uniform(rng, m, floor) * 360.0}


def draw_translate(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """Offsets within +- the magnitude, as fractions of the width and the height."""
    x, y = _uniform(rng, m, floor, count=2)
    return {"x": x, "y": y}


def draw_cutout(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """A square of 1 up to the magnitude's side (a fraction of the shorter side, or pixels),
    centred on a random pixel."""
    h, w = shape[:2]
    return {
        "size": int(rng.integers(1, pixels(m, shape) + 1)),
        "x": int(rng.integers(0, w)),
        "y": int(rng.integers(0, h)),
    }


def draw_factor(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """A factor in 1 +- the magnitude, not nearer 1 than max(NEAR_ZERO x magnitude, floor)."""
    return {"factor": 1.0 + _uniform(rng, m, floor)}


def draw_zoom(shape: Shape, rng: np.random.Generator, m: float, floor: float) -> Params:
    """A zoom in +- the magnitude (Keras RandomZoom's sign), not nearer 0 than
    max(NEAR_ZERO x magnitude, floor)."""
    return {"zoom": _uniform(rng, m, floor)}


# -- which draws can change an image of a given shape ----------------------------------------


def _resized(side: int, factor: float) -> int:
    return max(1, int(round(side * factor)))  # as _resize_axis makes it


def _more_than_a_pixel(shape: Shape, p: Params) -> bool:
    return shape[0] * shape[1] > 1


def _flip_changes(shape: Shape, p: Params) -> bool:
    h, w = shape[:2]
    return {"horizontal": w > 1, "vertical": h > 1, "both": h * w > 1}[p["mode"]]


def _height_changes(shape: Shape, p: Params) -> bool:
    return _resized(shape[0], p["factor"]) != shape[0]


def _width_changes(shape: Shape, p: Params) -> bool:
    return _resized(shape[1], p["factor"]) != shape[1]


def _always(shape: Shape, p: Params) -> bool:
    return True


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Transform:
    """One transform: its draw, its kernel, its magnitude's default and range, its summary."""

    name: str
    summary: str
    default: float | None  # the magnitude; None for transforms that take none
    meaning: str  # what the magnitude means; with `allowed`, for --help and `balance transforms`
    drawer: Callable[[Shape, np.random.Generator, Any, float], Params]  # magnitude: float or None
    apply: Callable[[np.ndarray, Params], np.ndarray]
    changes: Callable[[Shape, Params], bool] = _more_than_a_pixel  # whether params change it
    allowed: Interval | None = None  # the magnitudes: the low end is the least that changes pixels
    odd: bool = False
    fraction: bool = False  # also takes a fraction in (0, 1) of the image's shorter side

    @property
    def magnitude(self) -> str:
        """What the magnitude means and what it may be."""
        if self.allowed is None:
            return self.meaning
        also = " or a fraction in (0, 1) of the shorter side" if self.fraction else ""
        odd = ", odd" if self.odd else ""
        return f"{self.meaning}: {self.allowed}{odd}{also}"

    def draw(self, shape: Shape, rng: np.random.Generator, magnitude: Any) -> Params:
        """Parameters for an image of this shape: drawn again (from the same generator) while
        they cannot change it, up to REDRAWS times."""
        floor = 0.0 if self.allowed is None or self.fraction else (self.allowed.low or 0) / 2
        params = self.drawer(shape, rng, magnitude, floor)
        for _ in range(REDRAWS - 1):
            if self.changes(shape, params):
                break
            params = self.drawer(shape, rng, magnitude, floor)
        return params

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, magnitude: float | None = None
    ) -> tuple[np.ndarray, Params]:
        """The transformed image and the drawn parameters (redrawn until the image changes)."""
        params = self.draw(image.shape, rng, self.check(magnitude))
        return self.apply(image, params), params

    def can_change(self, shape: Shape, magnitude: float | None) -> bool:
        """Whether any draw at this magnitude changes an image of this shape."""
        h, w = shape[:2]
        if self.name in ("width", "height"):
            side = w if self.name == "width" else h
            return side * float(magnitude or 0) > 0.5
        return self.changes is _always or h * w > 1

    def check(self, magnitude: float | None) -> float | None:
        """The validated magnitude (the default for None); BalanceError names a bad one."""
        if magnitude is None:
            return self.default
        if self.allowed is None:
            raise BalanceError(f"transform '{self.name}' takes no magnitude (got {magnitude:g})")
        if not math.isfinite(magnitude):
            raise BalanceError(
                f"bad magnitude for '{self.name}': {magnitude:g} is not a finite "
                f"number ({self.magnitude})"
            )
        if self.fraction and 0 < magnitude < 1:
            return float(magnitude)
        if magnitude not in self.allowed or (self.odd and int(magnitude) % 2 == 0):
            raise BalanceError(f"bad magnitude for '{self.name}': {magnitude:g} ({self.magnitude})")
        return int(magnitude) if self.allowed.integer else float(magnitude)


FACTOR = Interval(0.005, 0.99)  # a change of a factor around 1: 0.5 % still moves pixels

TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in [
        Transform(
            name="blur",
            summary="Gaussian blur",
            default=7,
            meaning="largest odd kernel size; kernel drawn from 3..m",
            drawer=draw_blur,
            apply=apply_blur,
            allowed=Interval(3, 99, integer=True),
            odd=True,
        ),
        Transform(
            name="crop",
            summary="random crop to a square target size (a smaller side is kept whole)",
            default=200,
            meaning="target side in px",
            drawer=draw_crop,
            apply=apply_crop,
            allowed=Interval(1, 100_000, integer=True),
            fraction=True,
        ),
        Transform(
            name="flip",
            summary="flip horizontally, vertically or both",
            default=None,
            meaning="none",
            drawer=draw_flip,
            apply=apply_flip,
            changes=_flip_changes,
        ),
        Transform(
            name="rotate",
            summary="rotate by a fraction of a full turn, reflect fill",
            default=0.125,
            meaning="largest fraction of 2*pi",
            drawer=draw_rotate,
            apply=apply_rotate,
            allowed=Interval(0.003, 0.5),  # 0.003: about 1 degree
        ),
        Transform(
            name="translate",
            summary="shift by a fraction of width and height, reflect fill",
            default=0.3,
            meaning="largest shift fraction per axis",
            drawer=draw_translate,
            apply=apply_translate,
            allowed=FACTOR,
        ),
        Transform(
            name="cutout",
            summary="one mid-gray square patch (DeVries & Taylor 2017)",
            default=70,
            meaning="largest patch side in px",
            drawer=draw_cutout,
            apply=apply_cutout,
            changes=_always,
            allowed=Interval(1, 100_000, integer=True),
            fraction=True,
        ),
        Transform(
            name="contrast",
            summary="(x - mean) * factor + mean, per channel",
            default=0.3,
            meaning="largest change of the factor around 1",
            drawer=draw_factor,
            apply=apply_contrast,
            allowed=Interval(0.01, 0.99),
        ),
        Transform(
            name="height",
            summary="resize the height by a factor",
            default=0.3,
            meaning="largest change of the factor around 1",
            drawer=draw_factor,
            apply=apply_height,
            changes=_height_changes,
            allowed=FACTOR,
        ),
        Transform(
            name="width",
            summary="resize the width by a factor",
            default=0.3,
            meaning="largest change of the factor around 1",
            drawer=draw_factor,
            apply=apply_width,
            changes=_width_changes,
            allowed=FACTOR,
        ),
        Transform(
            name="zoom",
            summary="zoom in or out around the centre, same size, reflect fill",
            default=0.3,
            meaning="largest zoom fraction; positive zooms out",
            drawer=draw_zoom,
            apply=apply_zoom,
            allowed=FACTOR,
        ),
    ]
}


def parse_transforms(spec: str | Iterable[str]) -> dict[str, float | None]:
    """'crop,rotate=0.1' -> {name: magnitude}, every magnitude checked.

    'paper' stands for the paper's set T and 'all' for every transform, each at its default;
    names after them override magnitudes ('all,crop=160,cutout=20'). Names and the two
    keywords are read in any case; an error quotes what was typed.

    >>> parse_transforms("rotate=0.1,flip")
    {'rotate': 0.1, 'flip': None}
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise BalanceError(f"no transforms given; choose from {', '.join(TRANSFORMS)}")
    named = {"paper": PAPER_SET.split(","), "all": list(TRANSFORMS)}
    chosen: dict[str, float | None] = {
        n: TRANSFORMS[n].check(None) for item in items for n in named.get(item.lower(), ())
    }
    given: set[str] = set()
    for item in items:
        if item.lower() in named:
            continue
        typed, _, value = item.partition("=")
        name = typed.strip().lower()
        if name not in TRANSFORMS:
            raise BalanceError(
                f"unknown transform '{typed.strip()}'; choose from {', '.join(TRANSFORMS)}, "
                "or 'paper' or 'all'"
            )
        if name in given:
            raise BalanceError(f"transform '{name}' given twice")
        given.add(name)
        try:
            magnitude = float(value) if value.strip() else None
        except ValueError:
            raise BalanceError(f"bad magnitude for '{name}': '{value}' is not a number") from None
        chosen[name] = TRANSFORMS[name].check(magnitude)
    return chosen


def replay(image: np.ndarray, name: str, params: Params | str) -> np.ndarray:
    """Re-apply a recorded transform: a manifest row's `augmentation` and `params` (a dict, as
    read_manifest gives it, or the JSON text of the CSV cell)."""
    import json

    if name not in TRANSFORMS:
        raise BalanceError(f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}")
    if isinstance(params, (str, bytes)):
        params = json.loads(params)
    if not isinstance(params, dict):
        raise BalanceError(f"params must be a dict or its JSON text (got {type(params).__name__})")
    return TRANSFORMS[name].apply(image, params)


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
