"""Balance an imbalanced class-folder image data set by random over-sampling with one
random transform per copy (Jeong & Kim 2021).

    >>> from balancer import build
    >>> result = build("photos/", "balanced/", nmin=1500, transforms="crop,rotate,cutout,width,zoom")

The names below load on first use, so `import balancer` (and `balance --help`) stays fast.
"""
__version__ = "0.1.0"

_EXPORTS = {
    "build": "build", "BuildResult": "build",
    "scan": "scan", "Scan": "scan", "SourceImage": "scan", "Skipped": "scan",
    "class_targets": "plan", "make_plan": "plan", "Item": "plan",
    "TRANSFORMS": "transforms", "PAPER_SET": "transforms", "parse_transforms": "transforms",
    "replay": "transforms",
    "read_manifest": "manifest", "read_record": "manifest",
    "BalanceError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'balancer' has no attribute {name!r}")
