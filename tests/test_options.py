"""Every option's range is data: the same numbers give the help, the error and these edges.

For each range the value at each end and just beyond it are tried where the option is
checked (a library call, before anything is written): a value outside is a ValueError in
the library's terms (`nmin must be ...`) that the command line shows as its option
(`--nmin must be ...`), a value of the wrong type a TypeError; the command's --help shows
the range in the words the error uses.
"""

import math
import re

import pytest
from typer.testing import CliRunner

import balancer.common.limits as L
from balancer.builder import BuildSettings
from balancer.common.errors import UserError
from balancer.common.errors import option_name as option
from balancer.common.parallel import RunOptions
from balancer.preview import as_trained
from balancer.splitting import split
from balancer.transforms import TRANSFORMS, parse_transforms
from trainer.config import FOLDS, LIMITS, TOP, TrainConfig


def tries(interval):
    """(value, inside?) at and beyond both ends, and the non-finite values for real ranges."""
    found = interval.edges()
    if not interval.integer:
        found += [(math.nan, False), (math.inf, False), (-math.inf, False)]
    return found


def assert_edges(interval, name: str, call) -> None:
    """`name`: the library's parameter; the command line's option is --name-with-dashes."""
    message = re.escape(f"{name} must be {interval}")
    for value, inside in tries(interval):
        if inside:
            try:
                call(value)
            except UserError as exc:  # another check may refuse it later: never this one
                assert not re.search(message, str(exc)), (value, str(exc))
        else:
            with pytest.raises(UserError, match=message) as caught:
                call(value)
            assert isinstance(caught.value, ValueError)
            shown = caught.value.for_command_line()
            assert shown.startswith(option(name) + " must be "), shown
    for wrong in ("1", True, None, [1]):  # not a number: a TypeError naming the parameter
        if wrong is None and name in ("image_size", "nmin", "workers"):
            continue  # None: not given (the model's native size, another target, all cores)
        with pytest.raises(TypeError, match=f"^{re.escape(name)} must be "):
            call(wrong)


BALANCER = {
    "quality": (L.QUALITY, lambda v: BuildSettings(nmin=1, quality=v)),
    "max_image_mb": (L.IMAGE_MB, lambda v: BuildSettings(nmin=1, max_image_mb=v)),
    "seed": (L.SEED, lambda v: BuildSettings(nmin=1, seed=v)),
    "nmin": (L.COUNT, lambda v: BuildSettings(nmin=v)),
    "workers": (L.WORKERS, lambda v: RunOptions(workers=v)),
    "test": (L.SPLIT_FRACTION, lambda v: split("no-such-folder", "o", test=v, val=0)),
    "val": (L.SPLIT_FRACTION, lambda v: split("no-such-folder", "o", test=0, val=v)),
    "image_size": (L.SIDE, lambda v: as_trained("stretch", v)),
}


@pytest.mark.parametrize("name", sorted(BALANCER))
def test_balancer_options_at_both_edges(name):
    interval, call = BALANCER[name]
    assert_edges(interval, name, call)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_trainer_options_at_both_edges(name):
    assert_edges(LIMITS[name], name, lambda v: TrainConfig(**{name: v}))


def test_alpha_folds_top_and_the_studys_nmin_at_both_edges(tmp_path):
    from trainer.study import StudySpec, ablation_arms, study_transforms

    with pytest.raises(ValueError, match="alpha must be a number or 'balanced'"):
        TrainConfig(alpha="some")
    config = TrainConfig(weights="none")
    arms = tuple(ablation_arms({"flip": None}, {"flip": None}))
    assert_edges(FOLDS, "folds", lambda v: StudySpec(kind="x", arms=(), folds=v, config=config))
    assert_edges(
        L.COUNT, "nmin", lambda v: StudySpec(kind="ablation", arms=arms, nmin=v, config=config)
    )
    missing = tmp_path / "missing"
    spec = StudySpec.of_transforms(config, "flip")
    assert_edges(TOP, "top", lambda v: study_transforms(missing, tmp_path / "o", spec, top=v))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", sorted(t for t in TRANSFORMS if TRANSFORMS[t].allowed))
def test_every_magnitude_at_both_edges_and_the_least_that_changes_pixels(name):
    t = TRANSFORMS[name]
    for value, inside in tries(t.allowed):
        if inside:
            assert parse_transforms(f"{name}={value!r}")[name] == value
        else:
            with pytest.raises(UserError, match=f"magnitude for '{name}'"):
                parse_transforms(f"{name}={value!r}")
    if not t.fraction:  # a fraction of the side is at least one pixel: it always changes
        with pytest.raises(UserError, match=re.escape(str(t.allowed))):
            parse_transforms(f"{name}=1e-300")


def test_transform_names_in_any_case_and_errors_quote_what_was_typed():
    assert parse_transforms("Paper") == parse_transforms("paper")
    assert list(parse_transforms("ALL,Crop=24")) == list(TRANSFORMS)
    with pytest.raises(UserError, match="unknown transform 'Rotat'"):
        parse_transforms("crop,Rotat")


def help_text(app, *args) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_help_shows_each_range_in_the_words_of_its_error():
    from balancer.cli import app as balance
    from trainer.cli import app as train

    build_help = help_text(balance, "build")
    for interval in (L.QUALITY, L.IMAGE_MB, L.SEED, L.COUNT, L.WORKERS):
        assert str(interval) in build_help, interval
    assert str(L.ROWS) in help_text(balance, "preview") and str(L.SIDE) in help_text(
        balance, "preview"
    )
    assert str(L.SPLIT_FRACTION) in help_text(balance, "split")
    fit_help = help_text(train, "fit")
    for name, interval in LIMITS.items():
        assert str(interval) in fit_help, name
    assert str(FOLDS) in help_text(train, "cv") and str(TOP) in help_text(
        train, "study", "transforms"
    )
    listing = CliRunner().invoke(balance, ["transforms"], terminal_width=200).output
    for t in TRANSFORMS.values():
        if t.allowed:
            assert str(t.allowed) in " ".join(listing.split()), t.name
