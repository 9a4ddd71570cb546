"""How an image becomes a model's input: 8-bit RGB, made square at a given side.

The trainer's input pipeline and `balance preview --resize` share these functions, so a
preview shows exactly the pixels a model trains on. OpenCV only (no TensorFlow).
"""

from __future__ import annotations

import numpy as np

from .opencv import cv2

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


def to_square(image: np.ndarray, size: int, mode: str = "stretch") -> np.ndarray:
    """A size x size image: 'stretch' (Keras' default), the centred square 'crop'ped first
    (Keras' crop_to_aspect_ratio), or 'pad'ded to a square with black (pad_to_aspect_ratio).
    Bilinear, as tf.image.resize and Keras' image loaders."""
    h, w = image.shape[:2]
    if mode == "crop":
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        image = image[y : y + side, x : x + side]
    if mode != "pad":
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size) + image.shape[2:], image.dtype)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out
