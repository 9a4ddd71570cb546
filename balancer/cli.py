"""`balance`: the command line over the balancer library (the only module that parses options).

Lazy imports: each command imports its library module when it runs: `balance --help` loads
neither OpenCV nor NumPy."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from .cli_folders import RESUME_HINT, split_cmd, verify_cmd
from .cli_tables import counts_table, parse_per_class, stats_table
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
    tool_app,
    version_flag,
    warn,
    workers_option,
)
from .common.limits import (
    COUNT,
    IMAGE_MB,
    JPEG_QUALITY,
    MAX_IMAGE_MB,
    QUALITY,
    ROWS,
    SEED,
    SIDE,
    WORKERS,
)

if TYPE_CHECKING:
    from .builder import BuildResult

app = tool_app()


@app.callback()
def _group(
    version: bool = version_flag("balance"),
) -> None:
    """Balance an imbalanced image class folder (SRC/<class>/*.jpg) by random over-sampling,
    one random transform per added copy."""


@app.command("build")
def build_cmd(
    src: str = typer.Argument(
        ..., metavar="SRC", help="Source folder: SRC/<class>/<images>; a path or a URL."
    ),
    out: str = out_option("Output folder for the balanced data set; a path or a URL."),
    nmin: int | None = typer.Option(
        None, help=f"Bring every class below N up to N (the paper's N_min; {COUNT})."
    ),
    target: str | None = typer.Option(
        None, help="'majority': bring every class up to the largest."
    ),
    per_class: list[str] = typer.Option(
        [],
        "--per-class",
        metavar="NAME=COUNT",
        help="A count for one class (repeatable, or comma-separated).",
    ),
    transforms: str = typer.Option(
        "paper",
        help="Comma-separated transforms, each optionally NAME=MAGNITUDE; 'paper' is the "
        "paper's set T (crop and cutout as fractions of the image: any size), 'paper-px' T at "
        "the paper's pixels (crop 200, cutout 70), 'all' every transform ('all,crop=160' "
        "overrides one). See `balance transforms`.",
    ),
    seed: int = typer.Option(
        0,
        help=f"Seed for every random choice ({SEED}); the output depends only on SRC, options and seed.",
    ),
    quality: int = typer.Option(
        JPEG_QUALITY, help=f"JPEG quality of generated copies ({QUALITY})."
    ),
    link: bool = typer.Option(
        False, "--link", help="Hard-link originals instead of copying them, where possible."
    ),
    workers: int | None = workers_option(f"Worker processes ({WORKERS}; default: all cores)."),
    backend: str = typer.Option(
        "loky", help="loky (this machine) or dask (a cluster: pip install 'balanced-aug[dask]')."
    ),
    scheduler: str | None = typer.Option(
        None,
        help="With --backend dask: the scheduler address (tcp://HOST:8786); without it a local cluster of --workers processes.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Finish an interrupted build of OUT with the same options."
    ),
    overwrite: bool = overwrite_option("Replace an earlier balance output in OUT."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; write nothing."),
    max_image_mb: int = typer.Option(
        MAX_IMAGE_MB,
        "--max-image-mb",
        help=f"Skip images whose decoded pixels would take more than this many MiB ({IMAGE_MB}; width x height x channels x bytes per sample), read from the header before decoding.",
    ),
    space_check: bool = typer.Option(
        True,
        "--space-check/--no-space-check",
        help="Refuse a plan that does not fit in the free disk space.",
    ),
    recipe_only: bool = typer.Option(
        False,
        "--recipe-only",
        help="Write the records alone (balance.json, manifest.csv of every planned file), no image: train on it with `train fit SRC --nmin`, read it with balancer.recipe, or write its files later with `balance materialize OUT`.",
    ),
    fsync: bool = fsync_option(),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress bar, no table."),
    as_json: bool = json_option("Print the run record (balance.json) on stdout."),
) -> None:
    """Balance SRC into OUT: one random transform per added copy.

    Every class below the target gets copies of its images (reused evenly), each with ONE
    transform drawn at random; OUT holds originals and copies, manifest.csv and balance.json.

    \b
    Example:
      balance build data/train --out data/balanced --nmin 1500 --transforms crop,rotate,cutout,width,zoom
      balance build s3://bucket/photos --out s3://bucket/balanced --nmin 1500
    """
    from .builder import BuildSettings, build
    from .common.ownership import Existing
    from .common.parallel import RunOptions

    settings = BuildSettings(
        nmin=nmin,
        target=target,
        per_class=parse_per_class(per_class),
        transforms=transforms,
        seed=seed,
        quality=quality,
        max_image_mb=max_image_mb,
        link=link,
    )
    run = RunOptions(workers, backend, scheduler, progress=not quiet, durable=fsync)
    existing = Existing.from_flags(resume=resume, overwrite=overwrite)
    at = places(storage)
    with on_interrupt(RESUME_HINT):
        result = build(
            at(src),
            at(out),
            settings,
            existing=existing,
            run=run,
            dry_run=dry_run,
            space_check=space_check,
            recipe_only=recipe_only,
        )
    _say_built(result, dry_run=dry_run, quiet=quiet, as_json=as_json)


def _say_built(result: BuildResult, *, dry_run: bool, quiet: bool, as_json: bool) -> None:
    """What `build` and `materialize` print: skipped files, then the record or the table."""
    from .manifest import RECIPE

    record = result.record
    report_skipped(record["skipped"], record["empty_classes"])
    if as_json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    elif not quiet:
        print(counts_table(record["counts"]))
        if dry_run:
            print(f"dry run: would write {record['files']} files to {result.out}")
        elif record["status"] == RECIPE:
            print(
                f"planned {record['files']} files in {result.out} (manifest.csv, balance.json), "
                f"none written: `balance materialize {result.out}` writes them"
            )
        else:
            print(f"wrote {record['files']} files to {result.out} (manifest.csv, balance.json)")


@app.command("materialize")
def materialize_cmd(
    recipe: str = typer.Argument(
        ..., metavar="RECIPE", help="A folder written by `balance build --recipe-only`."
    ),
    workers: int | None = workers_option("Worker processes (default: every core)."),
    fsync: bool = fsync_option(),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress bar, no table."),
    as_json: bool = json_option("Print the run record (balance.json) on stdout."),
) -> None:
    """Write the files a recipe plans, into its folder: the same bytes as a direct build.

    The recipe's source must be the one it was planned from (scanned again, by content);
    an interrupted run is continued by the same command.

    \b
    Example:
      balance materialize data/recipe
    """
    from .builder import materialize
    from .common.parallel import RunOptions

    run = RunOptions(workers, progress=not quiet, durable=fsync)
    with on_interrupt(f"run `balance materialize {recipe}` again to go on"):
        result = materialize(places(storage)(recipe), run=run)
    _say_built(result, dry_run=False, quiet=quiet, as_json=as_json)


@app.command("stats")
def stats_cmd(
    src: str = typer.Argument(
        ...,
        metavar="SRC",
        help="A source folder, or a balanced OUT (read through its manifest); a path or a URL.",
    ),
    nmin: int | None = typer.Option(None, help="Show the plan for bringing every class up to N."),
    target: str | None = typer.Option(
        None, help="'majority': show the plan for bringing every class up to the largest."
    ),
    per_class: list[str] = typer.Option(
        [], "--per-class", metavar="NAME=COUNT", help="A count for one class (repeatable)."
    ),
    transforms: str = typer.Option(
        "paper",
        help="Transforms you plan to use: warns when a magnitude does not suit the images' sizes.",
    ),
    plot: str | None = typer.Option(
        None, help="Write a bar chart of the counts here (.png, .svg, .pdf or .jpg)."
    ),
    overwrite: bool = overwrite_option("Replace an existing --plot file."),
    workers: int | None = workers_option("Worker processes for checking images."),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress bar."),
    as_json: bool = json_option("Print the numbers as JSON."),
) -> None:
    """Counts, imbalance ratio and a build's plan, before you build.

    Images per class, the imbalance ratio, files that would be skipped and why; with a
    target, the plan (copies per class, files to write, estimated disk space).

    \b
    Example:
      balance stats photos/ --nmin 1500 --plot counts.png
    """
    from .common.ownership import claim_file
    from .common.parallel import RunOptions
    from .common.plotting import figure_format
    from .stats import folder_stats, plot_counts

    at = places(storage)
    folder, chart = at(src), at(plot) if plot else None
    if chart:  # refused now, not after the scan
        claim_file(chart, inputs={"folder": folder}, overwrite=overwrite)
        figure_format(chart)
    stats = folder_stats(
        folder,
        nmin=nmin,
        target=target,
        per_class=parse_per_class(per_class),
        run=RunOptions(workers, progress=not quiet),
        transforms=transforms,
    )
    if chart:
        plot_counts(stats, chart, overwrite=overwrite)
    if as_json:
        print(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    report_skipped(stats.get("skipped", []), stats.get("empty_classes", []))
    for message in stats.get("warnings", []):
        warn(message)
    print(stats_table(stats))
    if plot:
        print(f"bar chart: {plot}")


@app.command("preview")
def preview_cmd(
    src: str = typer.Argument(
        ...,
        metavar="SRC",
        help="A source folder (or, with --from-manifest, a balanced OUT); a path or a URL.",
    ),
    out: str = out_option("Image file to write (.png or .jpg); a path or a URL."),
    overwrite: bool = overwrite_option("Replace an existing OUT file."),
    transforms: str = typer.Option(
        "paper", help="Transforms to show, NAME[=MAGNITUDE],..., 'paper', 'paper-px' or 'all'."
    ),
    rows: int = typer.Option(
        4, help=f"Rows: source images, from different classes in turn ({ROWS})."
    ),
    seed: int = typer.Option(0, help="Which images and which draws."),
    from_manifest: bool = typer.Option(
        False,
        "--from-manifest",
        help="Show generated copies of a balanced folder next to their original.",
    ),
    resize: str | None = typer.Option(
        None,
        help="Show every tile as `train --resize MODE` feeds it to the model: stretch, crop or pad.",
    ),
    image_size: int = typer.Option(
        224, help=f"With --resize: the model's input side, as train's --image-size ({SIDE})."
    ),
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No summary line."),
) -> None:
    """A contact sheet of the transforms on your images.

    Each row a source image, then the result of every chosen transform labelled with its
    drawn parameters (or, with --from-manifest, a balanced folder's copies beside their
    original).

    \b
    Example:
      balance preview photos/ --transforms crop=0.8,rotate,cutout=0.25 -o sheet.png
    """
    from .preview import as_stored, as_trained, preview_manifest, preview_transforms
    from .transforms import parse_transforms

    view = as_trained(resize, image_size) if resize else as_stored
    at = places(storage)
    if from_manifest:
        shown = preview_manifest(
            at(src), at(out), rows=rows, seed=seed, view=view, overwrite=overwrite
        )
    else:
        chosen = parse_transforms(transforms)
        shown = preview_transforms(
            at(src), chosen, at(out), rows=rows, seed=seed, view=view, overwrite=overwrite
        )
    if not quiet:
        print(f"wrote {out} ({shown[0]} rows x {shown[1]} tiles)")


app.command("split")(split_cmd)
app.command("verify")(verify_cmd)


@app.command("transforms")
def transforms_cmd(
    as_json: bool = json_option("Print as JSON."),
    quiet: bool = quiet_option("Names only."),
) -> None:
    """List the transforms and their magnitudes.

    What each does, its default magnitude and how to override it.

    \b
    Example:
      balance transforms --json
    """
    from .transforms import PAPER_SET, TRANSFORMS

    info = {
        t.name: {"summary": t.summary, "default": t.default, "magnitude": t.magnitude}
        for t in TRANSFORMS.values()
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return
    if quiet:
        print("\n".join(info))
        return
    for name, t in info.items():
        default = "-" if t["default"] is None else f"{t['default']:g}"
        print(
            f"{name:<10} {t['summary']}\n{'':<10} magnitude: {t['magnitude']}; default {default}"
            + ("" if t["default"] is None else f" (override: --transforms {name}=M)")
        )
    print(f"\nthe paper's set T (--transforms paper, the default): {PAPER_SET}")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    app()


if __name__ == "__main__":
    main()
