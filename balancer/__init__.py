"""Balance an imbalanced class-folder image data set by random over-sampling with one
random transform per copy (Jeong & Kim 2021).

    >>> from balancer import BuildSettings, build
    >>> settings = BuildSettings(nmin=1500, transforms="crop,rotate,cutout,width,zoom")
    >>> result = build("photos/", "balanced/", settings)

The names below load on first use, so `import balancer` (and `balance --help`) stays fast.
"""

from typing import TYPE_CHECKING

from .common.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "build": ".builder",
    "BuildSettings": ".builder",
    "BuildResult": ".builder",
    "RunOptions": ".common.parallel",
    "Existing": ".common.ownership",
    "scan": ".source",
    "Scan": ".source",
    "SourceImage": ".source",
    "Skipped": ".source",
    "class_targets": ".plan",
    "make_plan": ".plan",
    "Item": ".plan",
    "PAPER_SET": ".transforms",
    "TRANSFORMS": ".transforms",
    "parse_transforms": ".transforms",
    "replay": ".transforms",
    "read_manifest": ".manifest",
    "read_record": ".manifest",
    "split": ".splitting",
    "verify": ".verification",
    "folder_stats": ".stats",
    "BalanceError": ".common.errors",
    "UserError": ".common.errors",
}
__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .builder import BuildResult, BuildSettings, build
    from .common.errors import BalanceError, UserError
    from .common.ownership import Existing
    from .common.parallel import RunOptions
    from .manifest import read_manifest, read_record
    from .plan import Item, class_targets, make_plan
    from .source import Scan, Skipped, SourceImage, scan
    from .splitting import split
    from .stats import folder_stats
    from .transforms import PAPER_SET, TRANSFORMS, parse_transforms, replay
    from .verification import verify
