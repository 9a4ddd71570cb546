"""Training settings (the paper's defaults) and the models on offer; no TensorFlow here.

Each option's allowed values are data (`CHOICES`, `LIMITS`): the same table checks a
TrainConfig, gives the command line's help text and is what the tests try at both edges.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

from balancer.errors import TrainError
from balancer.limits import SIDE, Interval
from balancer.square import RESIZE_MODES


class ModelSpec(NamedTuple):
    keras_name: str  # the keras.applications class
    side: int  # its native input side
    preprocessing: str  # what its input expects: 'none' (EfficientNet rescales inside) or
    # 'caffe' (BGR less the ImageNet mean: VGG16, ResNet50)
    imagenet_file: str  # the ImageNet weights without the top, as Keras caches them


_KERAS_TF = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
MODELS = {
    **{
        f"efficientnet-b{i}": ModelSpec(
            f"EfficientNetB{i}", side, "none", f"efficientnetb{i}_notop.h5"
        )
        for i, side in enumerate([224, 240, 260, 300, 380, 456, 528, 600])
    },
    "vgg16": ModelSpec("VGG16", 224, "caffe", "vgg16" + _KERAS_TF),
    "resnet50": ModelSpec("ResNet50", 224, "caffe", "resnet50" + _KERAS_TF),
}
WEIGHTS_URL = "https://storage.googleapis.com/keras-applications/"  # where Keras fetches them


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models (Keras
    falls back to /tmp/.keras when that is not writable)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(home if os.path.exists(home) else os.path.dirname(home), os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


def imagenet_weights(model: str) -> dict:
    """{model, file, path, present, url} for `--weights imagenet` of one model."""
    spec = MODELS[model]
    path = keras_cache() / spec.imagenet_file
    return {
        "model": model,
        "file": spec.imagenet_file,
        "path": str(path),
        "present": path.is_file(),
        "url": WEIGHTS_URL + spec.imagenet_file,
    }


JIT_MODES = ("auto", "on", "off")
MONITORS = {"val_f1": "max", "val_accuracy": "max", "val_loss": "min"}

# Each option with a fixed set of values, and that set (checked in one place).
CHOICES = {
    "model": MODELS,
    "loss": ("focal", "ce"),
    "monitor": MONITORS,
    "resize": RESIZE_MODES,
    "jit": JIT_MODES,
    "precision": ("auto", "mixed", "float32"),
    "cache": ("auto", "on", "off"),
    "class_weight": ("none", "balanced"),
    "lr_schedule": ("constant", "cosine", "plateau"),
}
CACHE_SHARE = 0.5  # --cache auto keeps the decoded images when they take at most this share
# of the memory available when training starts
# Each numeric option and its range (None values are left to their own rule).
LIMITS = {
    "image_size": SIDE,
    "fine_tune_epochs": Interval(0, 10_000, integer=True),
    "dropout": Interval(0, 1, "left"),
    "gamma": Interval(0, 100),
    "lr": Interval(0, 10, "right"),
    "batch": Interval(1, 1 << 16, integer=True),
    "epochs": Interval(1, 100_000, integer=True),
    "patience": Interval(0, 100_000, integer=True),
    "val_split": Interval(0, 1, "neither"),
    "seed": Interval(0, 2**32 - 1, integer=True),  # NumPy's and Keras' seeds
    "warmup_epochs": Interval(0, 10_000, integer=True),
}
ALPHA = Interval(0, 1)  # focal alpha, when it is a number
FOLDS = Interval(2, 1000, integer=True)
TOP = Interval(1, 100, integer=True)


def option(name: str) -> str:
    """A config field as the command line spells it."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run; defaults are the paper's (Jeong & Kim 2021).
    Frozen: a variant is `dataclasses.replace(config, ...)`, checked again."""

    model: str = "efficientnet-b0"
    image_size: int | None = None  # None: the model's native size
    weights: str = "imagenet"  # 'imagenet', 'none' or a path to a weights file
    freeze_base: bool = False
    fine_tune_epochs: int = 0  # with freeze_base: then unfreeze and train this many more
    dropout: float = 0.2
    loss: str = "focal"  # 'focal' | 'ce'
    alpha: str = "0.25"  # a float, or 'balanced' (per class, from inverse frequency)
    gamma: float = 2.0
    lr: float = 1e-4
    lr_schedule: str = "constant"  # 'constant', 'cosine' (to 0 over the run) or 'plateau'
    warmup_epochs: int = 0  # the learning rate rises linearly from 0 over these first epochs
    class_weight: str = "none"  # 'balanced': each class weighs n / (classes x n_class) in the loss
    batch: int = 128
    epochs: int = 300
    patience: int = 10
    monitor: str = "val_f1"
    val_split: float = 0.2
    seed: int = 0
    cache: str = "auto"  # keep decoded inputs in memory: 'auto' (when they fit), 'on', 'off'
    precision: str = "auto"  # 'auto' (mixed on GPU), 'mixed', 'float32'
    resize: str = "stretch"  # to the square input: 'stretch', 'crop' (centre) or 'pad'
    eager: bool = False  # Keras run_eagerly: no graph tracing (smoke runs on tiny data only)
    jit: str = "auto"  # compile the step: 'auto' (XLA on GPU; JAX always), 'on', 'off'

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise TrainError(
                    f"unknown {name if name == 'model' else option(name)} '{value}'; "
                    f"choose from {', '.join(allowed)}"
                )
        for name, interval in LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                interval.check(value, option(name), TrainError)
        if self.alpha != "balanced":
            try:
                alpha = float(self.alpha)
            except ValueError:
                raise TrainError(
                    f"--alpha must be a number or 'balanced' (got '{self.alpha}')"
                ) from None
            ALPHA.check(alpha, "--alpha", TrainError)
        if self.warmup_epochs and self.lr_schedule == "plateau":
            raise TrainError(
                "--warmup-epochs goes with --lr-schedule constant or cosine (plateau lowers "
                "the rate itself)"
            )

    @property
    def size(self) -> int:
        return self.image_size or MODELS[self.model].side

    def check_weights(self) -> None:
        """Before training: a weights file must be there (a finished run folder does not
        need it any more, so this is not checked when a config is read back)."""
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise TrainError(
                f"--weights: no such file {self.weights} (use imagenet, none or a path)"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in names}
        if isinstance(given.get("cache"), bool):  # a run folder from before --cache auto
            given["cache"] = "on" if given["cache"] else "off"
        return cls(**given)
