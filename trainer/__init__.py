"""Train EfficientNet (B0-B7; VGG16, ResNet50 as baselines) with focal loss on a class folder.

    >>> from trainer import TrainConfig, fit, evaluate, predict, cross_validate
    >>> metrics = fit("balanced/", "runs/b0", TrainConfig(model="efficientnet-b0"))

Keras and its backend (TensorFlow unless KERAS_BACKEND says jax or torch) load on first
use of a name below, not on `import trainer`.
"""

from typing import TYPE_CHECKING

from balancer import __version__  # one version for both tools
from balancer.common.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config",
    "TrainError": "balancer.common.errors",
    "MODELS": ".config",
    "RunControl": ".control",
    "fit": ".training",
    "train_run": ".training",
    "evaluate": ".evaluation",
    "predict": ".evaluation",
    "scores": ".evaluation",
    "Run": ".evaluation",
    "cross_validate": ".crossval",
    "list_folder": ".data",
    "grouped_folds": ".data",
    "holdout": ".data",
    "inner_selection": ".data",
    "Parts": ".data",
    "ImageBatches": ".pipeline",
    "Batching": ".pipeline",
    "build_model": ".models",
    "make_loss": ".models",
}
__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from balancer.common.errors import TrainError

    from .config import MODELS, TrainConfig
    from .control import RunControl
    from .crossval import cross_validate
    from .data import Parts, grouped_folds, holdout, inner_selection, list_folder
    from .evaluation import Run, evaluate, predict, scores
    from .models import build_model, make_loss
    from .pipeline import Batching, ImageBatches
    from .training import fit, train_run
