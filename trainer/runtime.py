"""The machine a run trains on: its devices, precision and how it spreads over several
(TF_CONFIG checked), the memory it may take (--cache auto) and the disk its saves need.

backend      several devices                       mixed precision on GPU
tensorflow   MirroredStrategy (TF_CONFIG: multi-worker)   bfloat16 where the GPU has it,
jax          keras.distribution.DataParallel              else float16 with loss scaling
torch        one GPU (said so when there are more)        (Keras wraps the optimizer)

Lazy imports: A backend's own modules (JAX, PyTorch, TensorFlow's distribution) load only on
that backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import types
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balancer.common.errors import ToolWarning, TrainError, TrainValueError

from . import backend
from .config import CACHE_SHARE, TrainConfig


@dataclass(frozen=True)
class Runtime:
    """Where and how training runs: backend, devices, strategy, precision, XLA."""

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
    if name == "jax" and config.global_batch % replicas:
        raise TrainValueError(
            f"batch {config.global_batch} does not split evenly over the {replicas} "
            f"devices: use a multiple of {replicas}",
            parameters=("batch",),
        )
    keras.mixed_precision.set_global_policy(policy)
    jit = {"on": True, "off": False}.get(config.jit)
    if jit is None:  # auto: XLA on GPU (slow to compile on CPU); JAX always compiles
        jit = name == "jax" or (gpus > 0 and name == "tensorflow")
    return Runtime(name, gpus, policy, strategy, replicas, False if config.eager else jit, scope)


def fit_multi_worker(model: Any) -> None:
    """Let `model.fit` run under MultiWorkerMirroredStrategy with several workers.

    Keras 3 (up to 3.15 at least) cannot (keras-team/keras#20585): it builds a model's
    metrics from a first batch that it reduces across workers as one structure, which
    tf.distribute cannot do for an (images, labels) pair; and it averages each step's
    scalar logs across workers along an axis they do not have. The build needs only the
    batch's shapes and dtypes, so this model takes them from this worker's own first
    replica; scalar logs are averaged as scalars. Nothing changes for one worker."""

    tf = backend.tf()
    keras = backend.keras()
    _average_scalar_logs(tf)

    def symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self.distribute_strategy
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(symbolic_build, model)


def _average_scalar_logs(tf: Any) -> None:
    """Wrap Keras' reduce_per_replica once: under several workers a scalar is averaged with
    axis=None (Keras passes axis=0, which a scalar has not)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = getattr(tf_trainer, "reduce_per_replica", None)
    if original is None or getattr(original, "scalar_safe", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def mean(v: Any) -> Any:
                tensor = tf.is_tensor(v)
                if (isinstance(v, tf.distribute.DistributedValues) or tensor) and (
                    v.shape.rank == 0 if tensor else v.values[0].shape.rank == 0
                ):
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return backend.keras().tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.scalar_safe = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def pad_to() -> int:
    """How many devices a batch must split evenly over: those of JAX's DataParallel, when one
    is set (tf.distribute pads uneven batches itself)."""
    if backend.name() != "jax":
        return 1
    distribution = backend.keras().distribution.distribution()
    return 1 if distribution is None else distribution.device_mesh.devices.size


def _tensorflow() -> tuple[int, bool, str, int, Any]:
    tf = backend.tf()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialised by an earlier run in this process
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, enable=True)
    bf16 = bool(gpus) and all(
        tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (8, 0)
        for g in gpus
    )
    if tf_config():
        name, strategy = "MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy()
    elif len(gpus) > 1:
        name, strategy = "MirroredStrategy", tf.distribute.MirroredStrategy()
    else:
        name, strategy = "default (one device)", tf.distribute.get_strategy()
    return len(gpus), bf16, name, strategy.num_replicas_in_sync, strategy.scope


def _jax() -> tuple[int, bool, str, int, Any]:
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


def _torch() -> tuple[int, bool, str, int, Any]:
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


def process_room() -> int | None:
    """Bytes this process may still map under its own limits (`ulimit -v`: RLIMIT_AS, the
    address space; `ulimit -d`: RLIMIT_DATA, private writable memory), None when unlimited."""
    import resource

    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            fields = [int(x) * resource.getpagesize() for x in statm.read().split()]
        used = {resource.RLIMIT_AS: fields[0], resource.RLIMIT_DATA: fields[5]}
    except (OSError, ValueError, IndexError):
        return None
    room = None
    for which, in_use in used.items():
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY:
            left = max(0, soft - in_use)
            room = left if room is None else min(room, left)
    return room


def available_memory() -> int:
    """Bytes this process may still take: the kernel's MemAvailable, capped by the cgroup's
    limit (a container's) where there is one, and by the process's own limits."""
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            available = 0
    for limit_file, used_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f, open(used_file) as g:
                limit, used = f.read().strip(), int(g.read())
        except (OSError, ValueError):
            continue
        if limit.isdigit():
            available = min(available, max(0, int(limit) - used))
    room = process_room()
    return available if room is None else min(available, room)


@dataclass(frozen=True)
class CachePlan:
    """Whether a run keeps its decoded inputs in memory, and why."""

    mode: str  # --cache: auto, on, off
    on: bool
    needed: int  # bytes: images x size x size x 3
    images: int
    available: int | None = None  # measured for auto

    def describe(self) -> str:
        """The cache decision as one line."""
        what = f"the {self.images:,} decoded inputs ({self.needed / 2**30:.2f} GiB)"
        if self.mode != "auto":
            return (
                f"cache {self.mode}: {what} {'stay' if self.on else 'are read again'} every epoch"
            )
        room = f"{CACHE_SHARE:.0%} of the {(self.available or 0) / 2**30:.1f} GiB available"
        if self.on:
            return f"cache auto: {what} stay in memory after the first epoch (at most {room})"
        return f"cache auto: off, {what} would take more than {room} (--cache on forces it)"

    def as_dict(self) -> dict:
        """The cache decision for metrics.json."""
        return {"mode": self.mode, "on": self.on, "bytes": self.needed, "available": self.available}


def plan_cache(mode: str, images: int, size: int) -> CachePlan:
    """--cache auto keeps the decoded size x size x 3 inputs when they take at most
    CACHE_SHARE of the memory available now; on and off force it."""
    needed = images * size * size * 3
    if mode != "auto":
        return CachePlan(mode, mode == "on", needed, images)
    available = available_memory()
    return CachePlan(mode, needed <= CACHE_SHARE * available, needed, images, available)


def tf_config() -> dict:
    """TF_CONFIG, parsed and checked ({} when unset): one line naming what is wrong with it,
    before anything starts."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    shape = (
        'TF_CONFIG must be like {"cluster": {"worker": ["host0:port", "host1:port"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise TrainError(f"TF_CONFIG is not JSON ({exc}); {shape}") from None
    cluster = config.get("cluster", {}) if isinstance(config, dict) else None
    task = config.get("task", {}) if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainError(f"{shape} (got {type(config).__name__} {_short(text)})")
    for role, hosts in cluster.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise TrainError(f"TF_CONFIG's cluster[{role!r}] must be a list of 'host:port'")
    if task:
        role, index = task.get("type"), task.get("index", 0)
        if role not in cluster:
            raise TrainError(
                f"TF_CONFIG's task type {role!r} is not a role of its cluster "
                f"({', '.join(map(repr, cluster)) or 'none'})"
            )
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < len(cluster[role])
        ):
            raise TrainError(
                f"TF_CONFIG's task index must be an integer from 0 to "
                f"{len(cluster[role]) - 1} (cluster[{role!r}] has {len(cluster[role])}), "
                f"not {index!r}"
            )
    return config


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def is_chief() -> bool:
    """Whether this process writes outputs: always, unless TF_CONFIG makes it a non-chief worker."""
    config = tf_config()
    task = config.get("task") or {}
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


# What a run writes, in copies of its weights: each epoch's state (weights and Adam's two
# moments) written before the last one goes, the best epoch's weights twice, and
# model.keras (weights and optimizer).
SAVED_COPIES = 12


def check_space(folder: Path, model: Any) -> None:
    """One line before training when the disk cannot hold what the run will save (a disk
    that fills while Keras writes weights leaves HDF5 in a state that can crash Python)."""

    needed = SAVED_COPIES * 4 * model.count_params() + (16 << 20)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TrainError(
            f"{folder.parent} has {free / 2**20:,.0f} MiB free; this run saves about "
            f"{needed / 2**20:,.0f} MiB (the model, its best epoch and what a resumed run "
            "needs): free some space or write the run elsewhere"
        )
