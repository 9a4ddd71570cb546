"""Train EfficientNet (B0-B7; VGG16, ResNet50 as baselines) with focal loss on a class folder.

    >>> from trainer import TrainConfig, fit, evaluate, predict, cross_validate
    >>> metrics = fit("balanced/", "runs/b0", TrainConfig(model="efficientnet-b0"))

Keras and its backend (TensorFlow unless KERAS_BACKEND says jax or torch) load on first
use of a name below, not on `import trainer`.
"""

from balancer import __version__  # one version for both tools

_EXPORTS = {
    "TrainConfig": "config",
    "TrainError": "config",
    "MODELS": "config",
    "fit": "training",
    "train_run": "training",
    "evaluate": "evaluation",
    "predict": "evaluation",
    "scores": "evaluation",
    "Run": "evaluation",
    "cross_validate": "crossval",
    "list_folder": "data",
    "grouped_folds": "data",
    "holdout": "data",
    "ImageBatches": "pipeline",
    "build_model": "models",
    "make_loss": "models",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
