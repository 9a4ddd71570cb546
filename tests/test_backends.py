"""The trainer on every Keras backend: the input pipeline (in this process, TensorFlow) and
`train --backend jax` end to end in subprocesses (a process has one Keras backend).

The JAX runs use VGG16 at 32 px (its step compiles in seconds on CPU, EfficientNet's in
half a minute) and one EfficientNet-B0 run; PyTorch runs fit (on a recipe) and evaluate on
the CPU, and bench/gpu_check.sh runs it on a GPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    REPO,
    assert_one_line_error,
    make_folder,
    run_cli,
    run_process,
    textured,
    write_image,
)
from PIL import Image

from balancer.common.imageio import load
from balancer.common.opencv import cv2
from balancer.common.square import to_square

pytest.importorskip("jax")
JAX = dict(env={**os.environ, "KERAS_BACKEND": "jax"})
TORCH = dict(env={**os.environ, "KERAS_BACKEND": "torch"})


def train_without_tensorflow(*args, env=None, **kwargs):
    """`train ...` in a process where TensorFlow cannot be imported (as on a machine that has
    only JAX or PyTorch): Keras and the trainer must not need it."""
    code = (
        "import sys\n"
        "class NoTensorFlow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'tensorflow':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, NoTensorFlow())\n"
        "from trainer.cli import main; main()"
    )
    env = {**(env or JAX["env"]), "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        **kwargs,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


SMALL = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--batch", "8", "--quiet"]


def images_of(batches) -> np.ndarray:
    return np.concatenate([batches[i][0] for i in range(len(batches))])


def test_pipeline_reads_every_format_and_depth_upright(tmp_path):
    from trainer.pipeline import Batching, ImageBatches

    rgb = textured(24, 40, seed=1)  # BGR, 24 high and 40 wide
    files = {
        "a.png": rgb,
        "b.webp": rgb,
        "c.tiff": rgb,
        "d.bmp": rgb,
        "e16.png": rgb.astype(np.uint16) * 257,
        "f.png": cv2.cvtColor(rgb, cv2.COLOR_BGR2BGRA),
        "g.png": cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY),
    }
    paths = [str(write_image(tmp_path / name, image)) for name, image in files.items()]
    Image.fromarray(rgb[:, :, ::-1]).save(
        tmp_path / "h.jpg", quality=95, exif=_orientation(6)
    )  # stored 24x40, shown 40x24
    paths.append(str(tmp_path / "h.jpg"))
    got = images_of(ImageBatches(paths, None, Batching(n_classes=2, size=16, batch=3)))
    assert got.dtype == np.uint8 and got.shape == (8, 16, 16, 3)
    want = to_square(cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB), 16)
    for name, image in zip(files, got, strict=False):  # lossless formats: the pixels, as RGB
        if name != "g.png":  # 16-bit: resized before it is scaled to 8 bits, so +-1
            assert np.abs(image.astype(int) - want).max() <= (name == "e16.png"), name
    assert np.array_equal(got[6][..., 0], got[6][..., 2])  # gray: three equal channels
    upright = np.asarray(Image.open(tmp_path / "h.jpg").transpose(Image.Transpose.ROTATE_270))
    assert load(paths[-1]).image.shape[:2] == (40, 24)
    assert np.abs(got[7].astype(int) - to_square(upright, 16)).mean() < 2


def _orientation(value: int):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def test_batches_shuffle_each_epoch_by_seed_and_fill_or_pad_the_last(tmp_path):
    from trainer.pipeline import Batching, ImageBatches

    paths = [
        str(write_image(tmp_path / f"{i}.png", np.full((4, 4, 3), i, np.uint8))) for i in range(10)
    ]
    labels = np.arange(10) % 3

    def epochs(n, **kw):
        ds = ImageBatches(paths, labels, Batching(n_classes=3, size=4, batch=4, shuffle=True, **kw))
        seen = []
        for _ in range(n):
            seen.append([b for i in range(len(ds)) for b in ds[i][0][:, 0, 0, 0].tolist()])
            ds.on_epoch_end()
        return seen, ds

    (first, second), ds = epochs(2, seed=1, full=True)
    assert len(ds) == 3 and len(first) == 12  # 4 + 4 + (2, filled with the first 2 of the epoch)
    assert sorted(set(first)) == list(range(10)) and first[10:] == first[:2]
    assert first != second and epochs(2, seed=1, full=True)[0] == [first, second]
    assert epochs(1, seed=2, full=True)[0][0] != first
    x, y, w = ImageBatches(paths, labels, Batching(n_classes=3, size=4, batch=4, pad_to=4))[2]
    assert x.shape[0] == 4 and w.tolist() == [1, 1, 0, 0]  # 2 images, 2 weightless repeats
    assert y.argmax(1)[:2].tolist() == labels[8:].tolist()
    cached = ImageBatches(paths, labels, Batching(n_classes=3, size=4, batch=4, cache=True))
    assert np.array_equal(images_of(cached), images_of(cached))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jax")
    make_folder(root / "data", {"a": 10, "b": 8, "c": 5}, ext=".webp")
    make_folder(root / "test", {"a": 3, "b": 3, "c": 3})
    return root


@pytest.mark.slow
def test_jax_fit_evaluate_predict_and_the_model_loads_on_tensorflow(folders, tmp_path):
    import keras
    from sklearn.metrics import accuracy_score, f1_score

    run = tmp_path / "run"
    train_without_tensorflow(
        "--backend", "jax", "fit", folders / "data", "--out", run, "--model", "tiny", *SMALL
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == "jax"
    assert metrics["data"]["train"]["files"] == 18  # WebP trains (23 less 5 held out)
    assert not metrics["skipped"]
    ev = train_without_tensorflow("evaluate", run, folders / "test", "--json")
    scored = json.loads(ev.stdout)
    pred = train_without_tensorflow("predict", run, folders / "test", "--json")
    table = pd.DataFrame(json.loads(pred.stdout))
    truth = table.file.str.split("/").str[0]
    assert scored["accuracy"] == pytest.approx(accuracy_score(truth, table.predicted))
    assert scored["macro_f1"] == pytest.approx(f1_score(truth, table.predicted, average="macro"))
    from trainer.evaluation import Run  # the JAX-trained model, loaded by Keras on TensorFlow

    r = Run(run)
    probs = r.probabilities(sorted(str(p) for p in (folders / "test").rglob("*.jpg")))
    assert np.allclose(probs.max(1), table.probability, atol=1e-4)
    assert [r.class_names[i] for i in probs.argmax(1)] == list(table.predicted)  # same classes
    assert keras.backend.backend() == "tensorflow"


@pytest.mark.slow
def test_jax_cv_and_a_tiny_study(folders, tmp_path):
    cv = run_process(
        "trainer",
        "--backend",
        "jax",
        "cv",
        folders / "data",
        "--folds",
        "2",
        "--out",
        tmp_path / "cv",
        "--model",
        "tiny",
        "--json",
        *SMALL,
        check=True,
        **JAX,
    )
    result = json.loads(cv.stdout)
    assert len(result["folds"]) == 2
    fold = json.loads((tmp_path / "cv" / "fold-1" / "metrics.json").read_text())
    assert fold["backend"] == "jax"
    study = run_process(
        "trainer",
        "--backend",
        "jax",
        "study",
        "transforms",
        folders / "data",
        "--out",
        tmp_path / "study",
        "--transforms",
        "flip",
        "--folds",
        "2",
        "--model",
        "tiny",
        "--json",
        *SMALL,
        check=True,
        **JAX,
    )
    assert [row["arm"] for row in json.loads(study.stdout)["summary"]] == ["baseline", "flip"]


@pytest.mark.slow
def test_jax_data_parallel_on_two_devices_and_a_base_weights_file(folders, tmp_path):
    """Two JAX devices, an odd validation count padded, and a --weights file of the base (as
    Keras' own notop files are; those load into EfficientNet in test_trainer)."""
    import keras

    from trainer.models import tiny_base

    base = tiny_base(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    base.set_weights([w + 0.01 for w in base.get_weights()])
    weights = tmp_path / "tiny_notop.weights.h5"
    base.save_weights(weights)
    env = {**JAX["env"], "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    run = tmp_path / "run"
    train_without_tensorflow(
        "fit",
        folders / "data",
        "--out",
        run,
        "--freeze-base",
        "--model",
        "tiny",
        *SMALL,
        "--weights",
        str(weights),
        env=env,
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["strategy"], metrics["replicas"]) == ("DataParallel", 2)
    assert sum(metrics["per_class"][c]["support"] for c in "abc") == 5  # an odd count: padded
    import trainer.models  # noqa: F401  (registers ImageInput, the model's one custom layer)

    saved = keras.models.load_model(run / "model.keras", compile=False)
    loaded = saved.get_layer("tiny_base").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, base.get_weights(), strict=True))
    odd = run_process(
        "trainer",
        "fit",
        folders / "data",
        "--out",
        tmp_path / "odd",
        "--model",
        "tiny",
        *SMALL[:-3],
        "--batch",
        "7",
        env=env,
    )
    assert_one_line_error(odd, "--batch 7 does not split evenly over the 2 devices")


def test_backend_errors_are_one_line(folders, tmp_path):
    proc = run_cli("trainer", "--backend", "mxnet", "fit", folders / "data")
    assert_one_line_error(proc, "unknown backend 'mxnet'", "tensorflow, jax, torch")
    try:
        import torch  # noqa: F401
    except ImportError:
        proc = run_process("trainer", "--backend", "torch", "fit", folders / "data")
        assert_one_line_error(proc, "needs torch", "balanced-aug[torch]")


@pytest.mark.slow
def test_torch_fit_on_a_recipe_evaluate_and_the_model_loads_on_tensorflow(folders, tmp_path):
    import keras
    import torch  # noqa: F401  (the test extras install it: this test runs, never skips)
    from sklearn.metrics import accuracy_score

    run = tmp_path / "run"
    recipe = ["--nmin", "10", "--transforms", "rotate,cutout"]
    run_process(
        "trainer", "--backend", "torch", "fit", folders / "data", *recipe, "--out", run,
        "--model", "tiny", *SMALL, check=True, **TORCH,
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == "torch"
    assert metrics["data"]["train"]["augmented"] > 0  # copies made on the fly trained
    ev = run_process("trainer", "--backend", "torch", "evaluate", run, folders / "test",
                     "--json", check=True, **TORCH)  # fmt: skip
    from trainer.evaluation import Run  # the PyTorch-trained model, loaded on TensorFlow

    r = Run(run)
    files = sorted((folders / "test").rglob("*.jpg"))
    predicted = [r.class_names[i] for i in r.probabilities([str(f) for f in files]).argmax(1)]
    truth = [f.parent.name for f in files]
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert keras.backend.backend() == "tensorflow"
