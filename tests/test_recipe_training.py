"""The trainer on a recipe: `train fit SRC --nmin` trains on exactly what `balance build` +
`train fit OUT` trains on, without writing the folder; `--redraw epoch` draws anew."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import assert_one_line_error, make_folder, run_cli

FIT = ["--model", "tiny", "--weights", "none", "--image-size", "32", "--epochs", "3"]
PLAN = ["--nmin", "12", "--transforms", "flip,rotate,cutout"]


@pytest.mark.slow
def test_fit_on_a_recipe_is_fit_on_the_folder_and_redraw_draws_anew(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 10, "b": 4, "c": 3}, size=32, ext=".png")
    run_cli("balancer", "build", src, "--out", tmp_path / "bal", *PLAN, "--quiet", check=True)
    runs = {}
    for name, args in (
        ("folder", [tmp_path / "bal"]),
        ("recipe", [src, *PLAN]),
        ("redrawn", [src, *PLAN, "--redraw", "epoch"]),
    ):
        run_cli("trainer", "fit", *args, "--out", tmp_path / name, *FIT, "--quiet", check=True)
        runs[name] = tmp_path / name
    history = {k: pd.read_csv(r / "history.csv") for k, r in runs.items()}
    files = {k: (r / "files.csv").read_bytes() for k, r in runs.items()}
    # the same files, split and batches: the same training, to the last digit
    assert files["recipe"] == files["folder"] == files["redrawn"]
    pd.testing.assert_frame_equal(history["recipe"], history["folder"])
    assert not any((tmp_path / "recipe").rglob("*__aug*"))  # no copy was written
    # epoch 1 draws as planned; from epoch 2 each copy is drawn anew: training differs
    redrawn, folder = history["redrawn"], history["folder"]
    pd.testing.assert_frame_equal(redrawn.iloc[:1], folder.iloc[:1])
    assert (redrawn.loss.iloc[1:] != folder.loss.iloc[1:]).all()
    metrics = json.loads((runs["redrawn"] / "metrics.json").read_text())
    assert metrics["balance"] == {
        "nmin": 12,
        "transforms": {"flip": None, "rotate": 0.125, "cutout": 0.25},
        "redraw": "epoch",
    }


def test_recipe_options_are_checked_in_one_line(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 2}, size=16)
    run_cli("balancer", "build", src, "--out", tmp_path / "bal", "--nmin", "4", "-q", check=True)
    for args, fragment in (
        ([src, "--redraw", "epoch"], "--redraw needs --nmin"),
        ([src, *PLAN, "--redraw", "batch"], "unknown --redraw 'batch'"),
        ([src, "--nmin", "4", "--transforms", "warp"], "unknown transform 'warp'"),
        ([tmp_path / "bal", "--nmin", "4"], "is a balanced folder already"),
    ):
        proc = run_cli("trainer", "fit", *args, "--out", tmp_path / "run", *FIT)
        assert_one_line_error(proc, fragment)
        assert not (tmp_path / "run").exists()
