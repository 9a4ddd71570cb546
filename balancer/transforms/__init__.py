"""The ten transforms of the paper's Table 1: draw parameters, apply parameters.

Every transform is a pure function of (image, random generator): ``draw`` picks the
parameters (JSON-serialisable) from the image shape, the generator and the magnitude;
``apply`` turns (image, params) into pixels and draws nothing, so a manifest row replays
its file exactly. Images are HxW or HxWxC (BGR or BGRA), uint8 or uint16; alpha is never
painted or blended away. Geometric transforms fill uncovered pixels by reflection, like
Keras' preprocessing layers (``fill_mode="reflect"``).

kernels: the pixels; registry: the draws and the table; options: parsing the choice.
"""

from .kernels import Params, Shape
from .options import PAPER_SET, check_chosen, check_spec, parse_transforms, unsuited
from .registry import (
    IDENTICAL,
    PIXEL_REDRAWS,
    TRANSFORMS,
    Transform,
    lookup,
    marked_identical,
    replay,
)

__all__ = [
    "IDENTICAL",
    "PAPER_SET",
    "PIXEL_REDRAWS",
    "TRANSFORMS",
    "Params",
    "Shape",
    "Transform",
    "check_chosen",
    "check_spec",
    "lookup",
    "marked_identical",
    "parse_transforms",
    "replay",
    "unsuited",
]
