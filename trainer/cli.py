"""`train`: the command line over the trainer library. TensorFlow loads only inside commands.

Lazy imports: each command imports its library module when it runs: `train --help` loads no
Keras."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from balancer.common.cli import (
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
)
from balancer.common.errors import TrainError
from balancer.common.limits import COUNT

from .cli_options import (
    GO_ON,
    REDRAW_OPTION,
    RESUMABLE,
    STOP_WITHIN,
    TRANSFORMS_OPTION,
    WORKERS_OPTION,
    balancing,
    existing_from,
    logs_to_stderr,
    with_train_options,
)
from .cli_study import study_app
from .config import FOLDS, TrainConfig

app = tool_app()


@app.callback()
def _group(
    version: bool = version_flag("train"),
    keras_backend: str | None = typer.Option(
        None,
        "--backend",
        metavar="NAME",
        help="Keras backend: tensorflow (default), jax or torch (default: $KERAS_BACKEND).",
    ),
) -> None:
    """Train and evaluate image classifiers (EfficientNet with focal loss, as in Jeong & Kim
    2021) on any class folder, a `balance build` output included.

    \b
    Example:
      train --backend jax fit data/balanced
    """
    from .backend import select

    select(keras_backend)


@app.command()
@with_train_options
def fit(
    data: str = typer.Argument(
        ...,
        metavar="DATA",
        help="Class folder to train on (a balanced OUT or any DATA/<class>/*.jpg); a path or a URL.",
    ),
    out: str | None = out_option(
        "Run folder (default runs/<data>-<model>); a path or a URL.", required=False
    ),
    val: str | None = typer.Option(
        None, help="Validation class folder (default: a grouped split of DATA)."
    ),
    nmin: int | None = typer.Option(
        None,
        help=f"Train on the balanced set `balance build DATA --nmin N` would write ({COUNT}), its copies made as their batches are: nothing is written.",
    ),
    transforms: str = TRANSFORMS_OPTION,
    redraw: str | None = REDRAW_OPTION,
    overwrite: bool = overwrite_option("Replace an existing run folder."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a killed run from its last finished epoch (same options and data): it ends as if never killed.",
    ),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Write TensorBoard logs into the run folder (RUN/logs)."
    ),
    workers: int | None = WORKERS_OPTION,
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress output."),
    as_json: bool = json_option("Print metrics.json on stdout."),
    **train: Any,
) -> None:
    """Train a model on DATA and score it on held-out originals.

    Writes model.keras (the best epoch, or the last with --keep last), history.csv,
    metrics.json, confusion_matrix.png and curves.png into the run folder, which appears
    only when training finishes. The validation part chooses the epoch and is scored too:
    a selected score; `train evaluate RUN TEST` on an untouched part is the honest one.

    With --nmin, DATA is a source folder balanced on the fly: the same files and split as
    from `balance build DATA --nmin N` (same --seed), no folder written.

    \b
    Example:
      train fit data/balanced --val data/val --out runs/b0
      train fit photos/ --nmin 1500 --transforms crop,rotate,cutout,width,zoom --redraw epoch
    """
    from .control import RunControl
    from .evaluation import summary
    from .training import fit as fit_run

    config = TrainConfig(**train)
    control = RunControl(progress=not quiet, workers=workers, tensorboard=tensorboard)
    at = places(storage)
    where = at(out) if out else Path("runs") / f"{at(data).resolve().name}-{config.model}"
    from balancer.common.ownership import Existing

    existing = Existing.from_flags(resume=resume, overwrite=overwrite)
    with logs_to_stderr(), on_interrupt(RESUMABLE, deadline=STOP_WITHIN):
        metrics = fit_run(
            at(data),
            where,
            config,
            val=at(val) if val else None,
            balance=balancing(nmin, transforms, redraw),
            existing=existing,
            control=control,
        )
    report_skipped(metrics["skipped"])
    if as_json:
        print(json.dumps(metrics, indent=2))
    elif not quiet:
        print(summary(metrics))
        print(f"scored at: {metrics['epoch_rule']}")
        print(f"run folder: {metrics.get('out', '(written by the chief worker)')}")


@app.command()
@with_train_options()
def cv(
    data: str = typer.Argument(
        ...,
        metavar="DATA",
        help="Class folder; with a manifest.csv folds are grouped by source. A path or a URL.",
    ),
    folds: int = typer.Option(5, help=f"Number of folds ({FOLDS})."),
    nmin: int | None = typer.Option(
        None,
        help=f"Balance each fold's training part from its own originals, every class up to N ({COUNT}): the paper's method inside the folds.",
    ),
    transforms: str = TRANSFORMS_OPTION,
    redraw: str | None = REDRAW_OPTION,
    out: str | None = out_option(
        "Folder for the folds' runs (default runs/<data>-<model>-cv); a path or a URL.",
        required=False,
    ),
    overwrite: bool = overwrite_option("Replace an existing folder."),
    workers: int | None = WORKERS_OPTION,
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No progress output."),
    as_json: bool = json_option("Print cv.json on stdout."),
    **train: Any,
) -> None:
    """k-fold cross-validation, grouped by source image.

    StratifiedGroupKFold over the originals: no copy of a validation image ever trains, and
    each fold is scored once, on its untouched originals. The epoch (early stopping, the
    best --monitor) is chosen on an inner selection part, --val-split of the fold's training
    originals; with --keep last nothing is chosen and there is none. With --nmin, each
    fold's training part is balanced from its own originals (the paper's method, inside
    the folds); the copies are made as their batches are, never written.

    \b
    Example:
      train cv photos/ --nmin 1500 --transforms crop,rotate,cutout,width,zoom --folds 5
    """
    from .control import RunControl
    from .crossval import cross_validate

    config = TrainConfig(**train)
    control = RunControl(progress=not quiet, workers=workers)
    at = places(storage)
    where = at(out) if out else Path("runs") / f"{at(data).resolve().name}-{config.model}-cv"
    with logs_to_stderr(), on_interrupt(GO_ON, deadline=STOP_WITHIN):
        result = cross_validate(
            at(data),
            where,
            config,
            folds=folds,
            existing=existing_from(overwrite=overwrite, default="resume"),
            control=control,
            balance=balancing(nmin, transforms, redraw),
        )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print("fold  accuracy  macro F1")
    for row in result["folds"]:
        absent = (
            f"  (no image of {row['absent_classes']}: counted as 0)"
            if row["absent_classes"]
            else ""
        )
        print(f"{row['fold']:>4}  {row['accuracy']:8.4f}  {row['macro_f1']:8.4f}{absent}")
    a, f = result["accuracy"], result["macro_f1"]
    print(f"mean  {a['mean']:.4f} ± {a['std']:.4f}  {f['mean']:.4f} ± {f['std']:.4f}")
    print(f"scored at: {result['epoch_rule']}")
    print(f"folder: {result['out']}")


@app.command()
def evaluate(
    run: str = typer.Argument(
        ..., metavar="RUN", help="A run folder made by `train fit`; a path or a URL."
    ),
    data: str = typer.Argument(
        ...,
        metavar="DATA",
        help="Labelled class folder (its originals are scored); a path or a URL.",
    ),
    out: str | None = out_option("Where to write (default RUN/eval-<data>).", required=False),
    overwrite: bool = overwrite_option("Replace an earlier evaluation."),
    workers: int | None = WORKERS_OPTION,
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No summary."),
    as_json: bool = json_option("Print the metrics on stdout."),
) -> None:
    """Score a trained model on a held-out folder.

    Writes metrics.json and confusion_matrix.png (default: RUN/eval-<data>).

    \b
    Example:
      train evaluate runs/b0 data/test
    """
    from .control import RunControl
    from .evaluation import evaluate as evaluate_run
    from .evaluation import summary

    control = RunControl(progress=False, workers=workers)
    with logs_to_stderr(), on_interrupt("nothing was written", deadline=STOP_WITHIN):
        at = places(storage)
        metrics = evaluate_run(
            at(run),
            at(data),
            at(out) if out else None,
            existing=existing_from(overwrite=overwrite),
            control=control,
        )
    report_skipped(metrics["data"]["skipped"])
    if as_json:
        print(json.dumps(metrics, indent=2))
    elif not quiet:
        print(summary(metrics))


@app.command()
def predict(
    run: str = typer.Argument(
        ..., metavar="RUN", help="A run folder made by `train fit`; a path or a URL."
    ),
    path: str = typer.Argument(
        ..., metavar="PATH", help="An image, or a folder of images (any depth); a path or a URL."
    ),
    csv: str | None = typer.Option(
        None, "--csv", help="Write the predictions here as CSV (default: CSV on stdout)."
    ),
    overwrite: bool = overwrite_option("Replace an existing --csv file."),
    top_k: int = typer.Option(1, help="Also list the next k-1 classes and their probabilities."),
    workers: int | None = WORKERS_OPTION,
    storage: list[str] = storage_option(),
    quiet: bool = quiet_option("No warnings about skipped files."),
    as_json: bool = json_option("Print the predictions as a JSON list on stdout."),
) -> None:
    """Predict the class of images.

    The predicted class and its probability (and the next k-1) for an image or every image
    under a folder.

    \b
    Example:
      train predict runs/b0 new-photos/ --top-k 3 --csv predictions.csv
    """
    from balancer.common.atomic import write_atomic
    from balancer.common.ownership import claim_file
    from balancer.manifest import CSV_LINE_END

    from .control import RunControl
    from .evaluation import predict as predict_run

    at, target = places(storage), None
    if csv:  # refused before anything is predicted
        inputs = {"run folder": at(run), "images": at(path)}
        target = claim_file(at(csv), inputs=inputs, overwrite=overwrite, what="CSV file")
    with logs_to_stderr(), on_interrupt("nothing was written", deadline=STOP_WITHIN):
        table = predict_run(at(run), at(path), top_k=top_k, control=RunControl(workers=workers))
    if not quiet:
        report_skipped(table.attrs["skipped"])
    text = table.to_csv(index=False, float_format="%.6f", lineterminator=CSV_LINE_END)
    if target:
        write_atomic(target, text.encode("utf-8"))
        if not quiet:
            print(f"wrote {len(table)} prediction(s) to {target}", file=sys.stderr)
    if as_json:
        print(json.dumps(table.to_dict("records"), indent=2, ensure_ascii=False))
    elif not target:
        sys.stdout.write(text)


@app.command()
def weights(
    model: str | None = typer.Option(
        None,
        help="Only these models, comma-separated (default: every model with ImageNet weights).",
    ),
    as_json: bool = json_option("Print the list as JSON."),
    quiet: bool = quiet_option("Only the missing files' names."),
) -> None:
    """List the ImageNet weights each model needs for `--weights imagenet`, and whether each
    is in Keras' cache.

    Offline, download a file elsewhere and put it in the cache folder shown (or give its path
    as --weights PATH). Keras checks the file's hash before using it.

    \b
    Example:
      train weights
    """
    from tqdm.auto import tqdm

    from .config import IMAGENET_MODELS
    from .study import parse_list

    names = IMAGENET_MODELS if model is None else parse_list(model, "--model")
    unknown = [n for n in names if n not in IMAGENET_MODELS]
    if unknown:
        raise TrainError(
            f"no ImageNet weights for {', '.join(unknown)}; models that have them: "
            + ", ".join(IMAGENET_MODELS)
        )
    from .zoo import imagenet_weights  # as Keras asks for each file: its code runs to that call

    shown = tqdm(names, desc="asking Keras", unit=" models", leave=False)
    rows = [imagenet_weights(m) for m in (names if quiet or as_json else shown)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if quiet:
        print("\n".join(r["file"] for r in rows if not r["present"]))
        return
    print(f"Keras' weights cache: {Path(rows[0]['path']).parent}")
    for r in rows:
        state = "present" if r["present"] else "missing"
        print(f"  {r['model']:<18} {state:<8} {r['file']}\n  {'':<18} {'':<8} from {r['url']}")


app.add_typer(study_app, name="study")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    app()


if __name__ == "__main__":
    main()
