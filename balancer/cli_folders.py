"""The `balance` commands that divide or check a folder: `split` and `verify` (registered on
the app in balancer.cli).

Lazy imports: each command imports its library module when it runs, as in balancer.cli."""

from __future__ import annotations

import json
import sys

import typer

from .common.cli import (
    fsync_option,
    json_option,
    on_interrupt,
    out_option,
    overwrite_option,
    places,
    quiet_option,
    report_skipped,
    storage_option,
    text_table,
    warn,
    workers_option,
)
from .common.limits import (
    SPLIT_FRACTION,
)

RESUME_HINT = "run the same command with --resume to finish"


def split_cmd(
    src: str = typer.Argument(
        ..., metavar="SRC", help="Source folder: SRC/<class>/<images>; a path or a URL."
    ),
    out: str = out_option(
        "Output folder: OUT/train, OUT/val, OUT/test, OUT/split.csv and OUT/split.json; "
        "a path or a URL."
    ),
    test: float = typer.Option(
        0.2, help=f"Fraction of each class for OUT/test ({SPLIT_FRACTION}; test + val < 1)."
    ),
    val: float = typer.Option(
        0.0, help=f"Fraction of each class for OUT/val ({SPLIT_FRACTION}; none by default)."
    ),
    seed: int = typer.Option(0, help="Seed of the shuffle."),
    link: bool = typer.Option(
        False, "--link", help="Hard-link instead of copying, where possible."
    ),
    workers: int | None = workers_option("Worker processes (default: all cores)."),
    overwrite: bool = overwrite_option("Replace an earlier split in OUT."),
    resume: bool = typer.Option(
        False, "--resume", help="Finish an interrupted split of OUT with the same options."
    ),
    fsync: bool = fsync_option(),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress bar, no table."),
    as_json: bool = json_option("Print the counts as JSON."),
) -> None:
    """Split SRC into train/val/test parts, stratified per class.

    So you balance only OUT/train and evaluate on originals that balancing never saw.

    \b
    Example:
      balance split photos/ --out data/ --test 0.2 --val 0.1
    """
    from .common.ownership import Existing
    from .common.parallel import RunOptions
    from .splitting import split

    run = RunOptions(workers, progress=not quiet, durable=fsync)
    existing = Existing.from_flags(resume=resume, overwrite=overwrite)
    with on_interrupt(RESUME_HINT):
        at = places(storage)
        result = split(
            at(src), at(out), test=test, val=val, seed=seed, link=link, existing=existing, run=run
        )
    for message in result.warnings:
        warn(message)
    report_skipped([s.as_dict() for s in result.skipped])
    if as_json:
        print(
            json.dumps(
                {"out": str(result.out), "counts": result.counts}, indent=2, ensure_ascii=False
            )
        )
    elif not quiet:
        print(text_table(result.counts, ["train", "val", "test"], width=6))
        print(f"wrote {result.out} (split.csv)")


def verify_cmd(
    out: str = typer.Argument(
        ..., metavar="OUT", help="A balanced folder made by `balance build`; a path or a URL."
    ),
    workers: int | None = workers_option("Worker processes for decoding."),
    replay: bool = typer.Option(
        False,
        "--replay",
        help="Also re-render every copy from its original, seed and params, and compare the bytes.",
    ),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress bar."),
    as_json: bool = json_option("Print the report as JSON."),
) -> None:
    """Check a balanced folder; exit 1 naming each problem.

    Records parse, manifest <-> files, labels, counts, every file's sha256, every image
    decodes, nothing at the root that a loader would misread; --replay re-renders every copy.
    A recipe (`build --recipe-only`): its records, and its source unchanged since.

    \b
    Example:
      balance verify data/balanced --replay
    """
    from .common.parallel import RunOptions
    from .verification import verify

    report = verify(
        places(storage)(out), run=RunOptions(workers, progress=not quiet), replay=replay
    )
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for problem in report["problems"]:
            print(f"problem: {problem}", file=sys.stderr)
        state = "ok" if report["ok"] else f"{len(report['problems'])} problem(s)"
        if report.get("recipe"):
            planned = sum(report["classes"].values())
            print(
                f"{out}: a recipe of {planned} files in {len(report['classes'])} classes: {state}"
            )
        else:
            print(f"{out}: {report['files']} files in {len(report['classes'])} classes: {state}")
    if not report["ok"]:
        raise typer.Exit(1)
