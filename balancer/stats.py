"""Per-class counts, imbalance ratio and the plan's cost, for a source or a balanced folder.

Lazy imports: the builder and the plotting module load only when a plan is costed or a chart
drawn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .common.parallel import RunOptions, pool
from .common.storage import Place
from .manifest import RECIPE, is_balanced_folder, read_manifest, read_record
from .plan import check_target, class_targets, thin_classes
from .reports import ClassStats, FolderStats
from .source import check_source, scan, sizes_by_class
from .transforms import parse_transforms, unsuited


def imbalance_ratio(counts: Mapping[str, int]) -> float:
    """Largest class over smallest (1.0 for a balanced set)."""
    return max(counts.values()) / max(1, min(counts.values()))


def folder_stats(
    folder: str | Place,
    *,
    nmin: int | None = None,
    target: str | None = None,
    per_class: Mapping[str, int] | None = None,
    run: RunOptions = RunOptions(),
    transforms: str | None = None,
) -> FolderStats:
    """Counts per class and the imbalance ratio; with a target, the plan and its disk cost
    (what `balance build` would write, whole blocks per file).

    A balanced folder (the balancer's manifest.csv) is read through its manifest: originals
    and augmented copies per class.
    """
    from .space import block_size, estimate_bytes

    root = check_source(folder)
    chosen = parse_transforms(transforms) if transforms else {}
    if per_class or nmin is not None or target is not None:
        check_target(nmin, target, per_class)
    if is_balanced_folder(root):
        m = read_manifest(root)
        table = m.groupby(["label", "origin"]).size().unstack(fill_value=0)
        classes: dict[str, ClassStats] = {
            label: {
                "originals": int(row.get("original", 0)),
                "augmented": int(row.get("augmented", 0)),
                "count": int(row.get("original", 0) + row.get("augmented", 0)),
            }
            for label, row in table.iterrows()
        }
        record = read_record(root) or {}
        return {
            "folder": str(root),
            "balanced_folder": True,
            "recipe": record.get("status") == RECIPE,
            "classes": classes,
            "images": len(m),
            "imbalance_ratio": imbalance_ratio({k: v["count"] for k, v in classes.items()}),
            "originals_imbalance_ratio": imbalance_ratio(
                {k: v["originals"] for k, v in classes.items()}
            ),
        }
    with pool(run) as p:
        found = scan(root, workers=p.workers, progress=p.progress)
    counts = found.counts()
    result: FolderStats = {
        "folder": str(root),
        "balanced_folder": False,
        "classes": {label: {"count": n} for label, n in counts.items()},
        "images": sum(counts.values()),
        "imbalance_ratio": imbalance_ratio(counts),
        "skipped": found.skipped_list(),
        "empty_classes": found.empty,
        "warnings": unsuited(chosen, sizes_by_class(found)) if chosen else [],
    }
    if nmin is not None or target is not None or per_class:
        targets = class_targets(counts, nmin=nmin, target=target, per_class=per_class)
        for label in found.images:
            entry = result["classes"][label]
            entry["copies"], entry["after"] = targets[label] - counts[label], targets[label]
        result["warnings"] += thin_classes(counts, targets)
        result["plan"] = {
            "copies": sum(targets.values()) - sum(counts.values()),
            "after": sum(targets.values()),
            "estimated_bytes": estimate_bytes(found, targets, link=False, block=block_size(root)),
            "imbalance_ratio_after": imbalance_ratio(targets),
        }
    return result


def plot_counts(stats: FolderStats, path: str | Place, *, overwrite: bool = False) -> None:
    """Bar chart of images per class: before/after a plan, or originals/augmented copies.
    Never written inside the folder it counts, nor over a file unless overwrite=True."""
    from .common.ownership import claim_file
    from .common.plotting import figure_format, save_figure

    target = claim_file(path, inputs={"folder": Path(stats["folder"])}, overwrite=overwrite)
    figure_format(path)
    save_figure(counts_figure(stats), target)


NAMED_CLASSES = 60  # beyond, the chart shows the class index, not each name


def counts_figure(stats: FolderStats) -> Any:
    """The counts chart as a matplotlib figure: one horizontal bar per class, in the folder's
    order from the top, so names of any length and count never overlap (each has its own
    row; the figure grows with the classes, up to a bound, beyond which the names go)."""
    from .common.plotting import pyplot

    plt = pyplot()
    classes = stats["classes"]
    labels = list(classes)
    named = len(labels) <= NAMED_CLASSES
    fig, ax = plt.subplots(figsize=(8, min(16, max(3, 0.28 * len(labels) + 1.5))))
    y = list(range(len(labels)))
    if stats["balanced_folder"]:
        orig = [classes[c]["originals"] for c in labels]
        ax.barh(y, orig, label="originals")
        ax.barh(y, [classes[c]["augmented"] for c in labels], left=orig, label="augmented")
    elif "plan" in stats:
        ax.barh([i - 0.2 for i in y], [classes[c]["count"] for c in labels], 0.4, label="before")
        ax.barh([i + 0.2 for i in y], [classes[c]["after"] for c in labels], 0.4, label="after")
    else:
        ax.barh(y, [classes[c]["count"] for c in labels], label="images")
    if named:
        ax.set_yticks(y, labels, fontsize=9 if len(labels) <= 30 else 6)
    else:
        ax.set_ylabel(f"class (index in sorted order, {len(labels)} classes)")
    ax.invert_yaxis()  # the first class on top, as the folder lists them
    ratio = f"{stats['imbalance_ratio']:.1f}"
    if "plan" in stats:
        ratio += f" -> {stats['plan']['imbalance_ratio_after']:.1f}"
    elif stats["balanced_folder"]:
        ratio = f"{stats['originals_imbalance_ratio']:.1f} (originals) -> {ratio}"
    ax.set(xlabel="images", title=f"{Path(stats['folder']).name}: imbalance ratio {ratio}")
    ax.margins(x=0.12)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
