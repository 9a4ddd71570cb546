"""The input pipeline on every Keras backend: a `keras.utils.PyDataset` of uint8 batches.

Files are read with the balancer's own reader (every format and depth it accepts, EXIF
orientation applied) and made square with the same function `balance preview --resize`
shows. Threads, not processes: OpenCV releases the GIL while it decodes and resizes, so
batches are made on every core without pickling them between processes. Batches stay
uint8 (a quarter of float32's bytes to the device); the model converts them itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from balancer.common.errors import TrainError
from balancer.common.imageio import BadImage, SourceChanged, Stamp, check_stamp
from balancer.common.limits import MAX_IMAGE_MB, image_bytes
from balancer.common.parallel import default_workers
from balancer.common.square import model_input, rgb8, to_square
from balancer.common.stamps import stamp_now
from balancer.common.storage import location
from balancer.recipe import load_original, made_pixels

from . import backend

keras = backend.keras()


read_image = model_input  # one file as the model sees it (balancer.common.square)


def made_input(
    made: Any, path: str, stamp: Stamp | None, epoch: int, size: int, resize: str
) -> np.ndarray:
    """A copy made from its original as the model sees it: the original decoded whole (a
    copy's draw depends on its full size), the copy's pixels as the writer makes them
    (`balancer.recipe`; drawn anew at `epoch` when `made.redraw` names the transforms),
    then made square like any file (`made`: a balancing.Made)."""
    item = made.item
    original = load_original(location(path), stamp, item.digest, image_bytes(MAX_IMAGE_MB))
    _, pixels = made_pixels(original, item, epoch=epoch, transforms=made.redraw)
    return rgb8(to_square(pixels, size, resize))


class DataChanged(TrainError):
    """A file the run was reading changed or vanished under it."""


@dataclass(frozen=True, kw_only=True)
class Batching:
    """How files become batches: n_classes (one-hot width), size (the square input side),
    batch, resize (stretch, crop or pad).

    shuffle: a new order every epoch, drawn from (seed, epoch), so a run is a function of
    its seed whatever the number of threads. full: every batch has `batch` images, the last
    one completed from the start of the epoch's order (for training: one batch shape, so
    XLA compiles the step once, and a batch that splits evenly across devices). cache: keep
    every image after its first read (size x size x 3 bytes each). pad_to: a last batch
    that does not split evenly over that many devices (JAX's DataParallel needs it to) is
    padded with repeats of its first image, which carry sample weight 0 (every batch then
    has weights); images only: predictions for the padding are cut off by `predict`.
    threads: the reading threads (None: one per core this process may use).
    """

    n_classes: int
    size: int
    batch: int
    resize: str = "stretch"
    shuffle: bool = False
    seed: int = 0
    full: bool = False
    cache: bool = False
    pad_to: int = 1
    threads: int | None = None


class ImageBatches(keras.utils.PyDataset):  # type: ignore[name-defined]
    """(images, one-hot labels) batches of `paths` as `batching` says, or images only when
    labels is None. stamps: each file's stamp as scanned (imageio.Stamp): a file read with
    another stops the run, and with the cache on, every file is stat'ed again after each
    epoch starts (`unchanged`), so a file changed or removed after its first read stops the
    run too.
    class_weights: each label's weight in the loss (`--class-weight balanced`)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[int] | np.ndarray | None,
        batching: Batching,
        *,
        stamps: Sequence[Stamp] | None = None,
        class_weights: Sequence[float] | None = None,
        made: Sequence[Any] | None = None,
    ) -> None:
        b = batching
        threads = b.threads or default_workers()  # one per core this process may use
        super().__init__(workers=threads, use_multiprocessing=False, max_queue_size=2 * threads)
        self.paths = [str(p) for p in paths]
        self.made = None if made is None else list(made)
        self.stamps = None if stamps is None else list(stamps)
        self.class_weights = (
            None if class_weights is None else np.asarray(class_weights, np.float32)
        )
        self.failure: str | None = None  # the first file that could not be read, and why
        self.labels = None if labels is None else np.asarray(labels, np.int64)
        self.n_classes, self.size, self.batch, self.resize = b.n_classes, b.size, b.batch, b.resize
        self.shuffle, self.seed, self.full, self.pad_to = b.shuffle, b.seed, b.full, b.pad_to
        self.epoch = 0
        size, cache = b.size, b.cache
        self._order = self._draw_order()
        self._served, self._lock = 0, threading.Lock()  # batches served since the last order
        self._cache = np.zeros((len(self.paths), size, size, 3), np.uint8) if cache else None
        self._cached = np.zeros(len(self.paths), bool)

    @classmethod
    def of_table(
        cls,
        table: Any,
        class_names: list[str],
        batching: Batching,
        *,
        class_weights: Sequence[float] | None = None,
    ) -> ImageBatches:
        """Batches of a file table (trainer.data's columns; a made row rendered, see
        trainer.balancing), labels indexed in `class_names`, stamps checked."""
        from .balancing import MADE, Made
        from .data import STAMP, label_indices

        stamps = [tuple(map(int, s)) for s in zip(*(table[c] for c in STAMP), strict=True)]
        made = [m if isinstance(m, Made) else None for m in table.get(MADE, [None] * len(table))]
        return cls(
            table.path,
            label_indices(table, class_names),
            batching,
            stamps=stamps,  # type: ignore[arg-type]  # four ints each: a Stamp
            class_weights=class_weights,
            made=made if any(made) else None,
        )

    @classmethod
    def from_dataset(cls, dataset: Any, batching: Batching) -> ImageBatches:
        """Batches of a `balancer.recipe.BalancedDataset`'s files, on the same threads as any
        folder's: each copy made from its original as its batch is (drawn anew each epoch
        when the dataset redraws), then made square; the dataset's transform hooks are not
        applied, and its files' pixels are the ones before encoding."""
        from .balancing import Made

        recipe = dataset.recipe
        redraw = recipe.settings.chosen if dataset.redraw == "epoch" else None
        return cls(
            [str(recipe.root / it.source) for it in recipe.items],
            dataset.targets,
            batching,
            stamps=list(recipe.stamps),
            made=[Made(it, redraw) if it.action == "augment" else None for it in recipe.items],
        )

    def _draw_order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.paths))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.paths))

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch)

    def __getitem__(self, index: int) -> tuple:
        with self._lock:
            self._served += 1
        rows = self._order[index * self.batch : (index + 1) * self.batch]
        if self.full and len(rows) < min(self.batch, len(self.paths)):
            rows = np.concatenate([rows, self._order[: self.batch - len(rows)]])
        real = len(rows)
        rows = np.concatenate([rows, np.repeat(rows[:1], -real % self.pad_to)])
        images = np.empty((len(rows), self.size, self.size, 3), np.uint8)
        for k, i in enumerate(rows):
            images[k] = self._image(i)
        if self.labels is None:
            return (images,)
        labels = np.eye(self.n_classes, dtype=np.float32)[self.labels[rows]]
        if self.pad_to == 1 and self.class_weights is None:
            return images, labels
        weights = (np.arange(len(rows)) < real).astype(np.float32)
        if self.class_weights is not None:
            weights *= self.class_weights[self.labels[rows]]
        return images, labels, weights

    def _image(self, i: int) -> np.ndarray:
        if self._cache is None or self._redrawn(i):
            return self._read(i)
        if not self._cached[i]:  # two threads reading one image at once write the same bytes
            self._cache[i] = self._read(i)
            self._cached[i] = True
        return self._cache[i]

    def _redrawn(self, i: int) -> bool:
        return self.made is not None and self.made[i] is not None and bool(self.made[i].redraw)

    def _read(self, i: int) -> np.ndarray:
        stamp = None if self.stamps is None else self.stamps[i]
        made = None if self.made is None else self.made[i]
        try:
            if made is None:
                return read_image(self.paths[i], self.size, self.resize, stamp)
            return made_input(made, self.paths[i], stamp, self.epoch, self.size, self.resize)
        except BadImage as exc:
            self.failure = self.failure or f"{self.paths[i]}: {exc}"
            raise DataChanged(self.failure) from None

    def on_epoch_end(self) -> None:
        """A new (seed, epoch) order once a whole epoch was served: Keras also calls this when
        a fit starts or ends (after reading one batch for its shapes), and those calls must
        not count, or the order of an epoch would depend on how many fits came before."""
        with self._lock:
            whole, self._served = self._served >= len(self), 0
        if whole:
            self.epoch += 1
            self._order = self._draw_order()

    def check_unchanged(self) -> None:
        """With the cache on (a file is read once), every file is stat'ed against its stamp:
        one that changed or vanished since the scan stops the run, naming it."""
        if self._cache is None or self.stamps is None:
            return
        for path, stamp in zip(self.paths, self.stamps, strict=True):
            try:
                check_stamp(stamp_now(path), stamp)
            except FileNotFoundError:
                self.failure = f"{path}: removed after the scan"
            except (OSError, SourceChanged) as exc:
                self.failure = f"{path}: {exc}"
            if self.failure:
                raise DataChanged(self.failure)

    def start_at(self, epoch: int) -> None:
        """Serve epoch `epoch` next, in its own (seed, epoch) order: a resumed run."""
        self.epoch = epoch
        self._order = self._draw_order()


def class_weights(counts: list[int]) -> list[float]:
    """scikit-learn's 'balanced' class weights, n / (classes x n_class): a class absent from
    training weighs 0 (nothing to weigh)."""
    total, n = sum(counts), len(counts)
    return [total / (n * c) if c else 0.0 for c in counts]


def unchanged(*batches: ImageBatches) -> Any:
    """A Keras callback that checks, as each epoch starts, that no file of `batches` changed
    or vanished since the scan (a cached file is not read again to notice it)."""

    class Unchanged(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            for b in batches:
                b.check_unchanged()

    return Unchanged()


def predict(model: Any, batches: ImageBatches) -> np.ndarray:
    """model.predict over `batches`, less the rows of any padding."""
    with reading(batches):
        return model.predict(batches, verbose=0)[: len(batches.paths)]


@contextmanager
def reading(*batches: ImageBatches) -> Iterator[None]:
    """Inside the block, a file that changed or vanished while the batches read it ends in
    one line naming it, whatever the backend made of the worker thread's exception."""
    try:
        yield
    except Exception:
        failure = next((b.failure for b in batches if b.failure), None)
        if failure is None:
            raise
        raise DataChanged(
            f"{failure}: the data changed while it was being read; nothing was written"
        ) from None
