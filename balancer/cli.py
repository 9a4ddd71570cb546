"""`balance`: the command line over the balancer library (the only module that parses options)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .cliutil import run_app, warn
from .transforms import PAPER_SET

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Balance an imbalanced image class folder (SRC/<class>/*.jpg) by "
                       "random over-sampling, one random transform per added copy.")

MAX_WARNINGS = 20


@app.callback()
def _group() -> None:
    """Balance an imbalanced image class folder (SRC/<class>/*.jpg) by random over-sampling,
    one random transform per added copy."""


def parse_per_class(values: List[str]) -> dict[str, int]:
    """['anger=800', 'fear=700,joy=900'] -> {'anger': 800, ...}; typer.BadParameter if malformed."""
    out: dict[str, int] = {}
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            label, sep, count = part.rpartition("=")
            if not sep or not label or not count.strip().isdigit():
                raise typer.BadParameter(f"'{part}' is not NAME=COUNT", param_hint="--per-class")
            out[label] = int(count)
    return out


def report_skipped(skipped: list[dict], empty: list[str]) -> None:
    for entry in skipped[:MAX_WARNINGS]:
        warn(f"skipped {entry['path']}: {entry['reason']}")
    if len(skipped) > MAX_WARNINGS:
        warn(f"... and {len(skipped) - MAX_WARNINGS} more skipped files (listed in balance.json)")
    for label in empty:
        warn(f"class folder '{label}' has no usable image; left out")


def counts_table(counts: dict[str, dict]) -> str:
    width = max(5, *(len(c) for c in counts))
    lines = [f"{'class':<{width}}  {'before':>7}  {'copies':>7}  {'after':>7}"]
    for label, c in counts.items():
        lines.append(f"{label:<{width}}  {c['before']:>7}  {c['copies']:>7}  {c['after']:>7}")
    total = {k: sum(c[k] for c in counts.values()) for k in ("before", "copies", "after")}
    lines.append(f"{'total':<{width}}  {total['before']:>7}  {total['copies']:>7}  {total['after']:>7}")
    return "\n".join(lines)


@app.command("build")
def build_cmd(
    src: Path = typer.Argument(..., help="Source folder: SRC/<class>/<images>."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the balanced data set."),
    nmin: Optional[int] = typer.Option(None, help="Bring every class below N up to N (the paper's N_min)."),
    target: Optional[str] = typer.Option(None, help="'majority': bring every class up to the largest."),
    per_class: List[str] = typer.Option([], "--per-class", help="NAME=COUNT for one class (repeatable, or comma-separated)."),
    transforms: str = typer.Option(PAPER_SET, help="Comma-separated transforms, each optionally NAME=MAGNITUDE, or 'all'. See `balance transforms`."),
    seed: int = typer.Option(0, help="Seed for every random choice; the output depends only on SRC, options and seed."),
    quality: int = typer.Option(95, help="JPEG quality of generated copies."),
    link: bool = typer.Option(False, "--link", help="Hard-link originals instead of copying them, where possible."),
    workers: Optional[int] = typer.Option(None, help="Worker processes (default: all cores)."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted build of OUT with the same options."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier balance output in OUT."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; write nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no table."),
    as_json: bool = typer.Option(False, "--json", help="Print the run record (balance.json) on stdout."),
) -> None:
    """Oversample every class below the target; each added copy gets ONE random transform."""
    from .build import build

    try:
        result = build(src, out, nmin=nmin, target=target, per_class=parse_per_class(per_class),
                       transforms=transforms, seed=seed, quality=quality, link=link,
                       workers=workers, resume=resume, overwrite=overwrite, dry_run=dry_run,
                       progress=not quiet)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command with --resume to finish", file=sys.stderr)
        raise typer.Exit(130) from None
    record = result.record
    report_skipped(record["skipped"], record["empty_classes"])
    if as_json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    elif not quiet:
        print(counts_table(record["counts"]))
        if dry_run:
            print(f"dry run: would write {record['files']} files to {result.out}")
        else:
            print(f"wrote {record['files']} files to {result.out} (manifest.csv, balance.json)")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    run_app(app)


if __name__ == "__main__":
    main()
