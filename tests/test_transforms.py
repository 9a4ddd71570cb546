"""The transforms: each changes the pixels it should, keeps type and alpha, and replays from
its recorded parameters; option parsing and the warnings for magnitudes that do not suit."""

import json

import numpy as np
import pytest
from helpers import (
    ONE,
    textured,
    write_image,
)

from balancer import BuildSettings, build
from balancer.common.errors import BalanceError
from balancer.transforms import PAPER_SET, TRANSFORMS, parse_transforms, replay

# Magnitudes that suit a 48x56 image.
SMALL = {"crop": 24, "cutout": 20, "blur": 7}


KINDS = {
    "gray8": textured(48, 56, channels=1),
    "bgr8": textured(48, 56, channels=3),
    "bgra8": textured(48, 56, channels=4),
    "bgr16": textured(48, 56, channels=3, dtype=np.uint16),
    "gray16": textured(48, 56, channels=1, dtype=np.uint16),
}


def first_changing_draw(name, image, seed=0):
    """(output, params, rng seed) of one draw: every draw changes the image."""
    t = TRANSFORMS[name]
    out, params = t(image, np.random.default_rng(seed), t.check(SMALL.get(name)))
    return out, params, seed


@pytest.mark.parametrize("name", TRANSFORMS)
def test_no_draw_is_a_no_op_even_at_the_papers_magnitudes_on_small_images(name):
    image = textured(32, 40, seed=5)
    t = TRANSFORMS[name]
    paper = parse_transforms("paper-px").get(name, t.default)  # the paper's own pixels
    for seed in range(150):
        out, params = t(image, np.random.default_rng(seed), paper)
        assert out.shape != image.shape or not np.array_equal(out, image), (seed, params)
    if name == "crop":  # 200 px on 32x40: clamped to 90 % of each side
        assert (params["height"], params["width"]) == (28, 36)
        # the default is a fraction of the shorter side: 0.8 x 32, whatever the size
        assert t(image, np.random.default_rng(0))[1]["height"] == round(0.8 * 32)


def test_crop_and_cutout_take_a_fraction_of_the_shorter_side():
    image = textured(40, 60)
    crop, cutout = TRANSFORMS["crop"], TRANSFORMS["cutout"]
    assert crop.check(0.5) == 0.5 and crop.check(24) == 24
    for bad in (0, 1.5, -0.2):
        with pytest.raises(BalanceError):
            crop.check(bad)
    _, p = crop(image, np.random.default_rng(0), 0.5)
    assert (p["height"], p["width"]) == (20, 20)
    sizes = {cutout(image, np.random.default_rng(s), 0.25)[1]["size"] for s in range(200)}
    assert sizes == set(range(1, 11))


def test_magnitudes_that_do_not_suit_the_images_are_named_with_counts():
    from balancer.transforms import unsuited

    sizes = {"cat": [(32, 32)] * 3, "dog": [(400, 300), (32, 32)]}
    found = unsuited({"crop": 200, "cutout": 24, "rotate": None}, sizes)
    assert found == [
        "crop=200 is as large as the image for 4 of 5 images (cat 3, dog 1): "
        "copies get a 90 % crop instead; try crop=0.8",
        "cutout=24 can cover more than half of the image for 4 of 5 images "
        "(cat 3, dog 1): try cutout=0.25",
    ]
    assert unsuited({"crop": 0.8, "cutout": 0.25}, sizes) == []
    assert unsuited(parse_transforms("paper"), sizes) == []  # the defaults suit any size


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_transform_changes_pixels_keeps_type_and_replays(name, kind):
    image = KINDS[kind]
    before = image.copy()
    out, params, seed = first_changing_draw(name, image)
    assert np.array_equal(image, before), "the input must not be modified"
    assert out.dtype == image.dtype and out.ndim == image.ndim
    if image.ndim == 3:
        assert out.shape[2] == image.shape[2]
    if name not in ("crop", "height", "width"):
        assert out.shape == image.shape
    assert out.shape != image.shape or not np.array_equal(out, image), "pixels must change"
    # params are JSON (replay against an independent implementation and the written files:
    # test_ground_truth); the same seed draws the same params
    assert json.loads(json.dumps(params)) == params
    again, params3 = TRANSFORMS[name](
        image, np.random.default_rng(seed), TRANSFORMS[name].check(SMALL.get(name))
    )
    assert params3 == params and np.array_equal(again, out)


@pytest.mark.parametrize("name", ["cutout", "contrast"])
def test_colour_only_transforms_leave_alpha_alone(name):
    image = KINDS["bgra8"]
    out, _, _ = first_changing_draw(name, image)
    assert np.array_equal(out[..., 3], image[..., 3])
    assert not np.array_equal(out[..., :3], image[..., :3])


def test_crop_keeps_a_side_smaller_than_the_target_whole():
    image = textured(8, 300)
    out, params = TRANSFORMS["crop"](image, np.random.default_rng(0), 200)
    assert out.shape[:2] == (8, 200) and params["height"] == 8 and params["y"] == 0
    assert np.array_equal(out, image[:, params["x"] : params["x"] + 200])


def test_cutout_paints_mid_gray_square():
    image = KINDS["bgr16"]
    out = replay(image, "cutout", {"size": 10, "x": 20, "y": 20})
    assert (out[15:25, 15:25] == 32768).all()
    assert np.array_equal(out[:15], image[:15])


def test_rotate_default_range_is_45_degrees_and_flip_modes():
    t = TRANSFORMS["rotate"]
    degrees = [t.draw((10, 10), np.random.default_rng(s), t.default)["degrees"] for s in range(200)]
    assert -45 <= min(degrees) < -35 and 35 < max(degrees) <= 45
    image = KINDS["bgr8"]
    assert np.array_equal(replay(image, "flip", {"mode": "horizontal"}), image[:, ::-1])
    assert np.array_equal(replay(image, "flip", {"mode": "both"}), image[::-1, ::-1])


def test_width_factor_resizes_width_only():
    out = replay(KINDS["bgr8"], "width", {"factor": 1.25})
    assert out.shape == (48, 70, 3)


def test_blur_kernels_are_odd_in_range():
    t = TRANSFORMS["blur"]
    sizes = {t.draw((9, 9), np.random.default_rng(s), 7)["ksize"] for s in range(100)}
    assert sizes == {3, 5, 7}


def test_tiny_image_survives_every_transform():
    image = textured(8, 8, channels=4)
    for t in TRANSFORMS.values():
        for s in range(5):
            out, _ = t(image, np.random.default_rng(s))
            assert out.size > 0 and out.dtype == np.uint8


def test_parse_transforms_defaults_overrides_and_errors():
    assert parse_transforms(PAPER_SET) == {
        "crop": 0.8,
        "rotate": 0.125,
        "cutout": 0.25,
        "width": 0.3,
        "zoom": 0.3,
    }
    assert parse_transforms("Paper-PX") == {
        "crop": 200,
        "rotate": 0.125,
        "cutout": 70,
        "width": 0.3,
        "zoom": 0.3,
    }
    assert parse_transforms("rotate=0.1, zoom=0.2,crop=160") == {
        "rotate": 0.1,
        "zoom": 0.2,
        "crop": 160,
    }
    assert list(parse_transforms("all")) == list(TRANSFORMS)
    every = parse_transforms("all,crop=24,cutout=12")
    assert list(every) == list(TRANSFORMS) and every["crop"] == 24 and every["rotate"] == 0.125
    with pytest.raises(BalanceError, match="unknown transform 'sheer'; choose from blur, crop"):
        parse_transforms("rotate,sheer")
    for bad, fragment in [
        ("rotate=2", "rotate"),
        ("blur=4", "blur"),
        ("crop=0", "crop"),
        ("flip=1", "takes no magnitude"),
        ("zoom=abc", "not a number"),
        ("crop,crop", "twice"),
        ("", "no transforms"),
    ]:
        with pytest.raises(BalanceError, match=fragment):
            parse_transforms(bad)


def test_width_and_height_always_change_a_small_image_and_a_dot_is_named(tmp_path):
    from balancer import read_manifest
    from balancer.common.imageio import load

    src = tmp_path / "src"
    for i in range(4):
        write_image(src / "a" / f"{i}.png", textured(12, 20, seed=i))
    write_image(src / "b" / "dot.png", textured(1, 1, seed=9))
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match=r"width=0.3 cannot change 1 of 5 images \(b 1\)"):
        result = build(src, out, BuildSettings(nmin=40, transforms="width,height"), run=ONE)
    assert any(
        "height=0.3 cannot change 1 of 5 images (b 1)" in w for w in result.record["warnings"]
    )
    m = read_manifest(out)
    copies = m[(m.origin == "augmented") & (m.label == "a")]
    assert len(copies) == 36
    for row in copies.itertuples():
        copy = load(out / row.file_name).image
        original = load(src / row.source).image
        assert copy.shape != original.shape, row.file_name  # every copy is resized for real
