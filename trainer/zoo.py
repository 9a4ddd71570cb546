"""What keras.applications itself says of each model on offer: its native input side, its
input conversion (its family's own `preprocess_input`) and the ImageNet weights file and
address Keras fetches. Read from Keras' code as it runs (the call that checks the input
shape, the call that fetches the file), so nothing here is a table of ours that can drift
from the Keras installed. Loading this module loads Keras.

Lazy imports: Keras' private application modules are imported where their calls are watched.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from balancer.common.errors import TrainError

from . import backend
from .config import MODELS, keras_cache

keras = backend.keras()
UNNAMED_SIDE = 224  # ImageNet's side, where a model's code names no default (MobileNetV3)


class _Asked(Exception):
    """Raised from inside a Keras constructor once it has said what was wanted."""


@contextmanager
def requests(*, stop: bool) -> Iterator[dict]:
    """Inside the block, what Keras' application code asks for: `side` (the default input
    side it checks shapes against), `file`, `url` and `subdir` (the weights it fetches). With
    `stop`, the constructor ends at its first such request (nothing is built or fetched)."""
    from keras.src.applications import imagenet_utils
    from keras.src.utils import file_utils

    asked: dict = {}
    shape, fetch = imagenet_utils.obtain_input_shape, file_utils.get_file

    def obtain_input_shape(*args: Any, **kwargs: Any) -> Any:
        asked["side"] = kwargs.get("default_size", args[1] if len(args) > 1 else None)
        return shape(*args, **kwargs)

    def get_file(fname: Any = None, origin: Any = None, **kwargs: Any) -> Any:
        asked.update(file=fname, url=origin, subdir=kwargs.get("cache_subdir", "datasets"))
        if stop:
            raise _Asked
        return fetch(fname, origin, **kwargs)

    imagenet_utils.obtain_input_shape, file_utils.get_file = obtain_input_shape, get_file
    try:
        yield asked
    except _Asked:
        pass
    finally:
        imagenet_utils.obtain_input_shape, file_utils.get_file = shape, fetch


def _application(model: str) -> Any:
    keras_name = MODELS[model].keras_name
    if keras_name is None:
        raise TrainError(f"{model} is not a keras.applications model")
    return getattr(keras.applications, keras_name)


@functools.cache
def native_side(model: str) -> int:
    """The input side the model's Keras code defaults to (its ImageNet training size)."""
    if MODELS[model].keras_name is None:
        return 32  # the tiny model of models.py
    with requests(stop=True) as asked, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MobileNets: "weights for 224 will be loaded"
        _application(model)(include_top=False, weights="imagenet", pooling="avg")
    return int(asked.get("side") or UNNAMED_SIDE)


def family(model: str) -> str:
    """The keras.applications module the model comes from ('efficientnet', 'densenet', ...):
    its `preprocess_input` is the model's input conversion."""
    return _application(model).__module__.rsplit(".", 1)[1]


@functools.cache
def imagenet_weights(model: str) -> dict:
    """{model, file, path, present, url} of the ImageNet weights without the top, as Keras
    asks for them (the constructor is stopped at its request: nothing is downloaded)."""
    with requests(stop=True) as asked, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MobileNets: "weights for 224 will be loaded"
        _application(model)(  # 32 px: every model here takes it, and it builds quickest
            include_top=False, weights="imagenet", input_shape=(32, 32, 3), pooling="avg"
        )
    if "file" not in asked:
        raise TrainError(f"Keras asked for no ImageNet weights file for {model}")
    path = keras_cache().parent / asked["subdir"] / asked["file"]
    return {
        "model": model,
        "file": asked["file"],
        "path": str(path),
        "present": path.is_file(),
        "url": asked["url"],
    }
