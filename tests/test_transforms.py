import json

import numpy as np
import pytest

from balancer.errors import BalanceError
from balancer.transforms import PAPER_SET, TRANSFORMS, parse_transforms, replay
from conftest import textured

# Magnitudes that make every transform change a 48x56 image for any draw but cutout's 0.
SMALL = {"crop": 24, "cutout": 20, "blur": 7}
KINDS = {
    "gray8": textured(48, 56, channels=1),
    "bgr8": textured(48, 56, channels=3),
    "bgra8": textured(48, 56, channels=4),
    "bgr16": textured(48, 56, channels=3, dtype=np.uint16),
    "gray16": textured(48, 56, channels=1, dtype=np.uint16),
}


def first_changing_draw(name, image):
    """(output, params, rng seed) for the first seed whose draw is not a no-op (cutout 0)."""
    t = TRANSFORMS[name]
    for seed in range(20):
        out, params = t(image, np.random.default_rng(seed), t.check(SMALL.get(name)))
        if params.get("size", 1) != 0:
            return out, params, seed
    raise AssertionError("no changing draw")


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
    # params are JSON and replay exactly; the same seed draws the same params
    params2 = json.loads(json.dumps(params))
    assert np.array_equal(replay(image, name, params2), out)
    again, params3 = TRANSFORMS[name](image, np.random.default_rng(seed), TRANSFORMS[name].check(SMALL.get(name)))
    assert params3 == params and np.array_equal(again, out)


@pytest.mark.parametrize("name", ["cutout", "contrast"])
def test_colour_only_transforms_leave_alpha_alone(name):
    image = KINDS["bgra8"]
    out, _, _ = first_changing_draw(name, image)
    assert np.array_equal(out[..., 3], image[..., 3])
    assert not np.array_equal(out[..., :3], image[..., :3])


def test_crop_keeps_a_side_smaller_than_the_target_whole():
    image = textured(8, 300)
    out, params = TRANSFORMS["crop"](image, np.random.default_rng(0))
    assert out.shape[:2] == (8, 200) and params["height"] == 8 and params["y"] == 0
    assert np.array_equal(out, image[:, params["x"]:params["x"] + 200])


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
    assert parse_transforms(PAPER_SET) == {"crop": 200, "rotate": 0.125, "cutout": 70,
                                           "width": 0.3, "zoom": 0.3}
    assert parse_transforms("rotate=0.1, zoom=0.2,crop=160") == {"rotate": 0.1, "zoom": 0.2,
                                                               "crop": 160}
    assert list(parse_transforms("all")) == list(TRANSFORMS)
    every = parse_transforms("all,crop=24,cutout=12")
    assert list(every) == list(TRANSFORMS) and every["crop"] == 24 and every["rotate"] == 0.125
    with pytest.raises(BalanceError, match="unknown transform 'sheer'; choose from blur, crop"):
        parse_transforms("rotate,sheer")
    for bad, fragment in [("rotate=2", "rotate"), ("blur=4", "blur"), ("crop=0", "crop"),
                          ("flip=1", "takes no magnitude"), ("zoom=abc", "not a number"),
                          ("crop,crop", "twice"), ("", "no transforms")]:
        with pytest.raises(BalanceError, match=fragment):
            parse_transforms(bad)
