"""Against ground truth, not against the code itself: each transform's geometry written again
with NumPy/SciPy (no OpenCV), the transform draw checked for uniformity with a chi-squared
test, and the redraw rule checked as a property (a draw at "no change" is drawn again), not
over a range of seeds that happen to pass."""

import numpy as np
import pytest
from scipy import ndimage, stats

from balancer.plan import make_plan
from balancer.source import SourceImage
from balancer.transforms import TRANSFORMS
from balancer.transforms.registry import NEAR_ZERO


def smooth(h: int = 36, w: int = 52, seed: int = 0) -> np.ndarray:
    """A smooth colour image (gradients and slow waves): interpolation differences between two
    correct bilinear implementations stay under a grey level on it."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    planes = [
        127 + 60 * np.sin(x / 7 + phase[c]) * np.cos(y / 9 - phase[c]) + 40 * (x / w - y / h)
        for c in range(3)
    ]
    return np.clip(np.rint(np.stack(planes, axis=-1)), 0, 255).astype(np.uint8)


def per_channel(image: np.ndarray, fn) -> np.ndarray:
    out = np.stack([fn(image[..., c].astype(np.float64)) for c in range(image.shape[2])], -1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def center(image: np.ndarray) -> np.ndarray:
    return np.array([(image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2])


def affine(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """output[o] = input[matrix @ o + offset], (row, col) coordinates, bilinear, reflected
    edges (OpenCV's BORDER_REFLECT is SciPy's 'reflect': the edge pixel repeated)."""
    return per_channel(
        image, lambda p: ndimage.affine_transform(p, matrix, offset, order=1, mode="reflect")
    )


def rotate(image, p):
    a = np.deg2rad(p["degrees"])  # counter-clockwise on screen (rows grow downwards)
    inverse = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # output -> input
    c = center(image)
    return affine(image, inverse, c - inverse @ c)


def translate(image, p):
    h, w = image.shape[:2]
    return affine(image, np.eye(2), -np.array([p["y"] * h, p["x"] * w]))


def zoom(image, p):
    scale = 1.0 / (1.0 + p["zoom"])  # the view grows by 1 + zoom (Keras RandomZoom)
    c = center(image)
    return affine(image, np.eye(2) / scale, c - c / scale)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): output pixel i averages input [i * n_in / n_out, (i + 1) * n_in / n_out)."""
    edges = np.arange(n_out + 1) * n_in / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): bilinear with half-pixel centres, edges repeated (an enlargement)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    left = np.floor(src).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), left] += 1 - (src - left)
    w[np.arange(n_out), right] += src - left
    return w


def resize_axis(image, p, axis):
    n_in = image.shape[axis]
    n_out = max(1, int(round(n_in * p["factor"])))
    weights = (area_weights if n_out < n_in else linear_weights)(n_in, n_out)
    moved = np.moveaxis(image.astype(np.float64), axis, 0)
    out = np.tensordot(weights, moved, axes=(1, 0))
    return np.clip(np.rint(np.moveaxis(out, 0, axis)), 0, 255).astype(np.uint8)


def blur(image, p):
    k = p["ksize"]
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a kernel size, sigma=0
    radius = (k - 1) // 2
    return per_channel(
        image,
        lambda c: ndimage.gaussian_filter(c, sigma, mode="mirror", truncate=radius / sigma),
    )


def contrast(image, p):
    x = image.astype(np.float64)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return np.clip(np.rint((x - mean) * p["factor"] + mean), 0, 255).astype(np.uint8)


def crop(image, p):
    return image[p["y"] : p["y"] + p["height"], p["x"] : p["x"] + p["width"]]


def flip(image, p):
    axes = {"horizontal": (1,), "vertical": (0,), "both": (0, 1)}[p["mode"]]
    return np.flip(image, axes)


def cutout(image, p):
    """A mid-grey square of side `size` whose top-left corner is `size // 2` above and left of
    (y, x): every pixel of the image inside it, by a mask over the whole image (what falls
    outside the image is simply not there)."""
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    top, left = p["y"] - p["size"] // 2, p["x"] - p["size"] // 2
    inside = (rows >= top) & (rows < top + p["size"]) & (cols >= left) & (cols < left + p["size"])
    out = image.copy()
    out[inside] = 128
    return out


REFERENCE = {
    "rotate": rotate,
    "translate": translate,
    "zoom": zoom,
    "height": lambda image, p: resize_axis(image, p, 0),
    "width": lambda image, p: resize_axis(image, p, 1),
    "blur": blur,
    "contrast": contrast,
    "crop": crop,
    "flip": flip,
    "cutout": cutout,
}


def test_every_transform_has_a_reference():
    assert set(REFERENCE) == set(TRANSFORMS)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_transform_matches_an_independent_implementation(name):
    """Twenty draws each, at the transform's default magnitude (fractions for crop and
    cutout on this small image): within one grey level of the reference, pixel by pixel."""
    image = smooth()
    t = TRANSFORMS[name]
    magnitude = {"crop": 0.6, "cutout": 0.3}.get(name)
    for seed in range(20):
        got, params = t(image, np.random.default_rng(seed), magnitude)
        want = REFERENCE[name](image, params)
        assert got.shape == want.shape, (seed, params)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1, (seed, params, diff.max())
        assert diff.mean() < 0.25, (seed, params, diff.mean())  # fixed-point rounding only


def test_cutout_at_the_corners_covers_only_what_is_inside_the_image():
    """By hand: a 10 px patch at (0, 0) of a 36 x 52 image keeps its lower-right 5 x 5 inside;
    one at the last pixel (35, 51) keeps rows 30-35 and columns 46-51 (6 x 6)."""
    image = smooth()
    t = TRANSFORMS["cutout"]
    for (y, x), rows, cols in (((0, 0), (0, 5), (0, 5)), ((35, 51), (30, 36), (46, 52))):
        got = t.apply(image, {"y": y, "x": x, "size": 10})
        changed = np.argwhere((got != image).any(axis=-1))
        grey = np.zeros(image.shape[:2], bool)
        grey[rows[0] : rows[1], cols[0] : cols[1]] = True
        assert (got[grey] == 128).all() and (got[~grey] == image[~grey]).all()
        assert np.array_equal(got, cutout(image, {"y": y, "x": x, "size": 10}))
        assert len(changed) <= grey.sum()


def test_replay_of_a_manifest_row_is_the_written_copy_and_the_reference_geometry(tmp_path):
    """Every copy of a lossless build, replayed from its manifest row (transform and params
    as JSON text) on its original: the decoded file exactly, and within a grey level of the
    independent implementation above."""
    from helpers import QUIET, write_image

    from balancer import BuildSettings, build
    from balancer.transforms import replay

    for i in range(3):
        write_image(tmp_path / "src" / "a" / f"{i}.png", smooth(seed=i))
    write_image(tmp_path / "src" / "b" / "0.png", smooth(seed=9))
    build(
        tmp_path / "src",
        tmp_path / "out",
        BuildSettings(nmin=24, transforms="all,crop=0.6,cutout=0.3"),
        run=QUIET,
    )
    import json

    for row, copy, original in decoded_pairs(tmp_path / "out"):
        got = replay(original, row.augmentation, row.params)
        assert np.array_equal(got, copy), row.file_name
        want = REFERENCE[row.augmentation](original, json.loads(row.params))
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, row.file_name


def test_the_transform_of_each_copy_is_drawn_uniformly_from_the_set():
    """5,000 copies over five transforms: a chi-squared test of equal shares (p above 0.001),
    with every transform drawn, at a fixed seed (so the test itself is deterministic)."""
    images = [SourceImage(f"a/{i}.jpg", "a", "jpeg", 100, width=32, height=32) for i in range(7)]
    chosen = dict.fromkeys(["crop", "rotate", "cutout", "width", "zoom"])
    items = make_plan({"a": images}, {"a": 5007}, chosen, seed=3)
    drawn = [it.transform for it in items if it.origin == "augmented"]
    counts = np.array([drawn.count(n) for n in chosen])
    assert counts.sum() == 5000 and counts.min() > 0
    assert stats.chisquare(counts).pvalue > 0.001, counts


@pytest.mark.parametrize(
    "name, key, low, high",
    [
        ("rotate", "degrees", -45.0, 45.0),  # 0.125 of a turn
        ("zoom", "zoom", -0.3, 0.3),
        ("width", "factor", 0.7, 1.3),
    ],
)
def test_magnitudes_follow_their_range_uniformly_outside_the_no_change_band(name, key, low, high):
    """2,000 draws at the default magnitude: inside the range, never within NEAR_ZERO of its
    half-width of "no change", and uniform over the rest (Kolmogorov-Smirnov, p > 0.001)."""
    t = TRANSFORMS[name]
    shape = (400, 400, 3)  # large enough that every draw changes it: none is redrawn for size
    rng = np.random.default_rng(11)
    values = np.array([t.draw(shape, rng, t.default)[key] for _ in range(2000)])
    mid, half = (low + high) / 2, (high - low) / 2
    assert values.min() >= low and values.max() <= high
    offsets = np.abs(values - mid)
    assert offsets.min() >= NEAR_ZERO * half * (1 - 1e-9)
    band = NEAR_ZERO * half
    folded = (offsets - band) / (half - band)  # uniform on [0, 1] when the draw is
    assert stats.kstest(folded, "uniform").pvalue > 0.001


class Scripted:
    """A generator that returns the given uniform draws in order."""

    def __init__(self, *values: float):
        self.values = list(values)

    def uniform(self, low, high):
        value = self.values.pop(0)
        assert low <= value <= high
        return value


@pytest.mark.parametrize("name", ["rotate", "zoom", "contrast", "width", "height"])
def test_a_draw_at_no_change_is_drawn_again_by_construction(name):
    """The property the old seed loop sampled: a draw at (or too near) "no change" is
    replaced by the next one, so no copy is its original."""
    t = TRANSFORMS[name]
    m = t.default
    near = 0.5 * NEAR_ZERO * m
    image = smooth()  # drawn for the shape it is checked on
    params = t.drawer(image.shape, Scripted(0.0, near, -near, 0.5 * m), m, 0.0)
    value = next(iter(params.values()))
    identity = {"rotate": 0.0, "zoom": 0.0}.get(name, 1.0)
    expected = 0.5 * m * (360.0 if name == "rotate" else 1.0)
    assert value == pytest.approx(identity + expected)
    assert not np.array_equal(t.apply(image, params), image)


# -- no copy equals its original: judged on the decoded files -----------------------------------


AUDIT = "all,crop=200,cutout=70"  # the audit's settings: every transform at the 0.x defaults


def corner_images(root, counts: dict[str, int], flat: int = 0):
    """The audit's case: 16x16 PNGs of flat mid-grey (128, cutout's own fill) with a darker
    corner of a size and shade of their own; `flat` wholly flat ones in the last class."""
    from helpers import write_image

    for label, n in counts.items():
        for i in range(n):
            image = np.full((16, 16, 3), 128, np.uint8)
            image[: 2 + i % 5, : 2 + i // 5] = 40 + 9 * i
            write_image(root / label / f"im{i}.png", image)
    for i in range(flat):
        write_image(root / label / f"flat{i}.png", np.full((16, 16, 3), 128, np.uint8))
    return root


def decoded_pairs(out):
    """(copy row, copy pixels, original pixels) for every copy, decoded from the files."""
    import pandas as pd

    from balancer.common.opencv import cv2

    m = pd.read_csv(out / "manifest.csv")
    first = m[m.origin == "original"]
    originals = dict(zip(first.source, first.file_name, strict=True))
    for row in m[m.origin == "augmented"].itertuples():
        copy = cv2.imread(str(out / row.file_name), cv2.IMREAD_UNCHANGED)
        original = cv2.imread(str(out / originals[row.source]), cv2.IMREAD_UNCHANGED)
        yield row, copy, original


def test_no_copy_equals_its_original_by_its_decoded_pixels(tmp_path):
    """Lossless copies of the audit's images, every transform: each copy's decoded pixels
    differ from its original's. The draw-by-shape rule alone left some equal here (checked
    first, so the case bites)."""
    from helpers import QUIET

    from balancer import BuildSettings, build

    src = corner_images(tmp_path / "src", {"a": 10, "b": 4})
    seeds = {}
    result = build(src, tmp_path / "out", BuildSettings(nmin=110, transforms=AUDIT), run=QUIET)
    pairs = list(decoded_pairs(tmp_path / "out"))
    assert len(pairs) == 2 * 110 - 14
    for row, _, original in pairs:
        t = TRANSFORMS[row.augmentation]
        first = t.draw(original.shape, np.random.default_rng(int(row.seed)), t.default)
        seeds[row.file_name] = np.array_equal(t.apply(original, first), original)
    assert sum(seeds.values()) >= 1  # the first draw alone would have left these unchanged
    same = [row.file_name for row, copy, original in pairs if np.array_equal(copy, original)]
    assert same == []
    assert result.record["unchanged_copies"] == []


def test_an_image_no_draw_can_change_is_named_counted_and_flagged(tmp_path):
    """A wholly flat image: no draw of most transforms changes it. Its copies are marked,
    counted in the warning, listed in balance.json and flagged by verify, and what they name
    is exactly the set of copies whose decoded pixels equal their original's."""
    import json

    from helpers import run_cli

    src = corner_images(tmp_path / "src", {"a": 6, "b": 3}, flat=1)
    options = ("--nmin", "24", "--transforms", AUDIT, "--quiet")
    proc = run_cli("balancer", "build", src, "--out", tmp_path / "out", *options)
    assert proc.returncode == 0, proc.stderr
    equal = sorted(
        row.file_name
        for row, copy, original in decoded_pairs(tmp_path / "out")
        if copy.shape == original.shape and np.array_equal(copy, original)
    )
    assert equal and all(name.startswith("b/flat0__") for name in equal)
    record = json.loads((tmp_path / "out" / "balance.json").read_text())
    assert record["unchanged_copies"] == equal
    assert f"{len(equal)} copies equal their original" in proc.stderr
    assert "b/flat0.png in 50 tries" in proc.stderr
    report = run_cli("balancer", "verify", tmp_path / "out", "--replay", "--json")
    assert report.returncode != 0
    flagged = sorted(p.rsplit(": ", 1)[1] for p in json.loads(report.stdout)["problems"])
    assert flagged == equal


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_the_pixel_redraw_leaves_a_copy_that_differs_at_once_as_it_was(name):
    """Builds whose copies already differed keep their bytes: on an image every draw changes,
    the params are the first draw of the item's seed, as before the pixel check."""
    from balancer.writing import render

    t, image = TRANSFORMS[name], smooth()
    for seed in range(30):
        params, _ = render(image, transform=name, magnitude=None, seed=seed, fmt="png", quality=95)
        assert params == t.draw(image.shape, np.random.default_rng(seed), t.default)


# -- the trainer's numbers against scikit-learn and Keras' own rules ----------------------------

TINY_FIT = dict(model="tiny", weights="none", batch=4)


@pytest.mark.slow
def test_fit_scores_equal_scikit_learns_on_the_models_own_predictions(tmp_path):
    from helpers import SILENT, make_folder
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    from trainer import TrainConfig, fit
    from trainer.evaluation import Run

    data = make_folder(tmp_path / "data", {"a": 8, "b": 6, "c": 5}, size=24)
    m = fit(data, tmp_path / "run", TrainConfig(**TINY_FIT, epochs=2), control=SILENT)
    files = __import__("pandas").read_csv(tmp_path / "run" / "files.csv")
    val = files[files.split == "validation"]
    run = Run(tmp_path / "run")
    predicted = run.probabilities([str(data / f) for f in val.file]).argmax(1)
    truth = [run.class_names.index(label) for label in val.label]
    every = list(range(len(run.class_names)))
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert m["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, labels=every, average="macro", zero_division=0)
    )
    for i, name in enumerate(run.class_names):
        row = m["per_class"][name]
        assert row["support"] == truth.count(i)
        assert row["predicted"] == int((predicted == i).sum())
        if row["predicted"] == 0:  # 0 of 0: not a measured precision
            assert row["precision"] is None
        else:
            assert row["precision"] == pytest.approx(
                precision_score(truth, predicted, labels=[i], average="macro", zero_division=0)
            )
        assert row["recall"] == pytest.approx(
            recall_score(truth, predicted, labels=[i], average="macro", zero_division=0)
        )


@pytest.mark.slow
def test_early_stopping_stops_at_the_best_epoch_plus_patience(tmp_path):
    """A head that cannot move (frozen base, a learning rate of 1e-12): the first epoch is the
    best, and the run stops `patience` epochs later, long before --epochs."""
    from helpers import SILENT, make_folder

    from trainer import TrainConfig, fit

    data = make_folder(tmp_path / "data", {"a": 6, "b": 6}, size=24)
    config = TrainConfig(**TINY_FIT, freeze_base=True, lr=1e-12, epochs=40, patience=3)
    m = fit(data, tmp_path / "run", config, control=SILENT)
    history = __import__("pandas").read_csv(tmp_path / "run" / "history.csv")
    assert m["best_epoch"] == 1
    assert m["epochs_run"] == len(history) == 1 + 3
    assert list(history.epoch) == [1, 2, 3, 4]
    assert history.val_f1.nunique() == 1  # nothing improved: the stop is the rule's, not luck's
