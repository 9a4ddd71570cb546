"""The balanced set as a recipe: a dataset that renders every file of the folder on demand,
pixel for pixel the folder's, with fresh draws per epoch when asked, in PyTorch's DataLoader."""

from __future__ import annotations

import json
import pickle
from functools import partial

import numpy as np
import pytest

from balancer import BuildSettings, RunOptions, build
from balancer.common import imageio
from balancer.common.errors import BalanceError, BalanceValueError
from balancer.common.square import rgb8, to_square
from balancer.manifest import read_manifest
from balancer.recipe import BalancedDataset, EpochSampler, Recipe, redrawn
from balancer.verification import verify
from tests.helpers import (
    assert_one_line_error,
    edit_in_place,
    make_folder,
    run_cli,
    textured,
    tree_digest,
    write_image,
)

ONE = RunOptions(workers=1, progress=False)
EVERY = "all"


def decoded(path) -> np.ndarray:
    return rgb8(imageio.load(path).image)


@pytest.fixture(scope="module")
def png_build(tmp_path_factory):
    """A PNG source with gray, alpha and 16-bit originals, built to a folder."""
    tmp = tmp_path_factory.mktemp("png")
    src = make_folder(tmp / "src", {"a": 6, "b": 2}, size=24, ext=".png")
    write_image(src / "b" / "gray.png", textured(20, 28, channels=1, seed=5))
    write_image(src / "b" / "alpha.png", textured(26, 18, channels=4, seed=6))
    write_image(src / "b" / "deep.png", textured(22, 22, dtype=np.uint16, seed=7))
    settings = BuildSettings(nmin=14, transforms=EVERY, seed=3)
    build(src, tmp / "out", settings, run=ONE)
    return src, tmp / "out", settings


def test_every_file_is_the_written_files_pixels_and_its_row(png_build):
    src, out, settings = png_build
    m = read_manifest(out).sort_values("file_name").reset_index(drop=True)
    params = list(m.params)
    for ds in (BalancedDataset.from_source(src, settings), BalancedDataset.from_folder(out)):
        assert len(ds) == len(m) == 28
        assert ds.classes == ["a", "b"]
        for i, r in m.iterrows():
            image, label = ds[i]
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert np.array_equal(image, decoded(out / r.file_name)), r.file_name
            assert ds.classes[label] == r.label
            assert ds.row(i)["file_name"] == r.file_name
            assert ds.params(i) == params[i]  # the draw the writer made, redraws included
    copy = list(m.origin).index("augmented")
    assert BalancedDataset.from_folder(out).row(copy)["params"] == params[copy] is not None


def test_jpeg_files_before_and_after_encoding(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 1}, size=48)
    settings = BuildSettings(nmin=8, transforms="rotate,cutout", seed=1)
    build(src, tmp_path / "out", settings, run=ONE)
    m = read_manifest(tmp_path / "out").sort_values("file_name").reset_index(drop=True)
    exact = BalancedDataset.from_source(src, settings, encoded=True)
    before = BalancedDataset.from_source(src, settings)
    gaps = []
    for i, r in m.iterrows():
        on_disk = decoded(tmp_path / "out" / r.file_name)
        assert np.array_equal(exact[i][0], on_disk), r.file_name
        gap = np.abs(before[i][0].astype(int) - on_disk).mean()
        if r.origin == "original":
            assert gap == 0  # byte copies of the source decode as it does
        else:
            gaps.append(gap)
    assert 0 < np.mean(gaps) < 3  # JPEG at quality 95: a fraction of a grey level per pixel


def test_redraw_per_epoch_keeps_the_plan_and_draws_anew(png_build):
    src, _, settings = png_build
    folder = BalancedDataset.from_source(src, settings)
    online = BalancedDataset.from_source(src, settings, redraw="epoch")
    again = pickle.loads(pickle.dumps(online))  # what a loader worker gets
    copies = [i for i in range(len(online)) if online.row(i)["origin"] == "augmented"]
    originals = [i for i in range(len(online)) if i not in copies]
    for i in range(len(online)):  # epoch 0 draws as the plan did: the folder
        assert np.array_equal(online[i][0], folder[i][0])
    epochs = {}
    for e in (1, 2):
        online.set_epoch(e)
        again.set_epoch(e)
        epochs[e] = [online.params(i) for i in copies]
        assert all(np.array_equal(online[i][0], again[i][0]) for i in range(len(online)))
        assert all(np.array_equal(online[i][0], folder[i][0]) for i in originals)
        assert all(online[i][1] == folder[i][1] for i in range(len(online)))
    first = [folder.params(i) for i in copies]
    assert sum(a != b for a, b in zip(first, epochs[1], strict=True)) > 0.9 * len(copies)
    assert sum(a != b for a, b in zip(epochs[1], epochs[2], strict=True)) > 0.9 * len(copies)
    drawn = [redrawn(online.recipe.items[i], 1, settings.chosen)[0] for i in copies]
    planned = [online.recipe.items[i].transform for i in copies]
    assert set(drawn) <= set(settings.chosen) and len(set(drawn)) > 4  # of T, drawn anew
    assert 0.5 < np.mean([a != b for a, b in zip(drawn, planned, strict=True)]) < 1
    with pytest.raises(BalanceValueError, match="epoch"):
        online.set_epoch(-1)
    with pytest.raises(BalanceValueError, match="redraw"):
        BalancedDataset(online.recipe, redraw="batch")


def test_a_changed_original_is_refused_when_read(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 1}, size=24, ext=".png")
    settings = BuildSettings(nmin=4, transforms="flip")
    ds = BalancedDataset.from_source(src, settings)
    build(src, tmp_path / "out", settings, run=ONE)
    edit_in_place(src / "b" / "b_000.png")
    victim = next(i for i in range(len(ds)) if ds.row(i)["source"] == "b/b_000.png")
    with pytest.raises(BalanceError, match=r"b_000\.png: .*scan"):
        ds[victim]
    with pytest.raises(BalanceError, match=r"changed since .* was built .*b_000\.png"):
        BalancedDataset.from_folder(tmp_path / "out")


def test_torch_dataloader_with_workers_gives_the_serial_batches(png_build):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    src, _, settings = png_build
    ds = BalancedDataset.from_source(
        src, settings, redraw="epoch", transform=partial(to_square, size=16)
    )
    for epoch in (0, 3):
        ds.set_epoch(epoch)  # before the loader starts its workers, as DistributedSampler's
        serial = np.stack([ds[i][0] for i in range(len(ds))])
        loader = DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context="spawn")
        images, labels = zip(*loader, strict=True)
        assert torch.cat(images).dtype == torch.uint8
        assert np.array_equal(torch.cat(images).numpy(), serial)
        assert torch.cat(labels).tolist() == ds.targets


def test_persistent_workers_draw_each_epoch_through_the_sampler(png_build):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    src, _, settings = png_build
    square = partial(to_square, size=16)
    ds = BalancedDataset.from_source(src, settings, redraw="epoch", transform=square)
    sampler = EpochSampler(ds, shuffle=True, seed=5)
    loader = DataLoader(
        ds, sampler=sampler, batch_size=6, num_workers=2, persistent_workers=True,
        multiprocessing_context="spawn",  # a fresh interpreter: only what pickles reaches it
    )  # fmt: skip
    for epoch in (0, 2, 1):  # the same worker processes throughout
        sampler.set_epoch(epoch)
        order = [i for i, _ in sampler]
        serial = np.stack([ds[(i, epoch)][0] for i in order])
        images, labels = zip(*loader, strict=True)
        assert np.array_equal(torch.cat(images).numpy(), serial), epoch
        assert torch.cat(labels).tolist() == [ds.targets[i] for i in order]
    assert order != sorted(order) and ds.epoch == 0  # shuffled; the dataset's own epoch unused
    ds.set_epoch(2)
    assert np.array_equal(ds[3][0], ds[(3, 2)][0])


def test_a_recipe_is_the_plan_of_the_build(png_build):
    src, out, settings = png_build
    recipe = Recipe.from_source(src, settings)
    record = json.loads((out / "balance.json").read_text())
    assert len(recipe) == record["files"]
    assert [it.file_name for it in recipe.items] == sorted(read_manifest(out).file_name)
    with pytest.raises(IndexError):
        BalancedDataset(recipe)[len(recipe)]


def test_the_trainers_keras_batches_of_a_dataset_are_its_files_made_square(tmp_path):
    from trainer.pipeline import Batching, ImageBatches

    src = make_folder(tmp_path / "src", {"a": 5, "b": 2}, size=24, ext=".png")
    ds = BalancedDataset.from_source(src, BuildSettings(nmin=6, transforms="all"), redraw="epoch")
    batches = ImageBatches.from_dataset(ds, Batching(n_classes=2, size=16, batch=4))
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        images = np.concatenate([batches[k][0] for k in range(len(batches))])
        labels = np.concatenate([batches[k][1] for k in range(len(batches))]).argmax(1)
        assert np.array_equal(images, np.stack([to_square(ds[i][0], 16) for i in range(len(ds))]))
        assert labels.tolist() == ds.targets
        batches.on_epoch_end()  # Keras' call after a whole epoch: the next epoch's draws
    assert batches.epoch == 2


def test_a_recipe_only_build_is_verified_read_and_materialized_byte_identical(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 5, "b": 2}, size=24, ext=".png")
    plan = ["--nmin", "7", "--transforms", "rotate,cutout,zoom", "--seed", "4", "-q"]
    run_cli("balancer", "build", src, "--out", tmp_path / "direct", *plan, check=True)
    recipe = tmp_path / "recipe"
    said = run_cli(
        "balancer", "build", src, "--out", recipe, *plan[:-1], "--recipe-only", check=True
    )
    assert "none written" in said.stdout
    assert sorted(p.name for p in recipe.iterdir()) == ["balance.json", "manifest.csv"]
    assert json.loads((recipe / "balance.json").read_text())["status"] == "recipe"
    assert (
        "14 images planned (a recipe: none written)" in run_cli("balancer", "stats", recipe).stdout
    )
    checked = run_cli("balancer", "verify", recipe, "--json", check=True)
    assert json.loads(checked.stdout)["classes"] == {"a": 7, "b": 7}
    ds = BalancedDataset.from_folder(recipe)  # read from its source, pixel for pixel
    m = read_manifest(tmp_path / "direct").sort_values("file_name")
    for i, name in enumerate(m.file_name):
        assert np.array_equal(ds[i][0], decoded(tmp_path / "direct" / name))
    proc = run_cli("trainer", "fit", recipe, "--out", tmp_path / "run")
    assert_one_line_error(proc, "is a recipe", "balance materialize")
    sheet = ["preview", recipe, "--from-manifest"]
    run_cli("balancer", *sheet, "-o", tmp_path / "made.png", check=True)  # made from originals
    run_cli("balancer", "materialize", recipe, "-q", check=True)
    assert tree_digest(recipe) == tree_digest(tmp_path / "direct")
    run_cli("balancer", *sheet, "-o", tmp_path / "read.png", check=True)  # read from the files
    assert (tmp_path / "made.png").read_bytes() == (tmp_path / "read.png").read_bytes()


def test_a_recipe_whose_source_changed_is_named_and_not_materialized(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 5, "b": 2}, size=24, ext=".png")
    recipe = tmp_path / "recipe"
    build(src, recipe, BuildSettings(nmin=6, transforms="flip"), run=ONE, recipe_only=True)
    before = tree_digest(recipe)
    (recipe / "a").mkdir()
    (recipe / "a" / "mine.png").write_bytes((src / "a" / "a_000.png").read_bytes())
    proc = run_cli("balancer", "materialize", recipe)
    assert_one_line_error(proc, "mine.png", "never holds")  # a user's file: nothing touched
    (recipe / "a" / "mine.png").unlink()
    (recipe / "a").rmdir()
    edit_in_place(src / "b" / "b_001.png")
    report = verify(recipe)
    assert not report["ok"] and "b/b_001.png" in report["problems"][0]
    proc = run_cli("balancer", "materialize", recipe)
    assert_one_line_error(proc, "source changed", "b/b_001.png")
    assert tree_digest(recipe) == before
