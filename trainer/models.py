"""keras.applications models with an ImageNet base, global pooling, dropout and softmax head.

A model takes uint8 RGB images and converts them itself (`ImageInput`), on every backend.
"""

from __future__ import annotations

from typing import Any

from balancer.common.errors import TrainError

from . import backend
from .config import MODELS, TrainConfig, keras_cache
from .zoo import family, requests

keras = backend.keras()


@keras.saving.register_keras_serializable(package="balanced_aug")
class ImageInput(keras.layers.Layer):  # type: ignore[name-defined]
    """uint8 RGB in, what the base expects out: its keras.applications family's own
    `preprocess_input` (`mode`: the family's module, 'efficientnet', 'densenet', ...), in
    the model, on every backend; 'none': float 0-255 (the tiny model rescales inside).
    'caffe' (BGR less the ImageNet mean) is VGG16's, as run folders of 0.x name it."""

    def __init__(self, mode: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images: Any) -> Any:
        """uint8 images as the base model expects them."""
        x = keras.ops.cast(images, self.compute_dtype)
        if self.mode == "none":
            return x
        module = {"caffe": "vgg16"}.get(self.mode, self.mode)
        return getattr(keras.applications, module).preprocess_input(x)

    def get_config(self) -> dict:
        """What Keras saves of this layer."""
        return {**super().get_config(), "mode": self.mode}


def tiny_base(*, include_top: bool, weights: str | None, input_shape: tuple, pooling: str) -> Any:
    """The `tiny` model's base, called as a keras.applications class is: three conv blocks
    (convolution, batch normalisation, ReLU, pooling) from 0-255 inputs to pooled features."""
    assert not include_top and pooling == "avg"
    layers = keras.layers
    blocks: list = [keras.Input(input_shape), layers.Rescaling(1 / 255)]
    for width in (16, 32, 64):
        blocks += [
            layers.Conv2D(width, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
        ]
    base = keras.Sequential([*blocks, layers.GlobalAveragePooling2D()], name="tiny_base")
    if weights is not None:
        base.load_weights(weights)  # a file of this model's base
    return base


def build_model(config: TrainConfig, n_classes: int) -> Any:
    """The transfer-learning model; a clear TrainError when the base weights cannot be had."""
    size = config.size
    keras_name = MODELS[config.model].keras_name
    base_cls = tiny_base if keras_name is None else getattr(keras.applications, keras_name)
    weights = None if config.weights == "none" else config.weights  # 'imagenet' or a file
    try:
        with requests(stop=False) as asked:
            base = base_cls(
                include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg"
            )
    except Exception as exc:  # Keras raises bare Exception for a failed download
        if weights == "imagenet" and "file" in asked:
            folder = keras_cache().parent / asked["subdir"]
            raise TrainError(
                f"cannot get the ImageNet weights for {config.model} (offline?): put "
                f"{asked['file']} (from {asked['url']}) in {folder} or give it as --weights "
                "PATH, or use --weights none to train from scratch (`train weights` lists "
                "every model's file)"
            ) from None
        if weights is not None:
            raise TrainError(
                f"cannot load weights from {weights} into {config.model}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        raise
    base.trainable = not config.freeze_base
    inputs = keras.Input((size, size, 3), dtype="uint8")
    mode = "none" if keras_name is None else family(config.model)
    x = ImageInput(mode, dtype="float32", name="image_input")(inputs)
    # A frozen base runs its BatchNorm in inference mode, also once unfrozen for fine-tuning.
    x = base(x, training=False) if config.freeze_base else base(x)
    x = keras.layers.Dropout(config.dropout, seed=config.seed)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=config.model.replace("-", "_"))


def learning_rate(
    config: TrainConfig, lr: float, steps: int, *, epochs: int, warmup: int = 0
) -> Any:
    """The optimizer's learning rate for a phase of `epochs` epochs of `steps` steps: `lr`,
    or a Keras schedule: a linear warm-up from 0 over `warmup` epochs, then constant (or
    cosine decay to 0 over the rest, `--lr-schedule cosine`). A function of the optimizer's
    step count, so a resumed run follows it exactly."""
    warm = warmup * steps
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warm else lr,
            decay_steps=max(1, epochs * steps - warm),
            alpha=0.0,
            warmup_target=lr if warm else None,
            warmup_steps=warm,
        )
    if warm:  # constant after the warm-up: a cosine that never decays
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=lr, warmup_steps=warm
        )
    return lr


def unfreeze(model: Any) -> None:
    """Make every layer trainable, the base's included (Keras 3: setting `model.trainable`
    leaves a nested model that was frozen frozen)."""
    model.trainable = True
    for layer in model.layers:
        layer.trainable = True


def make_loss(config: TrainConfig, train_counts: list[int]) -> Any:
    """Keras' focal loss (alpha scalar, or per class for 'balanced') or cross-entropy.

    'balanced' is scikit-learn's class-weight formula n / (C * n_c), times the paper's 0.25,
    so a balanced data set gets 0.25 for every class and rarer classes get more.
    """
    if config.loss == "ce":
        return keras.losses.CategoricalCrossentropy()
    return keras.losses.CategoricalFocalCrossentropy(
        alpha=focal_alpha(config, train_counts), gamma=config.gamma
    )


def focal_alpha(config: TrainConfig, train_counts: list[int]) -> float | list[float]:
    """Focal alpha: the configured number, or per class from inverse frequency ('balanced')."""
    if config.alpha != "balanced":
        return float(config.alpha)
    total, n = sum(train_counts), len(train_counts)
    return [0.25 * total / (n * max(c, 1)) for c in train_counts]
