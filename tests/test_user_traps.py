"""What careful users trip on: scale-aware transforms, leak-proof defaults, honest numbers."""
import json

import pandas as pd

from conftest import make_folder, run_cli


def test_build_stats_and_preview_warn_when_magnitudes_do_not_suit_the_images(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    expected = ("warning: crop=200 is as large as the image for 5 of 5 images (a 3, b 2)",
                "warning: cutout=70 can cover more than half of the image for 5 of 5 images")
    build = run_cli("balancer", "build", src, "--out", tmp_path / "out", "--nmin", "4", "--quiet")
    stats = run_cli("balancer", "stats", src)
    preview = run_cli("balancer", "preview", src, "-o", tmp_path / "p.png")
    for proc in (build, stats, preview):
        assert proc.returncode == 0, proc.stderr
        for line in expected:
            assert line in proc.stderr if proc is not preview else line.split(" for ")[0] in proc.stderr
    record = json.loads((tmp_path / "out" / "balance.json").read_text())
    assert len(record["warnings"]) == 2
    m = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    crops = [json.loads(p) for p in m.params[m.origin == "augmented"] if '"height"' in p]
    assert crops and all((c["height"], c["width"]) == (28, 36) for c in crops)
    quiet = run_cli("balancer", "build", src, "--out", tmp_path / "out2", "--nmin", "4",
                    "--transforms", "crop=0.8,cutout=0.25,rotate", "--quiet")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_macro_f1_averages_over_the_classes_with_images_and_names_the_rest():
    import numpy as np

    from trainer.evaluation import scores, summary

    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 0, 1, 0])
    s = scores(y_true, y_pred, ["a", "b", "c"])
    assert s["absent_classes"] == ["c"]
    assert abs(s["macro_f1"] - (0.8 + 2 / 3) / 2) < 1e-9  # a: F1 0.8, b: 2/3; c not counted
    assert "over 2 classes; not scored, no image: c" in summary(s)
    assert "  c " not in summary(s)
