"""Balance an imbalanced class-folder image data set by random over-sampling with one
random transform per copy (Jeong & Kim 2021).

    >>> from balancer import build
    >>> result = build("photos/", "balanced/", nmin=1500, transforms="crop,rotate,cutout,width,zoom")

The names below load on first use, so `import balancer` (and `balance --help`) stays fast.
"""

import importlib
import sys
import types

__version__ = "0.1.0"
PAPER_SET = "crop,rotate,cutout,width,zoom"  # the paper's chosen transform set T

_EXPORTS = {
    "build": "build",
    "BuildResult": "build",
    "scan": "scan",
    "Scan": "scan",
    "SourceImage": "scan",
    "Skipped": "scan",
    "class_targets": "plan",
    "make_plan": "plan",
    "Item": "plan",
    "TRANSFORMS": "transforms",
    "parse_transforms": "transforms",
    "replay": "transforms",
    "read_manifest": "manifest",
    "read_record": "manifest",
    "split": "split",
    "verify": "verify",
    "folder_stats": "stats",
    "BalanceError": "errors",
    "UserError": "errors",
}
__all__ = ["__version__", "PAPER_SET", *_EXPORTS]


class _Package(types.ModuleType):
    """`balancer.build` is the function even after the submodule `balancer.build` loads:
    the import system's binding of a submodule whose name is an export is ignored."""

    def __setattr__(self, name, value):
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __getattr__(self, name):
        if name not in _EXPORTS:
            raise AttributeError(f"module 'balancer' has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        super().__setattr__(name, value)
        return value


sys.modules[__name__].__class__ = _Package
