"""`train`: the command line over the trainer library. TensorFlow loads only inside commands."""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from pathlib import Path

import typer

from balancer.common.cli import CONTEXT, on_interrupt, report_skipped, run_app, version_flag
from balancer.common.limits import COUNT, WORKERS

from .config import CACHE_SHARE, FOLDS, LIMITS, MODELS, MONITORS, TOP, TrainConfig

RESUMABLE = (
    "the run folder appears only when training ends; the same command with "
    "--resume continues from the last finished epoch"
)
GO_ON = "finished runs are kept: run the same command again to go on"
WORKERS_OPTION = typer.Option(
    None,
    "--workers",
    "-j",
    help=f"Threads that read images ({WORKERS}; default: one per core; a study's copies use as many processes). Scores do not depend on it.",
)


def _existing(overwrite: bool, default: str = "error"):
    """The one value a library call takes for what to do with an existing output."""
    from balancer.common.ownership import Existing

    return Existing.OVERWRITE if overwrite else Existing(default)


app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
)


def logs_to_stderr():
    """Keras' epoch lines and any other chatter go to stderr: stdout is for results (--json)."""
    return contextlib.redirect_stdout(sys.stderr)


_D = TrainConfig()
# The options every training command takes (fit, cv, the studies): one declaration each.
TRAIN_OPTIONS = {
    "model": (str, typer.Option(_D.model, help=f"One of {', '.join(MODELS)}.")),
    "image_size": (
        int | None,
        typer.Option(
            None,
            help=f"Input side in px ({LIMITS['image_size']}; default: the model's native size, 224 for B0).",
        ),
    ),
    "weights": (
        str,
        typer.Option(
            _D.weights,
            help="imagenet (downloaded once, then cached by Keras: `train weights` lists the files), none, or PATH to a weights file (Keras' own .h5 files included).",
        ),
    ),
    "freeze_base": (
        bool,
        typer.Option(False, "--freeze-base", help="Train the head only (the base stays ImageNet)."),
    ),
    "fine_tune_epochs": (
        int,
        typer.Option(
            0,
            help=f"With --freeze-base: then unfreeze and train N more epochs at lr/10 ({LIMITS['fine_tune_epochs']}).",
        ),
    ),
    "dropout": (
        float,
        typer.Option(_D.dropout, help=f"Dropout before the softmax head ({LIMITS['dropout']})."),
    ),
    "loss": (str, typer.Option(_D.loss, help="focal (Keras CategoricalFocalCrossentropy) or ce.")),
    "alpha": (
        str,
        typer.Option(
            _D.alpha,
            help="Focal alpha, or 'balanced' for a per-class alpha from inverse class frequency.",
        ),
    ),
    "gamma": (float, typer.Option(_D.gamma, help=f"Focal gamma ({LIMITS['gamma']}).")),
    "lr": (
        float,
        typer.Option(
            _D.lr,
            help=f"Adam learning rate ({LIMITS['lr']}; for the global batch: scale it yourself when you scale the batch).",
        ),
    ),
    "lr_schedule": (
        str,
        typer.Option(
            _D.lr_schedule,
            help="constant, cosine (to 0 over the run) or plateau (a tenth after a third of --patience without improvement).",
        ),
    ),
    "warmup_epochs": (
        int,
        typer.Option(
            _D.warmup_epochs,
            help=f"Raise the learning rate linearly from 0 over these first epochs ({LIMITS['warmup_epochs']}).",
        ),
    ),
    "class_weight": (
        str,
        typer.Option(
            _D.class_weight,
            help="none, or balanced: each class weighs n / (classes x its count) in the loss (the cheapest baseline beside over-sampling).",
        ),
    ),
    "batch": (
        int,
        typer.Option(
            _D.batch, help=f"Global batch size ({LIMITS['batch']}), split across GPUs/replicas."
        ),
    ),
    "epochs": (int, typer.Option(_D.epochs, help=f"Most epochs ({LIMITS['epochs']}).")),
    "patience": (
        int,
        typer.Option(
            _D.patience,
            help=f"Stop after this many epochs without improvement ({LIMITS['patience']}); the best weights are kept.",
        ),
    ),
    "monitor": (
        str,
        typer.Option(_D.monitor, help=f"What early stopping watches: {', '.join(MONITORS)}."),
    ),
    "val_split": (
        float,
        typer.Option(
            _D.val_split,
            help=f"Validation fraction when no --val folder is given ({LIMITS['val_split']}; grouped by source).",
        ),
    ),
    "seed": (
        int,
        typer.Option(
            _D.seed, help=f"Seed for splits, shuffling and initialisation ({LIMITS['seed']})."
        ),
    ),
    "cache": (
        str,
        typer.Option(
            _D.cache,
            help=f"Keep the decoded inputs in memory after the first epoch: auto (when they take at most {CACHE_SHARE:.0%} of the memory available; one line says which), on or off.",
        ),
    ),
    "resize": (
        str,
        typer.Option(
            _D.resize,
            help="How an image becomes the square input: stretch (Keras' default; undoes most of a width/height copy's change), crop (the centred square) or pad (black bars).",
        ),
    ),
    "precision": (
        str,
        typer.Option(
            _D.precision,
            help="auto (mixed on GPU: bfloat16 where the GPU has it, else float16 with loss scaling; float32 on CPU), mixed or float32.",
        ),
    ),
    "jit": (
        str,
        typer.Option(
            _D.jit,
            help="Compile the training step: auto (XLA on GPU with TensorFlow; always with JAX), on (also torch.compile with PyTorch), off.",
        ),
    ),
    "eager": (
        bool,
        typer.Option(
            False,
            "--eager",
            help="Run Keras eagerly: skips ~30 s of graph tracing per model on CPU, so only for smoke runs on tiny data.",
        ),
    ),
}


def with_train_options(fn=None, *, exclude: tuple[str, ...] = ()):
    """Add TRAIN_OPTIONS (less `exclude`) to a command whose signature ends in **train."""

    def add(fn):
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann)
            for name, (ann, option) in TRAIN_OPTIONS.items()
            if name not in exclude
        ]
        fn.__signature__ = sig.replace(parameters=own + extra)
        return fn

    return add(fn) if fn else add


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
    data: Path = typer.Argument(
        ...,
        metavar="DATA",
        help="Class folder to train on (a balanced OUT or any DATA/<class>/*.jpg).",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="OUT", help="Run folder (default runs/<data>-<model>)."
    ),
    val: Path | None = typer.Option(
        None, help="Validation class folder (default: a grouped split of DATA)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a killed run from its last finished epoch (same options and data): it ends as if never killed.",
    ),
    tensorboard: bool = typer.Option(
        False, "--tensorboard", help="Write TensorBoard logs into the run folder (RUN/logs)."
    ),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json on stdout."),
    **train,
) -> None:
    """Train a model on DATA and score it on held-out originals.

    Writes model.keras (the best epoch), history.csv, metrics.json, confusion_matrix.png
    and curves.png into the run folder, which appears only when training finishes.

    \b
    Example:
      train fit data/balanced --val data/val --out runs/b0
    """
    from .control import RunControl
    from .evaluation import summary
    from .training import fit as fit_run

    config = TrainConfig(**train)
    control = RunControl(progress=not quiet, workers=workers, tensorboard=tensorboard)
    out = out or Path("runs") / f"{Path(data).resolve().name}-{config.model}"
    from balancer.common.ownership import Existing

    existing = Existing.from_flags(resume=resume, overwrite=overwrite)
    with logs_to_stderr(), on_interrupt(RESUMABLE):
        metrics = fit_run(
            data,
            out,
            config,
            val=val,
            existing=existing,
            control=control,
        )
    report_skipped(metrics["skipped"])
    if as_json:
        print(json.dumps(metrics, indent=2))
    elif not quiet:
        print(summary(metrics))
        print(f"run folder: {metrics.get('out', '(written by the chief worker)')}")


@app.command()
@with_train_options(exclude=("val_split",))
def cv(
    data: Path = typer.Argument(
        ..., metavar="DATA", help="Class folder; with a manifest.csv folds are grouped by source."
    ),
    folds: int = typer.Option(5, help=f"Number of folds ({FOLDS})."),
    nmin: int | None = typer.Option(
        None,
        help=f"Balance each fold's training part from its own originals, every class up to N ({COUNT}): the paper's method inside the folds.",
    ),
    transforms: str = typer.Option(
        "paper", help="With --nmin: the transforms of the copies (as `balance build`)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="OUT",
        help="Folder for the folds' runs (default runs/<data>-<model>-cv).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing folder."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print cv.json on stdout."),
    **train,
) -> None:
    """k-fold cross-validation, grouped by source image.

    StratifiedGroupKFold over the originals: no copy of a validation image ever trains, and
    each fold is scored on its untouched originals. With --nmin, each fold's training part
    is balanced from its own originals (the paper's method, inside the folds).

    \b
    Example:
      train cv photos/ --nmin 1500 --transforms crop,rotate,cutout,width,zoom --folds 5
    """
    from .control import RunControl
    from .crossval import cross_validate

    config = TrainConfig(**train)
    control = RunControl(progress=not quiet, workers=workers)
    out = out or Path("runs") / f"{Path(data).resolve().name}-{config.model}-cv"
    with logs_to_stderr(), on_interrupt(GO_ON):
        result = cross_validate(
            data,
            out,
            config,
            folds=folds,
            existing=_existing(overwrite, "resume"),
            control=control,
            nmin=nmin,
            transforms=transforms,
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
    print(f"folder: {result['out']}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder made by `train fit`."),
    data: Path = typer.Argument(
        ..., metavar="DATA", help="Labelled class folder (its originals are scored)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", metavar="OUT", help="Where to write (default RUN/eval-<data>)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier evaluation."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics on stdout."),
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
    with logs_to_stderr(), on_interrupt("nothing was written"):
        metrics = evaluate_run(run, data, out, existing=_existing(overwrite), control=control)
    report_skipped(metrics["data"]["skipped"])
    if as_json:
        print(json.dumps(metrics, indent=2))
    elif not quiet:
        print(summary(metrics))


@app.command()
def predict(
    run: Path = typer.Argument(..., metavar="RUN", help="A run folder made by `train fit`."),
    path: Path = typer.Argument(
        ..., metavar="PATH", help="An image, or a folder of images (any depth)."
    ),
    csv: Path | None = typer.Option(
        None, "--csv", help="Write the predictions here as CSV (default: CSV on stdout)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --csv file."),
    top_k: int = typer.Option(1, help="Also list the next k-1 classes and their probabilities."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings about skipped files."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the predictions as a JSON list on stdout."
    ),
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

    target = None
    if csv:  # refused before anything is predicted
        inputs = {"run folder": run, "images": path}
        target = claim_file(csv, inputs=inputs, overwrite=overwrite, what="CSV file")
    with logs_to_stderr(), on_interrupt("nothing was written"):
        table = predict_run(run, path, top_k=top_k, control=RunControl(workers=workers))
    if not quiet:
        report_skipped(table.attrs["skipped"])
    if as_json:
        print(json.dumps(table.to_dict("records"), indent=2, ensure_ascii=False))
        return
    text = table.to_csv(index=False, float_format="%.6f", lineterminator=CSV_LINE_END)
    if target:
        write_atomic(target, text.encode("utf-8"))
    else:
        sys.stdout.write(text)


@app.command()
def weights(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the missing files' names."),
) -> None:
    """List the ImageNet weights each model needs for `--weights imagenet`, and whether each
    is in Keras' cache.

    Offline, download a file elsewhere and put it in the cache folder shown (or give its path
    as --weights PATH). Keras checks the file's hash before using it.

    \b
    Example:
      train weights
    """
    from .config import MODELS, imagenet_weights

    rows = [imagenet_weights(m) for m in MODELS]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if quiet:
        print("\n".join(r["file"] for r in rows if not r["present"]))
        return
    print(f"Keras' weights cache: {Path(rows[0]['path']).parent}")
    for r in rows:
        print(f"  {r['model']:<16} {r['file']:<55} {'present' if r['present'] else 'missing'}")
    print(f"files come from {rows[0]['url'].rsplit('/', 1)[0]}/<file>")


study_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="The paper's experiments on your data: transform ranking, ablation.",
)
app.add_typer(study_app, name="study")
STUDY_ONLY = ("model", "loss", "val_split")  # lists there; folds, not a split


@study_app.command("transforms")
@with_train_options(exclude=STUDY_ONLY + ("epochs", "patience"))
def study_transforms_cmd(
    src: Path = typer.Argument(
        ..., metavar="SRC", help="Class folder of originals (a balanced folder: its originals)."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        metavar="OUT",
        help="Study folder (resumed when it holds the same study).",
    ),
    epochs: int = typer.Option(30, help="Epochs per run (the paper's Tables 2-3: 30)."),
    patience: int | None = typer.Option(
        None,
        help="Early stopping patience (default: none, every run trains all --epochs, as in the paper's Tables 2-3).",
    ),
    folds: int = typer.Option(5, help=f"Folds ({FOLDS}; grouped by source, stratified)."),
    model: str = typer.Option(
        "efficientnet-b0", help="A model, or several comma-separated (each trains every fold)."
    ),
    loss: str = typer.Option("focal", help="focal, ce, or both comma-separated."),
    transforms: str = typer.Option(
        "all", help="Transforms to rank, NAME[=MAGNITUDE],... or 'all'."
    ),
    top: int = typer.Option(
        5, help=f"How many of the best to suggest for `balance build` ({TOP})."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier study in OUT."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    **train,
) -> None:
    """Rank the transforms by the macro F1 each one adds (the paper's Tables 2-3).

    Each transform alone doubles every fold's training set once; the ranking is by mean
    macro F1 (ties: accuracy, then name), and only transforms whose gain over the baseline,
    fold by fold, is above zero by more than one standard error are suggested for
    `balance build`.

    \b
    Example:
      train study transforms photos/ --out study-t --folds 5 --model efficientnet-b0,vgg16
    """
    from .control import RunControl
    from .study import StudySpec, parse_list, study_transforms

    spec = StudySpec.of_transforms(
        TrainConfig(**train, epochs=epochs, patience=patience or epochs),
        transforms,
        folds=folds,
        models=parse_list(model, "--model"),
        losses=parse_list(loss, "--loss"),
    )
    with logs_to_stderr(), on_interrupt(GO_ON):
        result = study_transforms(
            src,
            out,
            spec,
            top=top,
            existing=_existing(overwrite, "resume"),
            control=RunControl(progress=not quiet, workers=workers),
        )
    if as_json:
        print(
            json.dumps(
                {
                    "summary": result["summary"].to_dict("records"),
                    "ranking": list(result["ranking"].arm),
                    "suggested": result["suggested"],
                },
                indent=2,
            )
        )
        return
    print((Path(out) / "results.md").read_text(encoding="utf-8"))
    if result["suggested"]:
        print(f"suggested: balance build SRC --out OUT --nmin N --transforms {result['suggested']}")
    else:
        print(
            "the study cannot tell: no transform beats the baseline by more than the noise "
            "between folds (its paired gain in macro F1 minus one standard error is not above 0)"
        )


@study_app.command("ablation")
@with_train_options(exclude=STUDY_ONLY)
def study_ablation_cmd(
    src: Path = typer.Argument(..., metavar="SRC", help="Class folder of originals (imbalanced)."),
    nmin: int = typer.Option(
        ..., help=f"N_min: each training fold's classes are brought up to it ({COUNT})."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        metavar="OUT",
        help="Study folder (resumed when it holds the same study).",
    ),
    transforms: str = typer.Option("paper", help="The chosen set T ('paper': the paper's)."),
    every: str = typer.Option(
        "all",
        help="The 'all transforms' arm: 'all', or with magnitude overrides ('all,crop=24,cutout=12').",
    ),
    folds: int = typer.Option(5, help=f"Folds ({FOLDS}; grouped by source, stratified)."),
    model: str = typer.Option(
        "efficientnet-b0", help="A model, or several comma-separated (each trains every fold)."
    ),
    loss: str = typer.Option("focal", help="focal, ce, or both comma-separated."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier study in OUT."),
    workers: int | None = WORKERS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    **train,
) -> None:
    """Baseline, ROS, ROS + all transforms, ROS + T on the same folds (the paper's Table 4).

    Every fold is split first; copies are made from each fold's training originals only.

    \b
    Example:
      train study ablation photos/ --nmin 1500 --out study-a --folds 5
    """
    from .control import RunControl
    from .study import StudySpec, parse_list, run_study

    spec = StudySpec.of_ablation(
        TrainConfig(**train),
        nmin=nmin,
        transforms=transforms,
        every=every,
        folds=folds,
        models=parse_list(model, "--model"),
        losses=parse_list(loss, "--loss"),
    )
    with logs_to_stderr(), on_interrupt(GO_ON):
        summary = run_study(
            spec,
            src,
            out,
            existing=_existing(overwrite, "resume"),
            control=RunControl(progress=not quiet, workers=workers),
        )
    if as_json:
        print(json.dumps(summary.to_dict("records"), indent=2))
    else:
        print((Path(out) / "results.md").read_text(encoding="utf-8"))


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    run_app(app)


if __name__ == "__main__":
    main()
