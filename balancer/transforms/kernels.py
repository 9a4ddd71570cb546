"""The transforms' pixels: pure functions of (image, params) that draw nothing, so a manifest
row replays its file exactly. Images are HxW or HxWxC (BGR or BGRA), uint8 or uint16; alpha
is never painted or blended away; geometric kernels fill uncovered pixels by reflection, like
Keras' preprocessing layers (fill_mode="reflect")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..common.opencv import cv2

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


def apply_blur(image: np.ndarray, p: Params) -> np.ndarray:
    """Gaussian blur with the drawn kernel size."""
    k = p["ksize"]
    return cv2.GaussianBlur(image, (k, k), 0)


def apply_crop(image: np.ndarray, p: Params) -> np.ndarray:
    """The drawn window, as it is (smaller than the image)."""
    return image[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]].copy()


FLIP_CODES = {"horizontal": 1, "vertical": 0, "both": -1}


def apply_flip(image: np.ndarray, p: Params) -> np.ndarray:
    """Mirror in the drawn direction: horizontal, vertical or both."""
    return cv2.flip(image, FLIP_CODES[p["mode"]])


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
