"""Does the input pipeline keep the training step busy? On any Keras backend, GPU or CPU.

    python bench/trainer_gpu.py [--backend jax] [--model efficientnet-b0] [--batch 128]
                                [--images 2048] [--steps 20] [--jit auto]

One run, one model (from scratch, the trainer's precision: mixed on GPU), images/s of:
  step        the training step fed uint8 batches already in memory (its own rate);
  from disk   the same fit fed by the trainer's pipeline (read, decode, resize on every core);
  pipeline    the pipeline alone, through Keras' own batch queue;
  tf.data     (TensorFlow backend) the tf.data pipeline the trainer used before: read,
              decode_image, resize, float32 batches, prefetch.
Goals: from disk >= 0.9 x step on a GPU; on CPU, pipeline >= step and >= tf.data.
Images: `--images` photo-like 500x375 JPEGs, written once under bench/corpus-gpu/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    ap.add_argument("--model", default="efficientnet-b0")
    ap.add_argument("--size", type=int, default=None, help="input side (default: the model's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per measure")
    ap.add_argument("--jit", default="auto")
    ap.add_argument("--pipeline-only", action="store_true", help="no training: the pipelines alone")
    ap.add_argument("--corpus", type=Path, default=Path("bench/corpus-gpu"))
    return ap.parse_args()


def corpus(root: Path, n: int) -> list[str]:
    """n photo-like JPEGs in 8 classes, reused when already written."""
    from balancer.common.opencv import cv2
    from bench.corpus import photo

    files = [root / f"class_{i % 8}" / f"{i:06d}.jpg" for i in range(n)]
    if not all(f.exists() for f in files):
        import numpy as np

        rng = np.random.default_rng(0)
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(f), photo(rng), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return [str(f) for f in files]


def in_memory(keras, batches: list):
    """A few uint8 batches held in memory, cycled: the step's rate when nothing waits."""

    class Cycle(keras.utils.PyDataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            return batches[i % len(batches)]

    return Cycle()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fit_rate(model, data, steps: int, batch: int) -> float:
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # compile, warm up
    return (
        steps * batch / seconds(lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0))
    )


def reader_rate(files, size: int, resize: str, n: int) -> float:
    """The bare reader in this one thread: images/s of model_input over `n` files."""
    from balancer.common.square import model_input

    chosen = files[:n]
    model_input(chosen[0], size, resize)
    return len(chosen) / seconds(lambda: [model_input(f, size, resize) for f in chosen])


def gil_share(files, size: int, resize: str, n: int) -> float:
    """The share of the reader's time that holds Python's lock: a pure-Python counter runs
    beside it in another thread, on another core, and loses what the reader holds."""
    import sys
    import threading

    from balancer.common.square import model_input

    def count(stop: threading.Event) -> int:
        k = 0
        while not stop.is_set():
            k += 1
        return k

    def counted(seconds_: float, work=None) -> float:
        stop, result = threading.Event(), []
        t = threading.Thread(target=lambda: result.append(count(stop)))
        start = time.perf_counter()
        t.start()
        if work is None:
            time.sleep(seconds_)
        else:
            work()
        stop.set()
        t.join()
        return result[0] / (time.perf_counter() - start)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the lock over at a fine grain, or the counter never runs
    try:
        alone = counted(1.0)
        beside = counted(0, lambda: [model_input(f, size, resize) for f in files[:n]])
    finally:
        sys.setswitchinterval(old)
    return max(0.0, 1.0 - beside / alone)


def pipeline_rate(dataset, batches: int, batch: int) -> float:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(dataset)
    adapter.on_epoch_begin()
    it = adapter.get_numpy_iterator()
    next(it)
    took = seconds(lambda: [next(it) for _ in range(batches)])
    adapter.on_epoch_end()
    return batches * batch / took


def tfdata_rate(files, size: int, batch: int, batches: int) -> float:
    """The trainer's former tf.data pipeline (float32 batches), for comparison."""
    from trainer import backend

    tf = backend.tf()

    def load(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, dtype=tf.uint8, expand_animations=False
        )
        return tf.image.resize(image, (size, size))

    ds = tf.data.Dataset.from_tensor_slices(files).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
    it = iter(ds)
    next(it)
    return batches * batch / seconds(lambda: [next(it) for _ in range(batches)])


def train_rates(keras, config, runtime, disk, steps: int) -> dict:
    """The step's own rate (uint8 batches from memory) and the same fit fed from disk."""
    from trainer.models import build_model, make_loss

    memory = in_memory(keras, [disk[i] for i in range(min(4, len(disk)))])
    with runtime.scope():
        model = build_model(config, 8)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=make_loss(config, [1] * 8),
            metrics=["accuracy", keras.metrics.F1Score(average="macro", name="f1")],
            jit_compile=runtime.jit,
        )
    return {
        "step (uint8 from memory)": fit_rate(model, memory, steps, config.batch),
        "fit from disk": fit_rate(model, disk, steps, config.batch),
    }


def main() -> None:
    args = parse()
    from trainer import backend

    backend.select(args.backend)
    keras = backend.keras()
    from balancer.common.parallel import default_workers
    from trainer.config import TrainConfig
    from trainer.pipeline import Batching, ImageBatches
    from trainer.runtime import pad_to, setup

    config = TrainConfig(
        model=args.model, image_size=args.size, weights="none", batch=args.batch, jit=args.jit
    )
    runtime = setup(config)
    files = corpus(args.corpus, args.images)
    labels = [i % 8 for i in range(len(files))]
    disk = ImageBatches(
        files,
        labels,
        Batching(
            n_classes=8,
            size=config.size,
            batch=args.batch,
            shuffle=True,
            full=True,
            pad_to=pad_to(),
        ),
    )
    steps = min(args.steps, len(disk) - 2)
    rows = {} if args.pipeline_only else train_rates(keras, config, runtime, disk, steps)
    rows["pipeline alone"] = pipeline_rate(disk, min(steps, len(disk) - 1), args.batch)
    if args.pipeline_only:
        cores = default_workers()
        one = reader_rate(files, config.size, config.resize, min(len(files), 256))
        held = gil_share(files, config.size, config.resize, min(len(files), 128))
    if runtime.backend == "tensorflow":
        rows["tf.data pipeline (before)"] = tfdata_rate(
            files, config.size, args.batch, min(steps, len(disk) - 1)
        )
    device = f"{runtime.gpus} GPU(s)" if runtime.gpus else "CPU"
    print(
        f"{args.model} at {config.size} px, batch {args.batch}, {runtime.backend} on {device}, "
        f"{runtime.precision}, jit {runtime.jit}, {default_workers()} threads:"
    )
    step = rows.get("step (uint8 from memory)")
    for name, value in rows.items():
        print(
            f"  {name:<26} {value:9.1f} images/s"
            + (f"  {value / step:6.2f} x step" if step else "")
        )
    if "tf.data pipeline (before)" in rows:
        print(
            f"  pipeline / tf.data          {rows['pipeline alone'] / rows['tf.data pipeline (before)']:6.2f} x"
        )
    if args.pipeline_only:
        print(f"  bare reader, one thread    {one:9.1f} images/s")
        print(
            f"  pipeline / (reader x {cores} cores) {rows['pipeline alone'] / (one * cores):6.2f}"
            "   (goal >= 0.9)"
        )
        print(
            f"  the reader holds Python's lock {100 * held:.1f} % of its time: threads can "
            f"reach at most {1 / max(held, 1e-3):.0f} x one thread "
            f"(16 cores: {min(16, 1 / max(held, 1e-3)):.1f} x, 64 cores: "
            f"{min(64, 1 / max(held, 1e-3)):.1f} x)"
        )


if __name__ == "__main__":
    main()
