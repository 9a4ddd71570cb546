"""One compiled model for the runs of a cv or a study: the training step is traced once.

Tracing (graph building, XLA compilation) costs more than an epoch on small data: on CPU,
EfficientNet's first epoch of a fold took 15 times its second. The runs of a cv or a study
share the model, the loss and the input size, so they can share the compiled model; each
run puts back the state a fresh build would start from (the initial weights, the dropout
layers' random streams, a fresh optimizer's variables), so the results are those of a
fresh build with the same seed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class Reuse:
    """Hands back the last compiled model while the key is the same, reset to its start."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.built = 0  # how many models were built and compiled (what tests and benches read)
        self._key: str | None = None
        self._model: Any = None
        self._start: tuple[list, list] | None = None

    def model(self, key: dict, build: Callable[[], Any]) -> Any:
        """`build()` (which compiles and builds the optimizer), or the model it built for
        the same key, with every variable put back as `build()` left it."""
        text = json.dumps(key, sort_keys=True, default=str)
        if self.enabled and text == self._key and self._model is not None and self._start:
            weights, optimizer = self._start
            for variable, value in zip(self._model.variables, weights, strict=True):
                variable.assign(value)
            for variable, value in zip(self._model.optimizer.variables, optimizer, strict=True):
                variable.assign(value)
            return self._model
        model = build()
        self.built += 1
        self._key, self._model = text, model
        self._start = (
            [v.numpy() for v in model.variables],
            [v.numpy() for v in model.optimizer.variables],
        )
        return model
