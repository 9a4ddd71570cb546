"""Nothing a user wrote is replaced, nothing is silently mixed: every output goes through one
door (claim, lock, stage, record, complete) and --overwrite or --resume touches only what the
tool itself wrote, proven by content."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from helpers import (
    ONE,
    QUIET,
    SILENT,
    RunOptions,
    assert_one_line_error,
    edit_in_place,
    fake_metrics,
    make_folder,
    run_cli,
    run_process,
    textured,
    tree_digest,
    write_image,
    write_metrics,
)

from balancer import BuildSettings, build, read_manifest, split
from balancer.common.errors import BalanceError, UserError
from balancer.common.ownership import (
    STAGING_MARKER,
    Existing,
    claim,
    claim_file,
    list_files,
    listed_now,
    locked,
    staged,
)
from balancer.common.ownership.staging import _new_staging

BUILT = ["--nmin", "5", "--transforms", "rotate,contrast,flip"]  # the `built` fixture's options


def write_journal(folder: Path, names: list[str]) -> None:
    """The journal (manifest.csv) of copies made in `folder`, listing `names` as they are."""
    from balancer.manifest import COLUMNS, csv_bytes

    rows = [
        {"file_name": n, **listed_now(folder / n).as_dict()} for n in names
    ]  # the other columns are left empty: ownership reads names, sizes and hashes
    (folder / "manifest.csv").write_bytes(csv_bytes(rows, COLUMNS))


def fake_run(folder: Path, classes=("cat", "dog", "owl")) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"model")
    write_metrics(folder, fake_metrics(classes))
    return folder


def bind_mount(source: Path, target: Path) -> bool:
    target.mkdir()
    ok = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    return ok.returncode == 0


def test_output_exists_overwrite_and_dry_run(small_src, tmp_path):
    out = tmp_path / "out"
    dry = build(small_src, out, BuildSettings(nmin=4), dry_run=True, run=QUIET)
    assert not out.exists() and dry.record["files"] == 14 and not dry.written
    build(small_src, out, BuildSettings(nmin=4), run=ONE)
    with pytest.raises(BalanceError, match="not empty"):
        build(small_src, out, BuildSettings(nmin=5), run=QUIET)
    build(small_src, out, BuildSettings(nmin=5), existing=Existing.OVERWRITE, run=ONE)
    assert len(read_manifest(out)) == 16
    stranger = tmp_path / "mine"
    (stranger / "keep.txt").parent.mkdir()
    (stranger / "keep.txt").write_text("precious")
    with pytest.raises(BalanceError, match="neither resumed nor replaced"):
        build(small_src, stranger, BuildSettings(nmin=5), existing=Existing.OVERWRITE, run=QUIET)
    assert (stranger / "keep.txt").read_text() == "precious"


def test_overwrite_refuses_a_folder_that_only_has_a_record_name(small_src, tmp_path):
    for name, content in (
        ("balance.json", '{"anything": 1}'),
        ("balance.json", "not json\x00"),
        ("balance.json", "[1, 2]"),
        ("split.csv", "file_name\n"),
    ):
        out = tmp_path / f"o-{len(content)}-{name}"
        out.mkdir()
        (out / name).write_text(content)
        (out / "photo.jpg").write_bytes(b"precious")
        before = tree_digest(out)
        command = (
            ["build", small_src, "--out", out, "--nmin", "4"]
            if name == "balance.json"
            else ["split", small_src, "--out", out]
        )
        assert_one_line_error(run_cli("balancer", *command, "--overwrite"))
        assert tree_digest(out) == before


def test_overwrite_refuses_an_output_holding_a_users_file_and_deletes_nothing(built, small_src):
    """Ownership is the record's listing, not a suffix: a photo of the user's in a class
    folder is refused like a text file, by --overwrite and --resume alike."""
    photo = textured(20, 20, seed=3)
    for extra in (
        built / "notes.txt",
        built / "runs" / "model.txt",
        built / "cat" / "notes.txt",
        built / "cat" / "my_own_photo.jpg",
        built / "cat" / "cat_000.jpg.part",  # a finished build has no temporaries
    ):
        extra.parent.mkdir(exist_ok=True)
        if extra.suffix == ".jpg":
            write_image(extra, photo)
        else:
            extra.write_text("mine")
        before = tree_digest(built)
        for how in ("--overwrite", "--resume"):
            proc = run_cli("balancer", "build", small_src, "--out", built, "--nmin", "4", how)
            shown = extra.relative_to(built).as_posix()
            assert_one_line_error(proc, repr(shown if extra.parent != built / "runs" else "runs"))
            assert tree_digest(built) == before
        extra.unlink()
        if extra.parent != built and not any(extra.parent.iterdir()):
            extra.parent.rmdir()
    run_cli(
        "balancer", "build", small_src, "--out", built, "--nmin", "4", "--overwrite", check=True
    )
    assert len(pd.read_csv(built / "manifest.csv")) == 6 + 4 + 4


def test_no_output_is_an_input_or_around_one(small_src, tmp_path):
    data = tmp_path / "data"
    small_src.rename(data)
    for out in (tmp_path, data, data / "cat"):
        before = tree_digest(data)
        assert_one_line_error(
            run_cli("balancer", "build", data, "--out", out, "--nmin", "4", "--overwrite"),
            "source folder",
        )
        assert_one_line_error(
            run_cli("trainer", "fit", data, "--out", out, "--overwrite", "--weights", "none"),
            "data folder",
        )
        assert tree_digest(data) == before


def test_evaluate_never_replaces_the_run_it_evaluates(small_src, tmp_path):
    run = fake_run(tmp_path / "runs" / "b0")
    before = tree_digest(run)
    assert_one_line_error(
        run_cli("trainer", "evaluate", run, small_src, "--out", run, "--overwrite"),
        "is the run folder",
    )
    assert_one_line_error(
        run_cli("trainer", "evaluate", run, small_src, "--out", run.parent, "--overwrite"),
        "contains the run folder",
    )
    assert tree_digest(run) == before


def test_fit_overwrite_needs_a_proven_run_folder(small_src, tmp_path):
    for record in ({"class_names": []}, {"tool": "balanced-aug", "kind": "cv"}):
        out = tmp_path / f"run{len(record)}"
        out.mkdir()
        (out / "metrics.json").write_text(json.dumps(record))
        assert_one_line_error(
            run_cli("trainer", "fit", small_src, "--out", out, "--overwrite", "--weights", "none"),
            "metrics.json",
        )
        assert (out / "metrics.json").exists()
    run = fake_run(tmp_path / "real")
    (run / "notes.md").write_text("mine")
    assert_one_line_error(
        run_cli("trainer", "fit", small_src, "--out", run, "--overwrite", "--weights", "none"),
        "'notes.md'",
    )
    assert (run / "notes.md").read_text() == "mine" and (run / "model.keras").exists()


def test_a_second_command_on_a_locked_output_names_the_holder(small_src, tmp_path):
    out = tmp_path / "out"
    with locked(out):
        proc = run_process("balancer", "build", small_src, "--out", out, "--nmin", "4")
        assert_one_line_error(proc, f"in use by process {os.getpid()}")
        proc = run_process("balancer", "split", small_src, "--out", out)
        assert_one_line_error(proc, f"in use by process {os.getpid()}")
    assert not any(out.iterdir())


def test_resume_refuses_a_source_edited_in_place(built, small_src):
    record = json.loads((built / "balance.json").read_text())
    record["status"] = "running"
    (built / "balance.json").write_text(json.dumps(record))
    victim = small_src / "dog" / "dog_001.jpg"
    edit_in_place(victim)  # other bytes, its times set back: size and mtime cannot tell
    before = tree_digest(built)
    proc = run_cli("balancer", "build", small_src, "--out", built, *BUILT, "--resume")
    assert_one_line_error(proc, "source changed", "dog/dog_001.jpg")
    assert tree_digest(built) == before


def test_study_overwrite_clears_only_a_proven_study(tmp_path):
    from balancer.common.ownership import claim
    from trainer.outputs import STUDY

    def _open_study(out, settings, overwrite):  # as run_study opens its folder
        existing = Existing.OVERWRITE if overwrite else Existing.RESUME
        with claim(out, STUDY, inputs={}, existing=existing) as c:
            c.check_resume(settings, "study or data")
            c.begin({"settings": settings})

    out = tmp_path / "study"
    (out / "runs" / "b0").mkdir(parents=True)
    (out / "results.csv").write_text("arm\n")
    record = {"tool": "balanced-aug", "kind": "study", "settings": {"folds": 2}}
    record["files"] = list_files(out, leave_out={"runs"})  # what the study wrote itself
    (out / "study.json").write_text(json.dumps(record))
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    with pytest.raises(BalanceError, match="'notes.txt'"):
        _open_study(out, {"folds": 3}, overwrite=True)
    assert tree_digest(out) == before
    with pytest.raises(UserError, match="other study or data .folds was 2, now 3"):
        (out / "notes.txt").unlink()
        _open_study(out, {"folds": 3}, overwrite=False)
    _open_study(out, {"folds": 3}, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]
    assert json.loads((out / "study.json").read_text())["settings"]["folds"] == 3


def test_run_folders_honour_the_umask(tmp_path):
    from balancer.common.ownership import staged

    old = os.umask(0o022)
    try:
        with staged(tmp_path / "run") as tmp:
            (tmp / "x").write_text("1")
    finally:
        os.umask(old)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


def test_a_killed_split_can_be_resumed_or_overwritten(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 8, "b": 5})
    ref = tmp_path / "ref"
    split(src, ref, test=0.25, seed=1, run=ONE)
    out = tmp_path / "out"
    split(src, out, test=0.25, seed=1, run=ONE)
    record = json.loads((out / "split.json").read_text())
    record["status"] = "running"  # as a kill -9 mid-copy leaves it: split.csv its journal
    (out / "split.json").write_text(json.dumps(record))
    next(out.glob("train/a/*")).unlink()
    (out / "test" / "a" / "x.jpg.part").write_bytes(b"half")
    assert_one_line_error(
        run_cli("balancer", "split", src, "--out", out, "--test", "0.25", "--seed", "1"), "--resume"
    )
    run_cli(
        "balancer",
        "split",
        src,
        "--out",
        out,
        "--test",
        "0.25",
        "--seed",
        "1",
        "--resume",
        check=True,
    )
    assert tree_digest(out) == tree_digest(ref)
    run_cli("balancer", "split", src, "--out", out, "--test", "0.5", "--overwrite", check=True)
    assert pd.read_csv(out / "split.csv").split.value_counts().to_dict() == {"train": 7, "test": 6}


def test_fit_never_deletes_a_sibling_it_did_not_make(tmp_path, no_training):
    from trainer.training import fit

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    runs = tmp_path / "runs"
    mine = runs / ".r.old"  # a user's folder with the name the tool once used for itself
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    lookalike = runs / ".r.abc.partial"  # a staging name, but no marker: not provably ours
    lookalike.mkdir()
    (lookalike / "keep.txt").write_text("mine too")
    stale = _new_staging(runs / "r")  # what a killed `train fit --out runs/r` leaves
    (stale / "model.keras").write_bytes(b"half")
    before = {**tree_digest(mine), **tree_digest(lookalike)}
    fit(data, runs / "r", control=SILENT)
    fit(data, runs / "r", existing=Existing.OVERWRITE, control=SILENT)
    assert {**tree_digest(mine), **tree_digest(lookalike)} == before
    assert not stale.exists(), "our own staging folder is removed on the next run"
    assert sorted(p.name for p in runs.iterdir()) == [".r.abc.partial", ".r.old", "r"]
    assert sorted(p.name for p in (runs / "r").iterdir()) == ["metrics.json", "model.keras"]


def test_a_killed_evaluation_never_blocks_overwriting_its_run(tmp_path, no_training):
    from trainer.outputs import RUN
    from trainer.training import fit

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    run = tmp_path / "run"
    fit(data, run, control=SILENT)
    _new_staging(run / "eval-test")  # a killed `train evaluate run test`
    with claim(run, RUN, inputs={}, existing=Existing.OVERWRITE) as c:
        assert c.previous is not None
    fit(data, run, existing=Existing.OVERWRITE, control=SILENT)
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "model.keras"]


def test_study_overwrite_refuses_a_users_notes_under_runs_and_data(tmp_path):
    from trainer.outputs import STUDY

    out = tmp_path / "study"
    fold = out / "runs" / "efficientnet-b0-focal" / "baseline" / "fold-1"
    fold.mkdir(parents=True)
    (fold / "model.keras").write_bytes(b"m")
    write_metrics(fold, fake_metrics())
    copies = out / "data" / "fold-1" / "rotate"
    write_image(copies / "a" / "x__aug0_rotate.jpg", textured(8, 8))
    write_journal(copies, ["a/x__aug0_rotate.jpg"])
    record = {"tool": "balanced-aug", "kind": "study", "settings": {"folds": 2}}
    (out / "study.json").write_text(json.dumps({**record, "status": "running"}))
    for notes in (
        out / "runs" / "notes.txt",
        out / "runs" / "efficientnet-b0-focal" / "baseline" / "notes.txt",
        fold / "notes.txt",
        out / "data" / "notes.txt",
        copies / "a" / "notes.txt",
        copies / "a" / "my_photo.jpg",
    ):
        notes.write_text("mine")
        before = tree_digest(out)
        with (
            pytest.raises(BalanceError, match="never holds"),
            claim(out, STUDY, inputs={}, existing=Existing.OVERWRITE),
        ):
            pass
        assert tree_digest(out) == before
        notes.unlink()
    with claim(out, STUDY, inputs={}, existing=Existing.OVERWRITE) as c:
        c.begin({"settings": {"folds": 3}})
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]


def test_a_replaced_output_keeps_what_appeared_in_it_meanwhile(tmp_path):
    """Staging replaces the claimed folder whole; anything not provably its own stays."""
    from trainer.outputs import RUN

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"old")
    write_metrics(run, fake_metrics())
    with (
        claim(run, RUN, inputs={}, existing=Existing.OVERWRITE) as c,
        pytest.warns(UserWarning, match="could not prove its own"),
        c.staged() as tmp,
    ):
        (tmp / "model.keras").write_bytes(b"new")
        write_metrics(tmp, fake_metrics())
        (run / "late.txt").write_text("a user's file, written while the run trained")
    assert (run / "model.keras").read_bytes() == b"new"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]
    assert len(kept) == 1 and (kept[0] / "late.txt").read_text().startswith("a user's")
    assert not (kept[0] / STAGING_MARKER).exists() and not (kept[0] / "model.keras").exists()


def test_staging_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(KeyboardInterrupt), staged(tmp_path / "run") as tmp:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_cv_and_study_write_every_file_atomically(tmp_path, no_training, monkeypatch):
    """cv.csv, cv.json and a study's results are each written under a temporary name and
    renamed into place, and the finished record lists each of its own files by content."""
    from trainer.crossval import cross_validate
    from trainer.outputs import STUDY
    from trainer.study.run import _results

    renamed = []
    real = os.replace

    def spy(src, dst):
        renamed.append((Path(src).name, Path(dst).name))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    assert {("cv.csv.part", "cv.csv"), ("cv.json.part", "cv.json")} <= set(renamed)
    record = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert record["files"] == {"cv.csv": listed_now(tmp_path / "cv" / "cv.csv").as_dict()}
    rows = pd.DataFrame(
        {"arm": ["baseline"] * 2, "fold": [1, 2], "model": "b0", "loss": "focal"}
        | {"accuracy": [0.5, 0.6], "macro_f1": [0.4, 0.5], "f1_a": [0.1, 0.2], "f1_b": [0.3, 0.4]}
    )
    settings = {"study": "transforms", "folds": 2, "source": "x"}
    with claim(tmp_path / "s", STUDY, inputs={}) as c:
        c.begin({"settings": settings})
        c.complete({"settings": settings}, files=_results(rows, ["a", "b"], settings, 0.05)[1])
    names = ["results.csv", "results.md", "results.png"]
    assert {(f"{n}.part", n) for n in names} <= set(renamed)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [*names, "study.json"]
    listed = json.loads((tmp_path / "s" / "study.json").read_text())["files"]
    assert listed == {n: listed_now(tmp_path / "s" / n).as_dict() for n in names}


def test_single_file_outputs_never_replace_or_land_inside_an_input(tmp_path):
    src = make_folder(tmp_path / "src", {"cat": 3, "dog": 2})
    (tmp_path / "link").symlink_to(src)
    photo = src / "cat" / "cat_000.jpg"
    before = tree_digest(src)
    for target in (
        photo,
        tmp_path / "link" / "cat" / "cat_000.jpg",
        src / "cat" / ".." / "dog" / "new.png",
        tmp_path / "link" / "sheet.png",
    ):
        for extra in ([], ["--overwrite"]):
            proc = run_cli("balancer", "preview", src, "-o", target, "--transforms", "flip", *extra)
            assert_one_line_error(proc, "lies inside the source folder")
    assert tree_digest(src) == before

    plot = tmp_path / "counts.png"
    plot.write_bytes(b"my picture")
    assert_one_line_error(
        run_cli("balancer", "stats", src, "--plot", plot), "exists", "--overwrite"
    )
    assert plot.read_bytes() == b"my picture"
    assert run_cli("balancer", "stats", src, "--plot", plot, "--overwrite", "-q").returncode == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"

    out = tmp_path / "balanced"
    build(src, out, BuildSettings(nmin=3, transforms="flip"), run=ONE)
    reference = tree_digest(out)
    for target in (out / "manifest.csv", out / "cat" / "plot.png", tmp_path / "balance.json"):
        proc = run_cli("balancer", "stats", src, "--plot", target, "--overwrite")
        assert_one_line_error(proc)
        assert "record" in proc.stderr or "an output of balanced-aug" in proc.stderr
    assert tree_digest(out) == reference


def test_predict_csv_is_refused_before_anything_is_predicted(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"not read")
    (run / "metrics.json").write_text(json.dumps(fake_metrics()))
    images = make_folder(tmp_path / "images", {"x": 2})
    mine = tmp_path / "predictions.csv"
    mine.write_text("my,old,table\n")
    for target, fragment in (
        (mine, "exists"),
        (run / "p.csv", "lies inside the run folder"),
        (images / "x" / "p.csv", "lies inside the images"),
        (images / "x" / "x_000.jpg", "lies inside the images"),
    ):
        proc = run_cli("trainer", "predict", run, images, "--csv", target, "-q")
        assert_one_line_error(proc, fragment)
    assert mine.read_text() == "my,old,table\n"


def test_claim_file_names_each_refusal(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.raises(BalanceError, match="does not exist"):
        claim_file(tmp_path / "missing" / "x.png", inputs={})
    with pytest.raises(BalanceError, match="is a folder"):
        claim_file(folder, inputs={}, overwrite=True)
    with pytest.raises(BalanceError, match="name of a record"):
        claim_file(tmp_path / "split.json", inputs={}, overwrite=True)
    assert claim_file(tmp_path / "x.png", inputs={"folder": folder}) == tmp_path / "x.png"


def test_an_output_inside_the_source_through_a_bind_mount_is_refused(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 3, "b": 2})
    mounted = tmp_path / "mnt"
    if not bind_mount(src, mounted):
        pytest.skip("bind mounts need privileges this machine does not give")
    try:
        before = tree_digest(src)
        for out in (mounted / "out", mounted, mounted / "a"):
            proc = run_cli("balancer", "build", src, "--out", out, "--nmin", "4", "--overwrite")
            assert_one_line_error(proc, "source folder")
        proc = run_cli("balancer", "stats", src, "--plot", mounted / "a" / "p.png")
        assert_one_line_error(proc, "lies inside")
        assert tree_digest(src) == before
    finally:
        subprocess.run(["umount", str(mounted)], check=False)


def test_cv_resumes_only_over_the_same_data(tmp_path, no_training):
    from trainer.crossval import cross_validate

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    before = tree_digest(tmp_path / "cv")
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)  # same data: resumed
    assert tree_digest(tmp_path / "cv")["fold-1/metrics.json"] == before["fold-1/metrics.json"]
    victim = data / "b" / "b_000.jpg"
    original = victim.read_bytes()
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)  # still the same data
    edit_in_place(victim)  # other bytes, times set back
    with pytest.raises(UserError, match="other settings or data .data_digest was"):
        cross_validate(data, tmp_path / "cv", folds=2, control=SILENT)
    with pytest.raises(UserError, match="folds was 2, now 3.*OVERWRITE replaces it") as refused:
        victim.write_bytes(original)
        cross_validate(data, tmp_path / "cv", folds=3, control=SILENT)
    assert "existing=Existing.OVERWRITE replaces it" in str(refused.value)  # the library's words
    assert "--overwrite replaces it" in refused.value.for_command_line()  # the CLI's
    assert tree_digest(tmp_path / "cv") == before
    cross_validate(data, tmp_path / "cv", folds=3, existing=Existing.OVERWRITE, control=SILENT)
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == [
        "cv.csv",
        "cv.json",
        "fold-1",
        "fold-2",
        "fold-3",
    ]


def test_study_resumes_only_over_the_same_data(tmp_path):
    from trainer.config import TrainConfig
    from trainer.data import list_folder
    from trainer.outputs import STUDY
    from trainer.study import StudySpec, transform_arms

    data = make_folder(tmp_path / "data", {"a": 4, "b": 4}, size=16)
    spec = StudySpec(
        kind="transforms",
        arms=tuple(transform_arms({"flip": None})),
        folds=2,
        config=TrainConfig(weights="none"),
    )
    key = spec.key(list_folder(data))
    write_image(data / "a" / "new.jpg", textured(16, 24, seed=7))
    assert spec.key(list_folder(data)) != key
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(
        json.dumps({"tool": "balanced-aug", "kind": "study", "settings": key, "files": {}})
    )
    with (
        pytest.raises(UserError, match="other study or data .data_digest"),
        claim(out, STUDY, inputs={}, existing=Existing.RESUME) as c,
    ):
        c.check_resume(spec.key(list_folder(data)), "study or data")


def test_a_users_own_manifest_leaves_a_plain_folder_plain(tmp_path):
    from balancer.stats import folder_stats
    from trainer.data import list_folder

    src = make_folder(tmp_path / "src", {"a": 4, "b": 3})
    (src / "manifest.csv").write_text("file_name,text\na/a_000.jpg,a cat\n")  # Hugging Face style
    folder = list_folder(src)
    assert not folder.has_manifest and (folder.table.source == folder.table.file).all()
    stats = folder_stats(src, run=QUIET)
    assert not stats["balanced_folder"] and stats["images"] == 7
    proc = run_cli("balancer", "split", src, "--out", tmp_path / "s", "-q")
    assert proc.returncode == 0, proc.stderr


def test_split_refuses_a_balanced_folder(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 4, "b": 2})
    out = tmp_path / "out"
    build(src, out, BuildSettings(nmin=4, transforms="flip"), run=ONE)
    proc = run_cli("balancer", "split", out, "--out", tmp_path / "s")
    assert_one_line_error(proc, "is a balanced folder", "split the source before balancing")
    assert not (tmp_path / "s").exists()


def test_the_space_check_counts_a_block_per_file(tmp_path, monkeypatch):
    from collections import namedtuple

    import balancer.space as space

    src = tmp_path / "src"
    tiny = write_image(src / "a" / "0.png", textured(4, 4)).read_bytes()
    for label in ("a", "b"):
        (src / label).mkdir(exist_ok=True)
        for i in range(50):
            (src / label / f"{i}.png").write_bytes(tiny)
    block = os.statvfs(tmp_path).f_frsize
    files = 2 * 300
    assert len(tiny) * files < block * files / 4  # the bytes alone would fit many times over
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(0, 0, block * files - 1))
    with pytest.raises(BalanceError, match="600 files"):
        build(src, tmp_path / "out", BuildSettings(nmin=300, transforms="flip"), run=ONE)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(0, 0, block * files))
    result = build(
        src, tmp_path / "out", BuildSettings(nmin=300, transforms="flip"), dry_run=True, run=ONE
    )
    assert result.record["estimated_bytes"] == block * files
    assert space.block_size(tmp_path) == block


def test_a_picture_that_fails_never_loses_what_was_written(tmp_path):
    from trainer.outputs import draw_plots

    def fails(path):
        raise MemoryError("no room for the picture")

    def draws(path):
        path.write_bytes(b"png")

    with pytest.warns(UserWarning, match="could not draw confusion_matrix.png .MemoryError"):
        failed = draw_plots(tmp_path, confusion_matrix=fails, curves=draws)
    assert len(failed) == 1 and (tmp_path / "curves.png").read_bytes() == b"png"


def test_a_split_refuses_a_users_photo_in_a_part_and_deletes_nothing(tmp_path):
    src = make_folder(tmp_path / "src", {"a": 6, "b": 4})
    out = tmp_path / "data"
    split(src, out, test=0.25, seed=1, run=ONE)
    write_image(out / "train" / "a" / "my_own_photo.jpg", textured(20, 20, seed=3))
    before = tree_digest(out)
    for how in ("--overwrite", "--resume"):
        proc = run_cli("balancer", "split", src, "--out", out, "--test", "0.25", "--seed", "1", how)
        assert_one_line_error(proc, "'train/a/my_own_photo.jpg'", "does not list it")
        assert tree_digest(out) == before


def test_a_listed_file_or_a_listing_edited_since_is_not_ours(built, small_src):
    """A file under a listed name with other bytes (a user retouched it) is not the one the
    tool wrote, and a listing whose sha256 is not the record's proves nothing."""
    args = ["build", small_src, "--out", built, *BUILT]
    copy = sorted(built.glob("owl/*__aug*"))[0]
    kept = copy.read_bytes()
    edit_in_place(copy)
    before = tree_digest(built)
    for how in ("--overwrite", "--resume"):
        proc = run_cli("balancer", *args, how)
        assert_one_line_error(proc, repr(f"owl/{copy.name}"), "size or sha256")
        assert tree_digest(built) == before
    copy.write_bytes(kept)
    manifest = built / "manifest.csv"
    manifest.write_bytes(manifest.read_bytes().replace(b"contrast", b"flip"))
    before = tree_digest(built)
    assert_one_line_error(run_cli("balancer", *args, "--overwrite"), "manifest.csv was edited")
    assert tree_digest(built) == before


def test_a_run_folder_proves_each_file_by_its_listing(tmp_path):
    """A model.keras of the user's own under the run's name, or a run folder that lists no
    files (an earlier version's), is never replaced: one line names it."""
    from trainer.outputs import RUN

    run = fake_run(tmp_path / "run")
    (run / "model.keras").write_bytes(b"my own fine-tuned model")
    before = tree_digest(run)
    with (
        pytest.raises(BalanceError, match="'model.keras'.*size or sha256"),
        claim(run, RUN, inputs={}, existing=Existing.OVERWRITE),
    ):
        pass
    old = fake_run(tmp_path / "old")
    (old / "metrics.json").write_text(json.dumps(fake_metrics()))  # no listing: version 0.x
    with (
        pytest.raises(BalanceError, match="lists no files"),
        claim(old, RUN, inputs={}, existing=Existing.OVERWRITE),
    ):
        pass
    assert tree_digest(run) == before and (old / "model.keras").read_bytes() == b"model"


def test_files_and_their_listing_are_flushed_before_they_are_relied_on(
    small_src, tmp_path, monkeypatch
):
    """Every file is flushed under its temporary name (by its worker, or with the rest of its
    chunk in one syncfs) before the journal that lists it is flushed, and that before the
    file is renamed into place; the folder is flushed after: a power cut leaves the last whole
    state, never a name with no bytes behind it."""
    import balancer.writing

    events = []
    fsync, fdatasync, replace = os.fsync, os.fdatasync, os.replace
    syncfs = balancer.writing.sync_filesystem

    def spy_fsync(fd, flush=fsync):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return flush(fd)

    def spy_replace(src, dst):
        events.append(("replace", os.fspath(src), os.fspath(dst)))
        return replace(src, dst)

    def spy_syncfs(path):
        events.append(("syncfs",))
        return syncfs(path)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "fdatasync", lambda fd: spy_fsync(fd, fdatasync))
    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(balancer.writing, "sync_filesystem", spy_syncfs)
    out = tmp_path / "out"
    build(small_src, out, BuildSettings(nmin=5, transforms="rotate"), run=ONE)
    renames = [(i, e) for i, e in enumerate(events) if e[0] == "replace"]
    copies = [(i, e) for i, e in renames if "/owl/" in e[2]]
    assert copies, "the owl's copies were renamed into place"
    journal = ("fsync", str(out / "manifest.csv"))
    for i, (_, src, dst) in copies:
        k = max(j for j in range(i) if events[j] == journal)  # the journal flushed, then this
        before = max([j for j in range(k) if events[j] == journal], default=-1)
        assert any(e in (("fsync", src), ("syncfs",)) for e in events[before + 1 : k]), dst
        assert ("fsync", str(Path(dst).parent)) in events[i:], dst
    records = [e for _, e in renames if Path(e[2]).name in ("balance.json", "manifest.csv")]
    assert records and all(("fsync", e[1]) in events for e in records)
    events.clear()  # --no-fsync: nothing flushed, the same bytes
    scratch = RunOptions(workers=1, progress=False, durable=False)
    build(small_src, tmp_path / "fast", BuildSettings(nmin=5, transforms="rotate"), run=scratch)
    assert not [e for e in events if e[0] == "fsync"]
    assert tree_digest(tmp_path / "fast") == tree_digest(out)
