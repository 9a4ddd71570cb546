"""The ten transforms of the paper's Table 1 as data: each one's draw (parameters from the
image shape, a generator and the magnitude), kernel, magnitude default and range, and summary."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.errors import BalanceError, BalanceValueError
from ..common.limits import Interval
from .kernels import (
    FLIP_CODES,
    Params,
    Shape,
    apply_blur,
    apply_contrast,
    apply_crop,
    apply_cutout,
    apply_flip,
    apply_height,
    apply_rotate,
    apply_translate,
    apply_width,
    apply_zoom,
)

NEAR_ZERO = 0.05  # of the magnitude: closer to "no change" than this is drawn again


CLAMPED_CROP = 0.9  # a crop that would keep the whole image keeps this fraction of each side


REDRAWS = 100  # draws tried for one that changes an image of this shape
PIXEL_REDRAWS = 50  # draws tried (each applied) for one whose pixels differ from the original's
IDENTICAL = "identical"  # the params key of a copy that no draw made differ from its original


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
    return {"mode": list(FLIP_CODES)[int(rng.integers(0, 3))]}


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
            raise BalanceValueError(
                f"transform '{self.name}' takes no magnitude (got {magnitude:g})"
            )
        if not math.isfinite(magnitude):
            raise BalanceValueError(
                f"bad magnitude for '{self.name}': {magnitude:g} is not a finite "
                f"number ({self.magnitude})"
            )
        if self.fraction and 0 < magnitude < 1:
            return float(magnitude)
        if magnitude not in self.allowed or (self.odd and int(magnitude) % 2 == 0):
            raise BalanceValueError(
                f"bad magnitude for '{self.name}': {magnitude:g} ({self.magnitude})"
            )
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
            default=0.8,  # of the shorter side: any image size (the paper: 200 px, `paper-px`)
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
            default=0.25,  # of the shorter side (the paper: 70 px, `paper-px`)
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


def marked_identical(params: Params | str | None) -> bool:
    """Whether a copy's params (a dict, or a manifest cell's JSON text) say no draw made it
    differ from its original (text that is not JSON says nothing: verify names it apart)."""
    if isinstance(params, str):
        try:
            params = json.loads(params) if params.strip() else None
        except ValueError:
            return False
    return isinstance(params, dict) and params.get(IDENTICAL) is True


def lookup(name: str) -> Transform:
    """The transform called `name`; BalanceValueError naming the choices otherwise."""
    if name not in TRANSFORMS:
        raise BalanceValueError(
            f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}",
            parameters=("transforms",),
        )
    return TRANSFORMS[name]


def replay(image: np.ndarray, name: str, params: Params | str) -> np.ndarray:
    """Re-apply a recorded transform: a manifest row's `augmentation` and `params` (a dict, as
    read_manifest gives it, or the JSON text of the CSV cell)."""

    t = lookup(name)
    if isinstance(params, (str, bytes)):
        params = json.loads(params)
    if not isinstance(params, dict):
        raise BalanceError(f"params must be a dict or its JSON text (got {type(params).__name__})")
    return t.apply(image, params)
