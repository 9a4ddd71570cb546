"""Which Keras backend runs the trainer (TensorFlow, JAX or PyTorch), and loading it quietly.

The backend is fixed when Keras is first imported, so `select` (the `--backend` option) must
run before that; KERAS_BACKEND set by the user works the same way. TensorFlow 2.20+ prints
oneDNN and "no CUDA driver" notes from C++ before its log level applies, so the first import
runs with the process's stderr pointed at /dev/null, unless the user set TF_CPP_MIN_LOG_LEVEL
themselves. Python errors still propagate.

Lazy imports: Keras and TensorFlow load only when the backend is asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from typing import Any

from balancer.common.errors import TrainError

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # name -> module it needs
EXTRAS = {"tensorflow": "train", "jax": "jax", "torch": "torch"}
_USER_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def select(name: str | None) -> str:
    """Use backend `name` (None: KERAS_BACKEND, else TensorFlow) from now on; returns it."""
    name = name or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if name not in BACKENDS:
        raise TrainError(f"unknown backend '{name}'; choose from {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != name:
            raise TrainError(
                f"Keras is already loaded with the {loaded} backend in this process; "
                f"set KERAS_BACKEND={name} before importing keras"
            )
        return name
    if importlib.util.find_spec(BACKENDS[name]) is None:
        raise TrainError(
            f"the {name} backend needs {BACKENDS[name]}, which is not installed: "
            f"pip install 'balanced-aug[{EXTRAS[name]}]'"
        )
    os.environ["KERAS_BACKEND"] = name
    return name


def maker() -> dict:
    """What made a run besides its options, which a resumed run must share: the tool's version
    (how copies are rendered, how a model is built) and the Keras backend (what a step
    computes), without loading Keras."""
    from balancer import __version__

    return {"version": __version__, "backend": select(None)}


def name() -> str:
    """The backend Keras runs on (importing Keras if it is not loaded yet)."""
    return keras().backend.backend()


# The least memory a process needs to load Keras and TensorFlow and train at all, measured
# on CPU (train fit --model tiny): under an address-space limit (`ulimit -v`) of 3 GiB, or a
# data limit (`ulimit -d`) of 700 MiB, TensorFlow's threads cannot start and the process
# aborts (LLVM), dies of a traceback or hangs; 4 GiB and 900 MiB train.
LEAST_MEMORY = {"RLIMIT_AS": (4 << 30, "ulimit -v"), "RLIMIT_DATA": (1 << 30, "ulimit -d")}


def check_memory_limits() -> None:
    """One line, before Keras loads, when this process's own limits leave too little memory
    for TensorFlow to start (it would abort, crash or hang instead)."""
    import resource

    for which, (least, how) in LEAST_MEMORY.items():
        soft, _ = resource.getrlimit(getattr(resource, which))
        if soft != resource.RLIM_INFINITY and soft < least:
            raise TrainError(
                f"this process may use at most {soft / 2**20:,.0f} MiB ({which}, `{how}`); "
                f"the trainer needs at least {least / 2**30:g} GiB to load TensorFlow and "
                "train: raise the limit"
            )


def _import_quietly() -> Any:
    if "keras" in sys.modules:
        return sys.modules["keras"]
    select(None)  # a clear error if the chosen backend is not installed
    check_memory_limits()
    if _USER_LEVEL or os.environ["KERAS_BACKEND"] != "tensorflow":
        import keras

        return keras

    # Python-side chatter too (retracing notes when a study builds model after model).
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras
            import tensorflow

            tensorflow.config.list_physical_devices("GPU")  # the CUDA probe prints too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


def keras() -> Any:
    """The keras module, loaded quietly with the selected backend."""
    return _import_quietly()


def tf() -> Any:
    """TensorFlow itself, for what only the TensorFlow backend has (tf.distribute, its GPUs)."""
    _import_quietly()
    import tensorflow

    return tensorflow
