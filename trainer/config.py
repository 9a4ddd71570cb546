"""Training settings (the paper's defaults) and the models on offer; no TensorFlow here.

Each option's allowed values are data (`CHOICES`, `LIMITS`): the same table checks a
TrainConfig, gives the command line's help text and is what the tests try at both edges.

Lazy imports: trainer.zoo (Keras) loads only when a model's native size is needed.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

from balancer.common.errors import TrainValueError
from balancer.common.limits import SIDE, Interval
from balancer.common.square import RESIZE_MODES


class ModelSpec(NamedTuple):
    """A model on offer: its keras.applications class (None: the small CNN of models.py).
    Its native side, input conversion and ImageNet weights are Keras' own (trainer.zoo)."""

    keras_name: str | None


def _family(prefix: str, names: dict[str, str]) -> dict[str, ModelSpec]:
    return {f"{prefix}{k}": ModelSpec(v) for k, v in names.items()}


# keras.applications families that suit image classification from 32 px up (a family whose
# smallest input is larger, as Xception's 71 px, is left out), their smaller members.
MODELS = {
    **_family("efficientnet-", {f"b{i}": f"EfficientNetB{i}" for i in range(8)}),
    **_family("efficientnetv2-", {f"b{i}": f"EfficientNetV2B{i}" for i in range(4)}),
    "efficientnetv2-s": ModelSpec("EfficientNetV2S"),
    **_family("convnext-", {"tiny": "ConvNeXtTiny", "small": "ConvNeXtSmall"}),
    **_family("mobilenetv3-", {"small": "MobileNetV3Small", "large": "MobileNetV3Large"}),
    "mobilenet-v2": ModelSpec("MobileNetV2"),
    **_family("densenet", {"121": "DenseNet121", "169": "DenseNet169"}),
    **_family("resnet", {"50": "ResNet50", "50v2": "ResNet50V2", "101v2": "ResNet101V2"}),
    "vgg16": ModelSpec("VGG16"),
    # Three conv blocks from scratch (no ImageNet weights): a pipeline checked end to end in
    # seconds on a CPU, and what the test suite's logic tests train.
    "tiny": ModelSpec(None),
}
IMAGENET_MODELS = [m for m, spec in MODELS.items() if spec.keras_name]


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights: $KERAS_HOME/models, else ~/.keras/models (Keras
    falls back to /tmp/.keras when that is not writable)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(home if os.path.exists(home) else os.path.dirname(home), os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


TUNING_LR = 1e-4  # the paper's: fine-tuning ImageNet weights (or a weights file)
SCRATCH_LR = 1e-3  # from scratch (weights 'none'): 1e-4 leaves a new model stuck on one class
MAX_BATCH, MIN_BATCH, STEPS_PER_EPOCH = 128, 8, 30


def auto_batch(files: int) -> int:
    """The batch for `files` files of data: MAX_BATCH, or the largest power of 2 that still
    gives STEPS_PER_EPOCH steps an epoch, at least MIN_BATCH (a batch the data supports)."""
    fits = 1 << max(0, (files // STEPS_PER_EPOCH).bit_length() - 1)
    return max(MIN_BATCH, min(MAX_BATCH, fits))


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
    "keep": ("best", "last"),
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
SIGNIFICANCE = 0.05  # a study's family-wise level: the chance an arm with no effect is marked


def _checked(name: str, value: object, kind: str) -> Any:
    """`value` as a plain Python value of `kind` ('int', 'float', 'str', 'bool', 'int | None';
    NumPy numbers are taken), else a TypeError (a bool is not a number)."""
    if kind in ("int | None", "float | None") and value is None:
        return None
    number = {
        "int": numbers.Integral,
        "int | None": numbers.Integral,
        "float": numbers.Real,
        "float | None": numbers.Real,
    }
    if kind in number:
        if isinstance(value, number[kind]) and not isinstance(value, bool):
            return float(value) if kind.startswith("float") else int(value)  # type: ignore[call-overload]
    elif isinstance(value, {"str": str, "bool": bool}[kind]):
        return value
    shown = {
        "int": "an integer",
        "int | None": "an integer or None",
        "float": "a number",
        "float | None": "a number or None",
    }
    raise TypeError(f"{name} must be {shown.get(kind, 'a ' + kind)}, not {type(value).__name__}")


# Each TrainConfig field: what it means. The one description of an option: the command
# line's help is this text and its allowed values (CHOICES, LIMITS); TrainConfig's docstring
# lists it too.
FIELD_DOCS = {
    "model": "The network: a keras.applications model (efficientnet-b0 ... -b7, efficientnetv2-*, convnext-*, mobilenetv3-*, mobilenet-v2, densenet*, resnet*, vgg16) or tiny (three conv blocks from scratch: a pipeline checked in seconds).",
    "image_size": "Input side in px; none given: the model's native size (224 for B0).",
    "weights": "imagenet (downloaded once, then cached by Keras: `train weights` lists the files), none (from scratch), or the path of a weights file (Keras' own .h5 files included).",
    "freeze_base": "Train the head only: the base keeps its weights.",
    "fine_tune_epochs": "With freeze_base: then unfreeze the base and train this many more epochs at lr/10.",
    "dropout": "Dropout rate before the softmax head.",
    "loss": "focal (Keras' CategoricalFocalCrossentropy) or ce (cross-entropy).",
    "alpha": "Focal alpha: a number, or balanced (per class, from inverse class frequency).",
    "gamma": "Focal gamma: how much easy examples are down-weighted.",
    "lr": f"Adam's learning rate, for the global batch (scale it yourself when you scale the batch); none given: {TUNING_LR:g} from ImageNet weights or a file (fine-tuning), {SCRATCH_LR:g} from scratch.",
    "lr_schedule": "constant, cosine (to 0 over the run) or plateau (a tenth after a third of the patience without gain).",
    "warmup_epochs": "The learning rate rises linearly from 0 over these first epochs.",
    "class_weight": "none, or balanced: each class weighs n / (classes x its count) in the loss (the cheapest baseline beside over-sampling).",
    "batch": f"The global batch size, split across devices; none given: {MAX_BATCH}, or for a small data set the largest power of 2 that still gives {STEPS_PER_EPOCH} steps an epoch (at least {MIN_BATCH}).",
    "epochs": "The most epochs of the (first) training phase.",
    "patience": "Stop after this many epochs without a better monitored value; the best weights are kept.",
    "monitor": "What early stopping, the best checkpoint and a plateau schedule watch.",
    "keep": "The weights scored: best (early stopping, the best epoch on the part held out to choose it: fit's validation part, a cv or study fold's inner selection part) or last (every epoch trains; nothing is chosen).",
    "val_split": "The share of originals held out to choose the epoch (grouped by source): fit's validation part when no validation folder is given; in cv and studies, the inner selection part of each fold's training originals.",
    "seed": "Seed of the splits, the shuffles, the initial weights and dropout.",
    "cache": f"Keep the decoded inputs in memory after their first read: auto (when they take at most {CACHE_SHARE:.0%} of the memory available; one line says which), on or off.",
    "precision": "auto (mixed on GPU: bfloat16 where the GPU has it, else float16 with loss scaling; float32 on CPU), mixed or float32.",
    "resize": "How an image becomes the square input: stretch (Keras' default; undoes most of a width/height copy's change), crop (the centred square) or pad (black bars).",
    "eager": "Run Keras eagerly: skips ~30 s of graph tracing per model on CPU, so only for smoke runs on tiny data.",
    "jit": "Compile the training step: auto (XLA on GPU with TensorFlow; always with JAX), on (also torch.compile with PyTorch) or off.",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run; defaults are the paper's (Jeong & Kim 2021).
    Frozen: a variant is `dataclasses.replace(config, ...)`, checked again. Each field's
    one-line doc is in FIELD_DOCS (and below, under Fields)."""

    model: str = "efficientnet-b0"
    image_size: int | None = None
    weights: str = "imagenet"
    freeze_base: bool = False
    fine_tune_epochs: int = 0
    dropout: float = 0.2
    loss: str = "focal"
    alpha: str = "0.25"
    gamma: float = 2.0
    lr: float | None = None  # None: `resolved` picks it (1e-4 fine-tuning, 1e-3 from scratch)
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    class_weight: str = "none"
    batch: int | None = None  # None: `resolved` picks it from the data's size (auto_batch)
    epochs: int = 300
    patience: int = 10
    monitor: str = "val_f1"
    keep: str = "best"
    val_split: float = 0.2
    seed: int = 0
    cache: str = "auto"
    precision: str = "auto"
    resize: str = "stretch"
    eager: bool = False
    jit: str = "auto"

    def __post_init__(self) -> None:
        """Each field checked in the library's terms: a TypeError for a value of the wrong
        type, a ValueError (TrainValueError) for one out of range or not among the choices."""
        for f in fields(self):  # frozen: the plain value is set as dataclasses set it
            object.__setattr__(self, f.name, _checked(f.name, getattr(self, f.name), str(f.type)))
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise TrainValueError(
                    f"unknown {name} '{value}'; choose from {', '.join(allowed)}",
                    parameters=(name,),
                )
        for name, interval in LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                interval.check(value, name, TrainValueError)
        if self.alpha != "balanced":
            try:
                alpha = float(self.alpha)
            except ValueError:
                raise TrainValueError(
                    f"alpha must be a number or 'balanced' (got '{self.alpha}')",
                    parameters=("alpha",),
                ) from None
            ALPHA.check(alpha, "alpha", TrainValueError)
        if self.warmup_epochs and self.lr_schedule == "plateau":
            raise TrainValueError(
                "warmup_epochs goes with lr_schedule constant or cosine (plateau lowers "
                "the rate itself)",
                parameters=("warmup_epochs", "lr_schedule"),
            )

    @property
    def size(self) -> int:
        """The input side in px: image_size, else the model's native side (Keras' own: this
        loads Keras when image_size is not given)."""
        if self.image_size:
            return self.image_size
        from .zoo import native_side

        return native_side(self.model)

    def resolved(self, files: int) -> TrainConfig:
        """The config with every automatic value chosen for `files` files of data: the
        learning rate for the weights (fine-tuning or from scratch) and the batch for the
        data's size. What a run records and trains with; a chosen value is kept."""
        lr = (
            self.lr
            if self.lr is not None
            else (SCRATCH_LR if self.weights == "none" else TUNING_LR)
        )
        batch = self.batch if self.batch is not None else auto_batch(files)
        return self if (lr, batch) == (self.lr, self.batch) else replace(self, lr=lr, batch=batch)

    @property
    def rate(self) -> float:
        """The learning rate of a resolved config."""
        return self._set("lr")

    @property
    def global_batch(self) -> int:
        """The batch of a resolved config."""
        return self._set("batch")

    def _set(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise TrainValueError(
                f"{name} is chosen from the data: use config.resolved(files) first",
                parameters=(name,),
            )
        return value

    @property
    def chooses(self) -> bool:
        """Whether training chooses anything on held-out data (the best epoch, early
        stopping, a plateau schedule): then cv and studies carve an inner selection part."""
        return self.keep == "best" or self.lr_schedule == "plateau"

    @property
    def total_epochs(self) -> int:
        """The most epochs a run trains, fine-tuning included."""
        return self.epochs + (self.fine_tune_epochs if self.freeze_base else 0)

    def check_weights(self) -> None:
        """Before training: a weights file must be there (a finished run folder does not
        need it any more, so this is not checked when a config is read back)."""
        if self.weights == "imagenet" and self.model not in IMAGENET_MODELS:
            raise TrainValueError(
                f"weights 'imagenet' do not exist for model {self.model}: train it from "
                "scratch (none) or from a file of its own",
                parameters=("weights", "model"),
            )
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise TrainValueError(
                f"weights: no such file {self.weights} (use imagenet, none or a path)",
                parameters=("weights",),
            )

    def to_dict(self) -> dict:
        """The config as a dict of plain values (metrics.json's `config`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A config from a dict (unknown keys left out: run folders of other versions)."""
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in names}
        if isinstance(given.get("cache"), bool):  # a run folder from before --cache auto
            given["cache"] = "on" if given["cache"] else "off"
        return cls(**given)


TrainConfig.__doc__ = (
    (TrainConfig.__doc__ or "")
    + "\n\n    Fields:\n"
    + "".join(
        f"        {name}: {FIELD_DOCS[name]}\n" for name in (f.name for f in fields(TrainConfig))
    )
)
