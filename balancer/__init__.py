"""Balance an imbalanced class-folder image data set by random over-sampling with one
random transform per copy (Jeong & Kim 2021).

    >>> from balancer import build
    >>> result = build("photos/", "balanced/", nmin=1500, transforms="crop,rotate,cutout,width,zoom")
"""
__version__ = "0.1.0"

from .build import BuildResult, build
from .errors import BalanceError
from .manifest import read_manifest, read_record
from .plan import Item, class_targets, make_plan
from .scan import Scan, Skipped, SourceImage, scan
from .transforms import PAPER_SET, TRANSFORMS, parse_transforms, replay

__all__ = ["__version__", "build", "BuildResult", "BalanceError", "read_manifest",
           "read_record", "Item", "class_targets", "make_plan", "Scan", "Skipped",
           "SourceImage", "scan", "PAPER_SET", "TRANSFORMS", "parse_transforms", "replay"]
