"""How an image becomes a model's input: decoded at the scale it needs, made square at a
given side, 8-bit RGB.

The trainer's input pipeline and `balance preview --resize` share these functions, so a
preview shows exactly the pixels a model trains on. OpenCV only (no TensorFlow).

Lazy imports: the reader (OpenCV) loads only when an image is made an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .imageio import Stamp

import numpy as np

from .opencv import cv2
from .storage import location

RESIZE_MODES = (
    "stretch",
    "crop",
    "pad",
)  # Keras: default, crop_to_aspect_ratio, pad_to_aspect_ratio


def rgb8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR or BGRA; 8 or 16 bit) as HxWx3 uint8 RGB; alpha dropped,
    16-bit scaled as TensorFlow's decoders do (65535 -> 255)."""
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=255 / 65535)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image at width x height: area-averaged when it shrinks on both axes (no aliasing),
    bilinear otherwise (as tf.image.resize and Keras' loaders enlarge)."""
    h, w = image.shape[:2]
    shrink = width <= w and height <= h
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def to_square(image: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """A size x size image: 'stretch' (Keras' default), the centred square 'crop'ped first
    (Keras' crop_to_aspect_ratio), or 'pad'ded to a square with black (pad_to_aspect_ratio)."""
    h, w = image.shape[:2]
    if mode == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        image = image[y : y + side, x : x + side]
    if mode != "pad":
        return resized(image, size, size)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, *image.shape[2:]), image.dtype)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = resized(image, nw, nh)
    return out


def model_input(
    path: str | Path, size: int, mode: str = "stretch", expect: Stamp | None = None
) -> np.ndarray:
    """A file as a model of input side `size` sees it: decoded at the scale it needs (a large
    JPEG at 1/2, 1/4 or 1/8: see imageio.decode), made square, size x size x 3 uint8 RGB
    (square first: the colour conversion then touches size x size pixels, same bytes).
    `expect`: the stamp a scan saw (imageio.Stamp); a file that no longer has it is refused."""

    from .imageio import load

    image = load(location(path), expect=expect, at_least=size).image
    return rgb8(to_square(image, size, mode))
