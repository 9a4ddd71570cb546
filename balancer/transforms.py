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

from .errors import BalanceError
from .opencv import cv2

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
    k = p["ksize"]
    return cv2.GaussianBlur(image, (k, k), 0)


def apply_crop(image: np.ndarray, p: Params) -> np.ndarray:
    return image[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]].copy()


_FLIP_CODES = {"horizontal": 1, "vertical": 0, "both": -1}


def apply_flip(image: np.ndarray, p: Params) -> np.ndarray:
    return cv2.flip(image, _FLIP_CODES[p["mode"]])


def apply_rotate(image: np.ndarray, p: Params) -> np.ndarray:
    return _warp(image, cv2.getRotationMatrix2D(_center(image.shape), p["degrees"], 1.0))


def apply_translate(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    return _warp(image, np.array([[1, 0, p["x"] * w], [0, 1, p["y"] * h]], np.float64))


def apply_cutout(image: np.ndarray, p: Params) -> np.ndarray:
    out = image.copy()
    half = p["size"] // 2
    y0, x0 = max(0, p["y"] - half), max(0, p["x"] - half)
    y1, x1 = p["y"] - half + p["size"], p["x"] - half + p["size"]
    _color(out)[y0 : max(y0, y1), x0 : max(x0, x1)] = (np.iinfo(image.dtype).max + 1) // 2
    return out


def apply_contrast(image: np.ndarray, p: Params) -> np.ndarray:
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
    return _resize_axis(image, p["factor"], axis=0)


def apply_width(image: np.ndarray, p: Params) -> np.ndarray:
    return _resize_axis(image, p["factor"], axis=1)


def apply_zoom(image: np.ndarray, p: Params) -> np.ndarray:
    # Keras RandomZoom: a positive factor zooms out (the view grows by 1 + zoom).
    scale = 1.0 / (1.0 + p["zoom"])
    return _warp(image, cv2.getRotationMatrix2D(_center(image.shape), 0.0, scale))


# -- draw: parameters from (shape, generator, magnitude) -----------------------------------
# No draw is a no-op: a value too close to "no change" is drawn again (from the same
# generator, so deterministically), a crop as large as the image is clamped, a cutout has
# at least one pixel.

NEAR_ZERO = 0.05  # of the magnitude: closer to "no change" than this is drawn again
CLAMPED_CROP = 0.9  # a crop that would keep the whole image keeps this fraction of each side


def pixels(m: float, shape: Shape) -> int:
    """A crop/cutout magnitude in pixels: a fraction (< 1) of the shorter side, or pixels."""
    return max(1, int(round(m * min(shape[:2])))) if m < 1 else int(m)


def _uniform(rng: np.random.Generator, m: float, count: int = 1) -> Any:
    """`count` values in [-m, m], drawn again while all are within NEAR_ZERO * m of 0."""
    for _ in range(1000):
        values = [float(rng.uniform(-m, m)) for _ in range(count)]
        if max(abs(v) for v in values) >= NEAR_ZERO * m:
            return values if count > 1 else values[0]
    raise AssertionError("unreachable: 1000 draws near zero")


def draw_blur(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    return {"ksize": 2 * int(rng.integers(1, int(m) // 2 + 1)) + 1}


def draw_crop(shape: Shape, rng: np.random.Generator, m: float) -> Params:
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


def draw_flip(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    return {"mode": list(_FLIP_CODES)[int(rng.integers(0, 3))]}


def draw_rotate(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    return {"degrees": _uniform(rng, m) * 360.0}


def draw_translate(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    x, y = _uniform(rng, m, count=2)
    return {"x": x, "y": y}


def draw_cutout(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    h, w = shape[:2]
    return {
        "size": int(rng.integers(1, pixels(m, shape) + 1)),
        "x": int(rng.integers(0, w)),
        "y": int(rng.integers(0, h)),
    }


def draw_factor(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    return {"factor": 1.0 + _uniform(rng, m)}


def draw_zoom(shape: Shape, rng: np.random.Generator, m: float) -> Params:
    return {"zoom": _uniform(rng, m)}


# -- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Transform:
    name: str
    summary: str
    default: float | None  # the magnitude; None for transforms that take none
    magnitude: str  # what the magnitude means, for --help and `balance transforms`
    draw: Callable[[Shape, np.random.Generator, Any], Params]  # magnitude: float, or None
    apply: Callable[[np.ndarray, Params], np.ndarray]
    low: float = 0.0  # magnitude must be > low (integers: >= low) ...
    high: float = float("inf")  # ... and <= high
    integer: bool = False
    odd: bool = False
    fraction: bool = False  # also takes a fraction in (0, 1) of the image's shorter side

    def __call__(
        self, image: np.ndarray, rng: np.random.Generator, magnitude: float | None = None
    ) -> tuple[np.ndarray, Params]:
        m = self.default if magnitude is None else magnitude
        params = self.draw(image.shape, rng, m)
        return self.apply(image, params), params

    def check(self, magnitude: float | None) -> float | None:
        """The validated magnitude (the default for None); BalanceError names a bad one."""
        if magnitude is None:
            return self.default
        if self.default is None:
            raise BalanceError(f"transform '{self.name}' takes no magnitude (got {magnitude:g})")
        if not math.isfinite(magnitude):
            raise BalanceError(
                f"bad magnitude for '{self.name}': {magnitude:g} is not a finite "
                f"number ({self.magnitude})"
            )
        if self.fraction and 0 < magnitude < 1:
            return float(magnitude)
        bad = (
            magnitude < self.low if self.integer else magnitude <= self.low
        ) or magnitude > self.high
        if self.integer and magnitude != int(magnitude):
            bad = True
        if self.odd and int(magnitude) % 2 == 0:
            bad = True
        if bad:
            raise BalanceError(f"bad magnitude for '{self.name}': {magnitude:g} ({self.magnitude})")
        return int(magnitude) if self.integer else float(magnitude)


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in [
        Transform(
            "blur",
            "Gaussian blur",
            7,
            "largest odd kernel size; kernel drawn from 3..m",
            draw_blur,
            apply_blur,
            low=3,
            high=99,
            integer=True,
            odd=True,
        ),
        Transform(
            "crop",
            "random crop to a square target size (a smaller side is kept whole)",
            200,
            "target side: px, or a fraction (< 1) of the shorter side",
            draw_crop,
            apply_crop,
            low=1,
            high=100_000,
            integer=True,
            fraction=True,
        ),
        Transform(
            "flip", "flip horizontally, vertically or both", None, "none", draw_flip, apply_flip
        ),
        Transform(
            "rotate",
            "rotate by a fraction of a full turn, reflect fill",
            0.125,
            "largest fraction of 2*pi, in (0, 0.5]",
            draw_rotate,
            apply_rotate,
            high=0.5,
        ),
        Transform(
            "translate",
            "shift by a fraction of width and height, reflect fill",
            0.3,
            "largest shift fraction per axis, in (0, 1)",
            draw_translate,
            apply_translate,
            high=0.99,
        ),
        Transform(
            "cutout",
            "one mid-gray square patch (DeVries & Taylor 2017)",
            70,
            "largest patch side: px, or a fraction (< 1) of the shorter side",
            draw_cutout,
            apply_cutout,
            low=1,
            high=100_000,
            integer=True,
            fraction=True,
        ),
        Transform(
            "contrast",
            "(x - mean) * factor + mean, per channel",
            0.3,
            "largest change of the factor around 1, in (0, 1)",
            draw_factor,
            apply_contrast,
            high=0.99,
        ),
        Transform(
            "height",
            "resize the height by a factor",
            0.3,
            "largest change of the factor around 1, in (0, 1)",
            draw_factor,
            apply_height,
            high=0.99,
        ),
        Transform(
            "width",
            "resize the width by a factor",
            0.3,
            "largest change of the factor around 1, in (0, 1)",
            draw_factor,
            apply_width,
            high=0.99,
        ),
        Transform(
            "zoom",
            "zoom in or out around the centre, same size, reflect fill",
            0.3,
            "largest zoom fraction, in (0, 1); positive zooms out",
            draw_zoom,
            apply_zoom,
            high=0.99,
        ),
    ]
}


def parse_transforms(spec: str | Iterable[str]) -> dict[str, float | None]:
    """'crop,rotate=0.1' -> {name: magnitude}, every magnitude checked.

    'paper' stands for the paper's set T and 'all' for every transform, each at its default;
    names after them override magnitudes ('all,crop=160,cutout=20').

    >>> parse_transforms("rotate=0.1,flip")
    {'rotate': 0.1, 'flip': None}
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    if not items:
        raise BalanceError(f"no transforms given; choose from {', '.join(TRANSFORMS)}")
    named = {"paper": PAPER_SET.split(","), "all": list(TRANSFORMS)}
    chosen: dict[str, float | None] = {
        n: TRANSFORMS[n].check(None) for item in items for n in named.get(item, ())
    }
    given: set[str] = set()
    for item in items:
        if item in named:
            continue
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in TRANSFORMS:
            raise BalanceError(f"unknown transform '{name}'; choose from {', '.join(TRANSFORMS)}")
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
    ((width, height) per class): a crop as large as the image (it is clamped to a 90 % crop)
    and a cutout that can cover more than half of it. A class named "" is not named."""
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
    found = []
    for name, (what, hint, bad) in checks.items():
        if name not in transforms:
            continue
        m = TRANSFORMS[name].check(transforms[name])
        if m is None:
            continue
        per_class = {
            label: sum(bad(pixels(m, (h, w)), w, h) for w, h in dims)
            for label, dims in sizes.items()
        }
        total, images = sum(per_class.values()), sum(len(d) for d in sizes.values())
        if total:
            counts = ", ".join(f"{label} {n}" for label, n in per_class.items() if n and label)
            counts = f" ({counts})" if counts else ""
            found.append(f"{name}={m:g} {what} for {total} of {images} images{counts}: {hint}")
    return found
