"""The devices a run trains on, its precision and how it spreads over several devices.

backend      several devices                       mixed precision on GPU
tensorflow   MirroredStrategy (TF_CONFIG: multi-worker)   bfloat16 where the GPU has it,
jax          keras.distribution.DataParallel              else float16 with loss scaling
torch        one GPU (said so when there are more)        (Keras wraps the optimizer)
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from balancer.errors import ToolWarning, TrainError

from . import backend
from .config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    backend: str
    gpus: int
    precision: str  # the Keras dtype policy
    strategy: str  # how several devices share the work, as its users know it
    replicas: int
    jit: bool | str  # compile(jit_compile=...)
    scope: Callable[[], AbstractContextManager] = field(default=contextlib.nullcontext, repr=False)

    def describe(self) -> dict:
        """For metrics.json."""
        return {
            "backend": self.backend,
            "gpus": self.gpus,
            "precision": self.precision,
            "strategy": self.strategy,
            "replicas": self.replicas,
        }


def setup(config: TrainConfig) -> Runtime:
    """The runtime for `config` on the loaded backend; sets Keras' global dtype policy."""
    keras = backend.keras()
    name = backend.name()
    gpus, bf16, strategy, replicas, scope = _DEVICES[name]()
    mixed = config.precision == "mixed" or (config.precision == "auto" and gpus > 0)
    policy = ("mixed_bfloat16" if bf16 or not gpus else "mixed_float16") if mixed else "float32"
    if name == "jax" and config.batch % replicas:
        raise TrainError(
            f"--batch {config.batch} does not split evenly over the {replicas} "
            f"devices: use a multiple of {replicas}"
        )
    keras.mixed_precision.set_global_policy(policy)
    jit = {"on": True, "off": False}.get(config.jit)
    if jit is None:  # auto: XLA on GPU (slow to compile on CPU); JAX always compiles
        jit = name == "jax" or (gpus > 0 and name == "tensorflow")
    return Runtime(name, gpus, policy, strategy, replicas, False if config.eager else jit, scope)


def pad_to() -> int:
    """How many devices a batch must split evenly over: those of JAX's DataParallel, when one
    is set (tf.distribute pads uneven batches itself)."""
    if backend.name() != "jax":
        return 1
    distribution = backend.keras().distribution.distribution()
    return 1 if distribution is None else distribution.device_mesh.devices.size


def _tensorflow():
    tf = backend.tf()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by an earlier run in this process
            pass
    bf16 = bool(gpus) and all(
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (8, 0)
        for g in gpus
    )
    if "TF_CONFIG" in os.environ:
        name, strategy = "MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy()
    elif len(gpus) > 1:
        name, strategy = "MirroredStrategy", tf.distribute.MirroredStrategy()
    else:
        name, strategy = "default (one device)", tf.distribute.get_strategy()
    return len(gpus), bf16, name, strategy.num_replicas_in_sync, strategy.scope


def _jax():
    import jax

    keras = backend.keras()
    devices = jax.devices()
    gpus = [d for d in devices if d.platform == "gpu"]
    bf16 = bool(gpus) and all(float(getattr(d, "compute_capability", 0)) >= 8 for d in gpus)
    if len(devices) > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return len(gpus), bf16, "DataParallel", len(devices), contextlib.nullcontext
    keras.distribution.set_distribution(None)
    return len(gpus), bf16, "default (one device)", 1, contextlib.nullcontext


def _torch():
    import torch

    gpus = torch.cuda.device_count()
    if gpus > 1:
        warnings.warn(
            f"the PyTorch backend trains on one GPU (of {gpus} here): use "
            "--backend jax or tensorflow to train on all of them",
            ToolWarning,
            stacklevel=3,
        )
    bf16 = gpus > 0 and torch.cuda.is_bf16_supported()
    return min(gpus, 1), bf16, "default (one device)", 1, contextlib.nullcontext


_DEVICES = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}
