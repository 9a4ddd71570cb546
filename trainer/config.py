"""Training settings (the paper's defaults) and the models on offer; no TensorFlow here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from balancer.errors import TrainError
from balancer.square import RESIZE_MODES

# name -> (keras.applications class, native input side, what its input expects): 'none' for
# EfficientNet (it rescales inside), 'caffe' (BGR less the ImageNet mean) for VGG16, ResNet50.
MODELS = {
    **{
        f"efficientnet-b{i}": (f"EfficientNetB{i}", side, "none")
        for i, side in enumerate([224, 240, 260, 300, 380, 456, 528, 600])
    },
    "vgg16": ("VGG16", 224, "caffe"),
    "resnet50": ("ResNet50", 224, "caffe"),
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
}


@dataclass
class TrainConfig:
    """Everything that shapes a training run; defaults are the paper's (Jeong & Kim 2021)."""

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
    batch: int = 128
    epochs: int = 300
    patience: int = 10
    monitor: str = "val_f1"
    val_split: float = 0.2
    seed: int = 0
    cache: bool = False
    precision: str = "auto"  # 'auto' (mixed on GPU), 'mixed', 'float32'
    resize: str = "stretch"  # to the square input: 'stretch', 'crop' (centre) or 'pad'
    eager: bool = False  # Keras run_eagerly: no graph tracing (smoke runs on tiny data only)
    jit: str = (
        "auto"  # compile the step: 'auto' (XLA on GPU; JAX always), 'on' (torch.compile too), 'off'
    )

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise TrainError(
                    f"unknown {name if name == 'model' else '--' + name} '{value}'; "
                    f"choose from {', '.join(allowed)}"
                )
        if self.alpha != "balanced":
            try:
                float(self.alpha)
            except ValueError:
                raise TrainError(
                    f"--alpha must be a number or 'balanced' (got '{self.alpha}')"
                ) from None
        if not 0 < self.val_split < 1:
            raise TrainError(f"--val-split must be between 0 and 1 (got {self.val_split})")
        for name in ("batch", "epochs"):
            if getattr(self, name) < 1:
                raise TrainError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        if self.image_size is not None and self.image_size < 8:
            raise TrainError(f"--image-size must be at least 8 (got {self.image_size})")
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise TrainError(
                f"--weights: no such file {self.weights} (use imagenet, none or a path)"
            )
        if not 0 <= self.dropout < 1:
            raise TrainError(f"--dropout must be in [0, 1) (got {self.dropout})")

    @property
    def size(self) -> int:
        return self.image_size or MODELS[self.model][1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
