"""Building and compiling a run's model: Adam on the learning-rate schedule, the loss,
accuracy and the macro F1 early stopping watches; one compiled model reused across a cv's
folds and a study's runs when nothing that shapes it changed.

Lazy imports: trainer.models is imported where used: it loads Keras."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from . import backend
from .config import TrainConfig
from .reuse import Reuse


@dataclass(frozen=True)
class Compiler:
    """Builds and compiles a run's model: Adam on the learning-rate schedule, the loss, accuracy
    and the macro F1 early stopping watches."""

    config: TrainConfig
    runtime: Any
    train_counts: list[int]
    steps: int  # per epoch: a schedule's length
    progress: bool = True

    def compile(self, model: Any, lr: float, epochs: int, warmup: int = 0) -> None:
        """Compile `model` for a phase of `epochs` epochs starting at rate `lr`."""
        keras = backend.keras()
        from .models import learning_rate, make_loss

        rate = learning_rate(self.config, lr, self.steps, epochs=epochs, warmup=warmup)
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss=make_loss(self.config, self.train_counts),
            metrics=[
                "accuracy",
                keras.metrics.F1Score(average="macro", name="f1"),
                predicted_classes(len(self.train_counts)),
            ],
            jit_compile=self.runtime.jit,
            run_eagerly=self.config.eager,
        )

    def build(self, n_classes: int, *, second_phase: bool) -> Any:
        """A fresh model, compiled for the first phase (or, resumed there, the second)."""
        from .models import build_model, unfreeze

        config = self.config
        if self.progress:  # the first epoch after this is slow: say why, now
            print(
                f"building {config.model} at {config.size} px (its first epoch also traces "
                "the training step: minutes on a CPU)",
                file=sys.stderr,
            )
        with self.runtime.scope():
            model = build_model(config, n_classes)
            if second_phase:
                unfreeze(model)
                self.compile(model, config.rate / 10, config.fine_tune_epochs)
            else:
                self.compile(model, config.rate, config.epochs, config.warmup_epochs)
            model.optimizer.build(model.trainable_variables)  # its state can be saved, reset
        return model

    def model(self, n_classes: int, *, second_phase: bool, reuse: Reuse | None) -> Any:
        """A fresh model, or (one phase, `reuse` given) the one the last run compiled when
        nothing that shapes it changed, reset to its start."""
        config = self.config
        if reuse is None or (config.freeze_base and config.fine_tune_epochs > 0):
            return self.build(n_classes, second_phase=second_phase)
        from .models import make_loss

        scheduled = config.lr_schedule != "constant" or config.warmup_epochs
        outside = ("class_weight", "cache", "monitor", "patience")  # not in the compiled step
        key = {
            "config": {k: v for k, v in config.to_dict().items() if k not in outside},
            "classes": n_classes,
            "loss": make_loss(config, self.train_counts).get_config(),
            "steps": self.steps if scheduled else None,  # a schedule's length
        }
        return reuse.model(key, lambda: self.build(n_classes, second_phase=False))


def predicted_classes(n_classes: int) -> Any:
    """A Keras metric: how many classes the model predicted at least once in the epoch
    (`classes_predicted`, and `val_classes_predicted` on the part that chooses). 1 means the
    model has collapsed onto one class; `callbacks.collapse_watch` says so. Padding (weight
    0) is not counted."""
    keras = backend.keras()
    ops = keras.ops

    class PredictedClasses(keras.metrics.Metric):  # type: ignore[name-defined]
        def __init__(self, n: int, name: str = "classes_predicted", **kwargs: Any) -> None:
            super().__init__(name=name, **kwargs)
            self.n = n
            self.counts = self.add_variable(shape=(n,), initializer="zeros", name="counts")

        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
            hits = ops.one_hot(ops.argmax(y_pred, axis=-1), self.n)
            if sample_weight is not None:
                hits = hits * ops.expand_dims(ops.cast(sample_weight, hits.dtype), -1)
            self.counts.assign_add(ops.cast(ops.sum(hits, axis=0), self.counts.dtype))

        def result(self) -> Any:
            return ops.sum(ops.cast(self.counts > 0, "float32"))

        def reset_state(self) -> None:
            self.counts.assign(ops.zeros((self.n,), self.counts.dtype))

        def get_config(self) -> dict:
            return {**super().get_config(), "n": self.n}

    return PredictedClasses(n_classes)
