"""What `balance` commands parse and print beyond their options: NAME=COUNT lists and the
text tables of counts and stats."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reports import FolderStats

import typer

from .common.cli import (
    text_table,
)

PAIR = re.compile(r"(.+?)=\s*(\d+)\s*(?:,\s*|$)", re.DOTALL)


def parse_per_class(values: list[str]) -> dict[str, int]:
    """['anger=800', 'fear=700,joy=900', 'a,b=5'] -> {'anger': 800, 'fear': 700, 'joy': 900,
    'a,b': 5}: NAME=COUNT pairs, commas between pairs; a name may hold commas itself (each
    name runs to the next '=COUNT'). typer.BadParameter if malformed."""
    out: dict[str, int] = {}
    for value in values:
        text, at = value.strip(), 0
        while at < len(text):
            found = PAIR.match(text, at)
            if found is None:
                raise typer.BadParameter(
                    f"'{text[at:]}' is not NAME=COUNT", param_hint="--per-class"
                )
            out[found.group(1).strip()] = int(found.group(2))
            at = found.end()
    return out


def counts_table(counts: dict[str, dict]) -> str:
    """Before, copies and after per class, with a total row."""
    return text_table(counts, ["before", "copies", "after"], total=True)


def stats_table(stats: FolderStats) -> str:
    """`balance stats` as a table: one row per class."""
    classes = stats["classes"]
    cols = (
        ["originals", "augmented", "count"]
        if stats["balanced_folder"]
        else ["count", "copies", "after"]
        if "plan" in stats
        else ["count"]
    )
    lines = [text_table(classes, cols, width=9)]
    ratio = f"{stats['imbalance_ratio']:.1f}"
    if stats["balanced_folder"]:
        ratio += f" (originals: {stats['originals_imbalance_ratio']:.1f})"
    planned = " planned (a recipe: none written)" if stats.get("recipe") else ""
    lines.append(f"{stats['images']} images{planned}, imbalance ratio {ratio}")
    if "plan" in stats:
        plan = stats["plan"]
        lines.append(
            f"plan: {plan['copies']} copies to write ({plan['after']} images after), "
            f"about {plan['estimated_bytes'] / 2**20:.1f} MiB"
        )
    return "\n".join(lines)
