"""Every user error is one line on stderr and a non-zero exit, never a traceback, and writes
nothing; every option's range is data, so the help, the error and these edges agree."""

import json
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from helpers import (
    ONE,
    REPO,
    SILENT,
    RunOptions,
    assert_one_line_error,
    make_folder,
    run_cli,
    run_process,
    tree_digest,
)
from typer.testing import CliRunner

import balancer.common.limits as L
from balancer import BuildSettings, build, read_manifest, split
from balancer.common.errors import UserError
from balancer.common.errors import option_name as option
from balancer.preview import as_trained
from balancer.transforms import TRANSFORMS, parse_transforms
from trainer import TrainConfig, fit
from trainer.config import FOLDS, LIMITS, TOP
from trainer.study import StudySpec, study_transforms


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
        if wrong is None and name in ("image_size", "nmin", "workers", "lr", "batch"):
            continue  # None: not given (native size, another target, all cores, automatic)
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


def help_text(app, *args) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("name", sorted(BALANCER))
def test_balancer_options_at_both_edges(name):
    interval, call = BALANCER[name]
    assert_edges(interval, name, call)


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_trainer_options_at_both_edges(name):
    assert_edges(LIMITS[name], name, lambda v: TrainConfig(**{name: v}))


def test_alpha_folds_top_and_the_studys_nmin_at_both_edges(tmp_path):
    from trainer.study import ablation_arms

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


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        pytest.param(
            lambda p: ["build", p.tmp_path / "nope", "--out", p.out, "--nmin", "3"],
            ["source folder not found"],
            id="missing-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src / "cat" / "cat_000.jpg", "--out", p.out, "--nmin", "3"],
            ["not a folder"],
            id="source-is-a-file",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.small_src / "inner", "--nmin", "3"],
            ["inside the source folder"],
            id="out-inside-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.small_src, "--nmin", "3"],
            ["is the source folder"],
            id="out-is-source",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "3", "--transforms", "warp"],
            ["unknown transform 'warp'", "rotate"],
            id="unknown-transform",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out],
            ["--nmin, --target ('majority') or --per-class"],
            id="no-target",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "x"],
            ["--nmin"],
            id="nmin-not-a-number",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--per-class", "cat"],
            ["NAME=COUNT"],
            id="per-class-no-count",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--per-class", "zebra=3"],
            ["zebra"],
            id="per-class-unknown",
        ),
        pytest.param(
            lambda p: ["build", p.small_src, "--out", p.out, "--nmin", "3", "--quality", "0"],
            ["--quality"],
            id="quality-0",
        ),
    ],
)
def test_cli_errors_are_one_line(small_src, tmp_path, make_args, fragments):
    out = tmp_path / "out"
    p = SimpleNamespace(small_src=small_src, out=out, tmp_path=tmp_path)
    assert_one_line_error(run_cli("balancer", *make_args(p)), *fragments)
    assert not out.exists() and not (small_src / "inner").exists()


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        pytest.param(
            lambda p: ["stats", p.tmp_path / "nope"],
            ["source folder not found"],
            id="stats-missing",
        ),
        pytest.param(
            lambda p: ["stats", p.uneven_src, "--nmin", "5", "--target", "majority"],
            ["not both"],
            id="stats-nmin-and-target",
        ),
        pytest.param(
            lambda p: [
                "preview",
                p.uneven_src,
                "-o",
                p.tmp_path / "p.png",
                "--transforms",
                "twirl",
            ],
            ["unknown transform"],
            id="preview-unknown-transform",
        ),
        pytest.param(
            lambda p: ["preview", p.uneven_src, "-o", p.tmp_path / "p.png", "--from-manifest"],
            ["manifest.csv"],
            id="preview-no-manifest",
        ),
        pytest.param(
            lambda p: [
                "split",
                p.uneven_src,
                "--out",
                p.tmp_path / "s",
                "--test",
                "0.7",
                "--val",
                "0.5",
            ],
            ["--test + --val must stay below 1"],
            id="split-fractions",
        ),
        pytest.param(
            lambda p: ["split", p.uneven_src, "--out", p.uneven_src / "a"],
            ["inside the source folder"],
            id="split-inside-source",
        ),
        pytest.param(
            lambda p: ["verify", p.tmp_path / "nope"], ["not a folder"], id="verify-missing"
        ),
    ],
)
def test_companion_errors_are_one_line(uneven_src, tmp_path, make_args, fragments):
    from helpers import assert_one_line_error

    p = SimpleNamespace(uneven_src=uneven_src, tmp_path=tmp_path)
    assert_one_line_error(run_cli("balancer", *make_args(p)), *fragments)
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "make_args, fragments",
    [
        pytest.param(
            lambda p: ["fit", p.tmp_path / "missing"], ["data folder not found"], id="fit-missing"
        ),
        pytest.param(
            lambda p: ["fit", p.one, "--out", p.tmp_path / "r"],
            ["need at least 2"],
            id="fit-one-class",
        ),
        pytest.param(
            lambda p: ["fit", p.balanced, "--out", p.run],
            ["output folder exists", "--overwrite"],
            id="fit-run-exists",
        ),
        pytest.param(
            lambda p: ["fit", p.balanced, "--out", p.balanced / "runs"],
            ["lies inside the data folder"],
            id="fit-out-inside-data",
        ),
        pytest.param(
            lambda p: ["fit", p.balanced, "--model", "efficientnet-b9"],
            ["unknown --model", "efficientnet-b7"],
            id="fit-unknown-model",
        ),
        pytest.param(
            lambda p: ["fit", p.balanced, "--alpha", "lots"], ["--alpha"], id="fit-bad-alpha"
        ),
        pytest.param(
            lambda p: ["fit", p.balanced, "--model", "tiny"],
            ["--weights 'imagenet' do not exist for --model tiny", "from scratch"],
            id="fit-tiny-has-no-imagenet-weights",
        ),
        pytest.param(
            lambda p: ["evaluate", p.tmp_path, p.balanced],
            ["not a run folder"],
            id="evaluate-not-a-run",
        ),
        pytest.param(lambda p: ["cv", p.balanced, "--folds", "1"], ["--folds"], id="cv-one-fold"),
    ],
)
def test_trainer_user_errors_are_one_line(balanced, no_training, tmp_path, make_args, fragments):
    one = make_folder(tmp_path / "one", {"only": 3})
    run = tmp_path / "run"  # a finished run folder (every row fails before training)
    fit(balanced, run, TrainConfig(weights="none", image_size=32), control=SILENT)
    p = SimpleNamespace(balanced=balanced, run=run, tmp_path=tmp_path, one=one)
    assert_one_line_error(run_cli("trainer", *make_args(p)), *fragments)
    assert not (tmp_path / "r").exists() and not (balanced / "runs").exists()


@pytest.mark.slow
def test_imagenet_weights_offline_names_the_way_out(balanced, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no cached weights
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: the download fails
    proc = run_process(  # Keras reads KERAS_HOME when imported: a process of its own
        "trainer",
        "fit",
        balanced,
        "--out",
        tmp_path / "r",
        "--image-size",
        "32",
        "--epochs",
        "1",
        timeout=300,
    )
    assert_one_line_error(
        proc, "ImageNet weights", "efficientnetb0_notop.h5", "--weights none", "--weights PATH"
    )
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))


@pytest.mark.slow
def test_study_user_errors_leave_nothing(study_src, tmp_path):
    one = make_folder(tmp_path / "one", {"only": 4})
    cases = [
        (
            ["study", "ablation", tmp_path / "missing", "--nmin", "5", "--out", tmp_path / "s"],
            ["not found"],
        ),
        (["study", "ablation", one, "--nmin", "5", "--out", tmp_path / "s"], ["need at least 2"]),
        (["study", "ablation", study_src, "--out", tmp_path / "s"], ["--nmin"]),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--model", "alexnet"],
            ["unknown --model"],
        ),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--transforms", "warp"],
            ["unknown transform"],
        ),
        (
            ["study", "transforms", study_src, "--out", tmp_path / "s", "--folds", "30"],
            ["cannot make 30 folds"],
        ),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli("trainer", *args), *fragments)
    offline = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras-home"),  # no cached weights,
        **{v: "http://127.0.0.1:9" for v in ("HTTPS_PROXY", "https_proxy")},
    }  # no download; Keras reads its home when imported: a process of its own
    args = ["study", "transforms", study_src, "--out", tmp_path / "s", "--folds", "2"]
    assert_one_line_error(run_process("trainer", *args, env=offline), "ImageNet weights")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--transforms", "rotate=nan"], "not a finite number"),
        (["--transforms", "zoom=-nan"], "not a finite number"),
        (["--transforms", "crop=inf"], "not a finite number"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**63-1]"),
        (["--nmin", "12345678901234567890"], "--nmin must be an integer in [1, "),
        (["--nmin", "100000000", "--dry-run"], "GiB free"),
        (["--max-image-mb", "0"], "--max-image-mb"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(small_src, tmp_path, option, fragment):
    out = tmp_path / "out"
    args = ["build", small_src, "--out", out, *option]
    if "--nmin" not in option:
        args += ["--nmin", "4"]
    assert_one_line_error(run_cli("balancer", *args), fragment)
    assert not out.exists()


def test_too_many_workers_are_capped_with_a_warning(small_src, tmp_path):
    build = ["build", small_src, "--out", tmp_path / "o", "--nmin", "3", "--quiet"]
    proc = run_cli("balancer", *build, "--workers", "512")
    assert proc.returncode == 0, proc.stderr
    assert "warning: --workers 512 is more than the" in proc.stderr


def test_every_way_in_shares_one_error_door(tmp_path):
    """The tools' error door is their app, not a wrapper around the console script: a run in
    this process (typer's CliRunner, as the error tables use) and one in a new process print
    the same line and exit with the same code; output into a closed pipe ends quietly."""
    from balancer.cli import app as balance

    missing = tmp_path / "missing"
    for args, code, line in (
        (["build", missing, "-o", tmp_path / "o", "--nmin", "3"], 1, "source folder not found"),
        (["build", tmp_path, "-o", tmp_path / "o", "--nmin", "x"], 2, "Invalid value for '--nmin'"),
    ):
        inside, outside = run_cli("balancer", *args), run_process("balancer", *args)
        assert inside.returncode == outside.returncode == code
        assert balance([str(a) for a in args], standalone_mode=False) == code  # a notebook's way
        assert inside.stderr == outside.stderr and inside.stderr.startswith(f"error: {line}")
    assert run_cli("trainer", "evaluate", missing, missing).stderr == (
        run_process("trainer", "evaluate", missing, missing).stderr
    )
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as users have
    for env in (plain, {**plain, "PYTHONUNBUFFERED": "1"}):  # block-buffered, then not
        for tool, args in (("balancer", ["transforms"]), ("trainer", ["--help"])):
            read, write = os.pipe()
            os.close(read)  # `balance transforms | head -0`: the reader is gone at once
            proc = subprocess.run(
                [sys.executable, "-c", f"from {tool}.cli import main; main()", *args],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env=env,
            )
            os.close(write)
            assert (proc.returncode, proc.stderr) == (1, ""), (tool, env.get("PYTHONUNBUFFERED"))


def test_json_and_help_conventions(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    for tool, prog in (("balancer", "balance"), ("trainer", "train")):
        version = subprocess.run(
            [sys.executable, "-m", tool, "--version"], capture_output=True, text=True, cwd=tmp_path
        )
        assert version.returncode == 0 and version.stdout.startswith(f"{prog} 0."), version.stderr
        short = run_cli(tool, "-h")
        assert short.returncode == 0 and "Usage:" in short.stdout
    for command in ("build", "stats", "preview", "split", "verify", "transforms", "materialize"):
        help_text = run_cli("balancer", command, "-h").stdout
        assert "Example:" in help_text and "{" not in help_text.splitlines()[0], command
        assert "--quiet" in help_text, command
    assert "NAME=COUNT" in run_cli("balancer", "build", "-h").stdout
    for command in ("fit", "cv", "evaluate", "predict"):
        help_text = run_cli("trainer", command, "-h").stdout
        assert "Example:" in help_text and "--quiet" in help_text, command
    for command in (("cv",), ("study", "transforms"), ("study", "ablation")):  # inner part
        assert "--val-split" in run_cli("trainer", *command, "-h").stdout, command
    proc = run_cli(
        "balancer", "build", src, "--out", tmp_path / "o", "--nmin", "4", "--json", "-j", "1"
    )
    assert json.loads(proc.stdout)["counts"]["b"]["after"] == 4
    for args in (["stats", src], ["verify", tmp_path / "o"], ["transforms"]):
        assert json.loads(run_cli("balancer", *args, "--json").stdout)


def test_build_stats_and_preview_warn_when_magnitudes_do_not_suit_the_images(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    expected = (
        "warning: crop=200 is as large as the image for 5 of 5 images (a 3, b 2)",
        "warning: cutout=70 can cover more than half of the image for 5 of 5 images",
    )
    paper = ("--transforms", "paper-px")  # the paper's pixels, on 32 x 40 images
    out = tmp_path / "out"
    build = run_cli("balancer", "build", src, "--out", out, "--nmin", "4", "--quiet", *paper)
    stats = run_cli("balancer", "stats", src, *paper)
    preview = run_cli("balancer", "preview", src, "-o", tmp_path / "p.png", *paper)
    for proc in (build, stats, preview):
        assert proc.returncode == 0, proc.stderr
        for line in expected:
            assert (
                line in proc.stderr
                if proc is not preview
                else line.split(" for ")[0] in proc.stderr
            )
    record = json.loads((tmp_path / "out" / "balance.json").read_text())
    assert len(record["warnings"]) == 2
    m = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str, keep_default_na=False)
    crops = [json.loads(p) for p in m.params[m.origin == "augmented"] if '"height"' in p]
    assert crops and all((c["height"], c["width"]) == (28, 36) for c in crops)
    quiet = run_cli(
        "balancer",
        "build",
        src,
        "--out",
        tmp_path / "out2",
        "--nmin",
        "4",
        "--quiet",
    )
    assert quiet.returncode == 0 and "warning" not in quiet.stderr  # the defaults suit them


def test_a_library_error_names_the_librarys_way_on_and_the_cli_its_flag(small_src, tmp_path):
    """The same refusal in each one's words: `existing=Existing.RESUME` for a notebook,
    `--resume` on the command line."""
    out = tmp_path / "out"
    build(small_src, out, BuildSettings(nmin=4), run=ONE)
    with pytest.raises(UserError) as refused:
        build(small_src, out, BuildSettings(nmin=4), run=ONE)
    said = str(refused.value)
    assert "(existing=Existing.RESUME finishes an interrupted run, " in said
    assert "existing=Existing.OVERWRITE replaces it)" in said and "--" not in said
    cli = run_cli("balancer", "build", small_src, "--out", out, "--nmin", "4")
    assert cli.stderr == f"error: {refused.value.for_command_line()}\n"
    assert "(--resume finishes an interrupted run, --overwrite replaces it)" in cli.stderr


def test_enums_flags_and_settings_are_coerced_or_refused_at_the_door(small_src, built, tmp_path):
    """Every public function takes an enum as itself or its value and refuses anything else,
    naming the parameter; the same for flags, settings objects and transform sets."""
    from balancer import RunOptions, split, verify
    from trainer import RunControl, TrainConfig, cross_validate, fit

    settings = BuildSettings(nmin=4, transforms="flip")
    build(small_src, built, settings, existing="overwrite", run=ONE)  # a value: the enum
    assert len(read_manifest(built)) == 6 + 4 + 4
    cases = [
        (lambda: build(small_src, built, settings, existing="bogus"), ValueError, "existing"),
        (lambda: build(small_src, built, settings, existing=1), TypeError, "existing"),
        (lambda: build(small_src, built, {"nmin": 4}), TypeError, "settings"),
        (lambda: build(small_src, built, settings, run={"workers": 1}), TypeError, "run"),
        (lambda: build(small_src, built, settings, dry_run="no"), TypeError, "dry_run"),
        (lambda: BuildSettings(nmin=4, link="no"), TypeError, "link"),
        (lambda: BuildSettings(nmin=4, transforms=None), TypeError, "transforms"),
        (lambda: BuildSettings(nmin=4, per_class=[("cat", 5)]), TypeError, "per_class"),
        (lambda: split(small_src, tmp_path / "s", link="no"), TypeError, "link"),
        (lambda: verify(built, replay="yes"), TypeError, "replay"),
        (lambda: RunOptions(progress="no"), TypeError, "progress"),
        (lambda: RunControl(progress=1), TypeError, "progress"),
        (lambda: fit(small_src, tmp_path / "r", {"epochs": 1}), TypeError, "config"),
        (
            lambda: fit(small_src, tmp_path / "r", TrainConfig(), existing="later"),
            ValueError,
            "existing",
        ),
        (lambda: cross_validate(small_src, tmp_path / "c", control="quiet"), TypeError, "control"),
    ]
    before = tree_digest(built)
    for call, error, parameter in cases:
        with pytest.raises(error, match=rf"\b{parameter}\b"):
            call()
    assert tree_digest(built) == before and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("tf_config", "fragment"),
    [
        ("{not json", "TF_CONFIG is not JSON"),
        ('["worker", 0]', "TF_CONFIG must be like"),
        (
            '{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": "0"}}',
            "task index must be an integer from 0 to 1",
        ),
        (
            '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 3}}',
            "task index must be an integer from 0 to 0",
        ),
        (
            '{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
            "task type 'chief' is not a role",
        ),
        ('{"cluster": {"worker": "h:1"}, "task": {}}', "must be a list of 'host:port'"),
    ],
)
def test_a_malformed_tf_config_is_one_line_before_anything_starts(
    tf_config, fragment, small_src, tmp_path, monkeypatch
):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    proc = run_cli("trainer", "fit", small_src, "--out", tmp_path / "run", "--weights", "none")
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


def test_a_memory_limit_tensorflow_cannot_live_under_is_one_line_within_seconds(
    small_src, tmp_path
):
    """Under `ulimit -d` 600 MiB TensorFlow's threads cannot start: the process would abort,
    crash or hang. It says so in one line before loading it."""
    import resource
    import time

    def limited():
        resource.setrlimit(resource.RLIMIT_DATA, (600 << 20, resource.RLIM_INFINITY))

    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from trainer.cli import main; main()",
            "fit",
            str(small_src),
            "--out",
            str(tmp_path / "run"),
            "--weights",
            "none",
            "--model",
            "tiny",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        preexec_fn=limited,
        timeout=120,
    )
    assert_one_line_error(proc, "at most 600 MiB (RLIMIT_DATA", "raise the limit")
    assert time.monotonic() - started < 30 and not (tmp_path / "run").exists()


def test_cache_auto_counts_the_processs_own_memory_limits():
    """--cache auto measures what this process may still take: a container's limit, and its
    own RLIMIT_AS and RLIMIT_DATA (ulimit -v, -d)."""
    code = (
        "import resource; "
        "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY)); "
        "from trainer.runtime import available_memory, process_room; "
        "print(available_memory(), process_room())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    available, room = map(int, proc.stdout.split())
    assert 0 < room < 6 << 30 and available <= room


def test_a_class_whose_name_holds_a_comma_takes_its_own_count(tmp_path):
    src = make_folder(tmp_path / "src", {"a,b": 3, "c": 2})
    proc = run_cli(
        "balancer",
        "build",
        src,
        "--out",
        tmp_path / "out",
        "--per-class",
        "a,b=5",
        "--per-class",
        "c=4,",
        "--transforms",
        "flip",
        "--dry-run",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["counts"]
    assert {k: v["after"] for k, v in counts.items()} == {"a,b": 5, "c": 4}
    from balancer.cli_tables import parse_per_class

    assert parse_per_class(["fear=700,joy=900", "a,b=5"]) == {"fear": 700, "joy": 900, "a,b": 5}


def test_an_unfinished_build_is_refused_by_every_reader_of_its_manifest(built, tmp_path):
    """While a build runs (or after it was killed) its manifest.csv lists only the files
    written so far: grouping a copy by it, counting by it or showing it would mislead."""
    record = json.loads((built / "balance.json").read_text())
    (built / "balance.json").write_text(json.dumps({**record, "status": "running"}))
    for proc in (
        run_cli("trainer", "fit", built, "--out", tmp_path / "run", "--weights", "none"),
        run_cli("balancer", "stats", built),
        run_cli("balancer", "preview", built, "--from-manifest", "-o", tmp_path / "p.png"),
    ):
        assert_one_line_error(proc, "is an unfinished build", "balance build --resume")
    assert not (tmp_path / "run").exists() and not (tmp_path / "p.png").exists()


def test_a_folder_whose_classes_are_the_tools_outputs_is_refused_naming_the_right_one(
    tmp_path, no_training
):
    """A split's parent, a balanced folder's parent, a run folder: every command that reads a
    class folder refuses them in one line naming the folder to give, and writes nothing; a
    balanced folder is not built again (its copies would become sources)."""
    src = make_folder(tmp_path / "src", {"a": 6, "b": 6}, size=16)
    split(src, tmp_path / "data", test=0.25, val=0.25, run=ONE)
    build(src, tmp_path / "made" / "balanced", BuildSettings(nmin=8), run=ONE)
    fit(tmp_path / "data" / "train", tmp_path / "run", control=SILENT)  # a run folder (faked)
    data, made = tmp_path / "data", tmp_path / "made"
    commands = [
        ("trainer", "fit", "{}", "--out", tmp_path / "o"),
        ("trainer", "cv", "{}", "--out", tmp_path / "o"),
        ("trainer", "study", "transforms", "{}", "--out", tmp_path / "o"),
        ("balancer", "build", "{}", "--out", tmp_path / "o", "--nmin", "8"),
        ("balancer", "stats", "{}"),
    ]
    cases = {
        data: ["is a split output (split.json)", str(data / "train")],
        made: ["folder 'balanced' is itself a build output", str(made / "balanced")],
        tmp_path / "run": ["is a run output (metrics.json)", "not classes"],
    }
    for folder, fragments in cases.items():
        for tool, *args in commands:
            args = [folder if a == "{}" else a for a in args]
            assert_one_line_error(run_cli(tool, *args), *fragments)
            assert not (tmp_path / "o").exists()
    again = run_cli("balancer", "build", made / "balanced", "--out", tmp_path / "o", "--nmin", "9")
    assert_one_line_error(again, "is already a balanced folder (balance.json)", str(src.resolve()))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_transforms("warp"),
        lambda: parse_transforms("rotate=9"),
        lambda: parse_transforms("crop=-1"),
        lambda: parse_transforms("rotate,rotate"),
        lambda: parse_transforms("zoom=big"),
        lambda: TRANSFORMS["flip"].check(3),
        lambda: BuildSettings(nmin=5, transforms="warp"),
    ],
)
def test_a_bad_transform_value_is_a_value_error_from_python(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("command", [("fit",), ("cv",), ("study", "ablation")])
def test_every_training_option_is_described_once_in_the_field_docs(command):
    """One source: each TrainConfig field's doc (FIELD_DOCS) is what the command's help says
    of its option, with its range or choices."""
    import dataclasses

    from trainer.config import CHOICES, FIELD_DOCS

    text = " ".join(run_cli("trainer", *command, "-h").stdout.split())
    for f in dataclasses.fields(TrainConfig):
        if command == ("study", "ablation") and f.name in ("model", "loss"):
            continue  # lists there, with their own help
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert " ".join(FIELD_DOCS[f.name].split()[:6]) in text, f.name
        if f.name in LIMITS:
            assert str(LIMITS[f.name]) in text, f.name
        if f.name in CHOICES and f.name != "model":
            assert ", ".join(CHOICES[f.name]) in text, f.name
