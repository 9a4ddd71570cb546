"""Is the trainer's input pipeline ever the bottleneck? tf.data alone vs the training step.

    .venv/bin/python bench/trainer_pipeline.py [--model efficientnet-b0] [--batch 32]

Both at the model's native size on the bench corpus (~500x375 JPEGs): images/s of the
pipeline alone (read, decode, resize, preprocess, batch), and images/s of EfficientNet's
training step fed from one batch held in memory (so the pipeline cannot slow it). The goal
is pipeline >= 3x step.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import make_corpus  # noqa: E402
from trainer import backend  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import make_dataset  # noqa: E402
from trainer.models import build_model, make_loss, preprocess_fn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-b0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    keras, tf = backend.keras(), backend.tf()
    config = TrainConfig(model=args.model, weights="none", batch=args.batch)
    files = sorted(str(p) for p in make_corpus(Path("bench/corpus")).glob("*/*.jpg"))
    labels = [int(Path(f).parent.name.split("_")[1]) for f in files]
    ds = make_dataset(files, labels, 8, config.size, preprocess_fn(config.model), args.batch,
                      shuffle=True).repeat()
    it = iter(ds)
    next(it)  # warm-up
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(it)
    pipeline = args.batches * args.batch / (time.perf_counter() - start)

    model = build_model(config, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=make_loss(config, [1] * 8),
                  metrics=["accuracy", keras.metrics.F1Score(average="macro", name="f1")],
                  jit_compile=False)
    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(fixed, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)  # trace, warm up
    start = time.perf_counter()
    model.fit(fixed, steps_per_epoch=args.steps, epochs=1, verbose=0, shuffle=False)
    step = args.steps * args.batch / (time.perf_counter() - start)
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"{args.model} at {config.size} px, batch {args.batch}, on {device}:")
    print(f"  input pipeline alone  {pipeline:8.1f} images/s")
    print(f"  training step         {step:8.1f} images/s")
    print(f"  pipeline / step       {pipeline / step:8.1f}x   (goal >= 3x)")


if __name__ == "__main__":
    main()
