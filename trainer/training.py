"""Fit a model on a class folder: leak-free validation, early stopping, every output written.

Lazy imports: trainer.models and trainer.pipeline are imported where used: they load Keras."""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from balancer.common.atomic import write_atomic
from balancer.common.checks import member, optional
from balancer.common.errors import OVERWRITE, ToolWarning, TrainError, TrainValueError
from balancer.common.ownership import (
    Claim,
    Existing,
    check_inputs,
    claim,
    list_files,
    overlaps,
    stamp,
    write_json,
)
from balancer.common.storage import Place, location
from balancer.manifest import CSV_LINE_END

from . import backend, resume
from .balancing import Balancing, recipe_table
from .callbacks import (
    NoCheckpoint,
    collapse_watch,
    epoch_end_held,
    history_log,
    kept_epoch,
    progress_callbacks,
)
from .compiler import Compiler
from .config import TrainConfig
from .control import RunControl, keras_verbosity
from .data import (
    Parts,
    class_counts,
    describe,
    holdout,
    label_indices,
    list_folder,
    originals_only,
    shared_files,
)
from .evaluation import absent_note, scores
from .outputs import RUN, draw_plots, plot_confusion, plot_curves
from .reuse import Reuse
from .runtime import check_space, fit_multi_worker, is_chief, pad_to, plan_cache
from .runtime import setup as runtime_setup


def train_run(
    parts: Parts,
    class_names: list[str],
    config: TrainConfig,
    folder: Path,
    *,
    control: RunControl | None = None,
    extra: dict | None = None,
    reuse: Reuse | None = None,
) -> dict:
    """Train on `parts.train`, choose on `parts.select`, score once on `parts.scored`, and
    write the model and reports into `folder`.

    The selection part is what early stopping, the best epoch and a plateau schedule watch
    (None: the config chooses nothing, `keep='last'`); the scored part is scored once with
    the weights kept (None: the selection part itself, as in `train fit`, which metrics.json's
    `epoch_rule` says). Returns the scores plus the config, data counts and `extra`, as
    written to metrics.json. `reuse` (a cv's or a study's) hands back the model the previous
    run compiled when nothing that shapes it changed, reset to its start.
    """
    control = control or RunControl()
    config = config.resolved(len(parts.train))  # fit, cv and studies resolve it from DATA first
    train, select, scored = parts
    named, final = parts.named(), parts.checked(chooses=config.chooses)
    progress = control.progress
    keras = backend.keras()
    keras.utils.set_random_seed(config.seed)
    if progress:  # "Epoch n/N" lines in logs too, not only on a terminal (the CLI: stderr)
        keras.config.enable_interactive_logging()
    runtime = runtime_setup(config)
    cache = plan_cache(config.cache, sum(map(len, named.values())), config.size)
    if progress:
        print(cache.describe(), file=sys.stderr)
    train_ds, select_ds, scored_ds = _batches(
        train, (select, scored), class_names, config, cache=cache.on, threads=control.workers
    )
    from .pipeline import reading

    with reading(train_ds, *(d for d in (select_ds, scored_ds) if d is not None)):
        model = _train_model(
            (train_ds, select_ds),
            config,
            folder,
            runtime=runtime,
            train_counts=list(class_counts(train, class_names).values()),
            control=control,
            settings=resume.key(config, named, class_names),
            reuse=reuse,
        )
    model.save(folder / "model.keras")
    files = pd.concat([table.assign(split=name) for name, table in named.items()])
    columns = ["split", "file", "label", "source", "origin"]
    text = files[columns].to_csv(index=False, lineterminator=CSV_LINE_END)
    write_atomic(folder / "files.csv", text.encode("utf-8"))
    from .pipeline import predict

    y_pred = predict(model, scored_ds or select_ds).argmax(axis=1)  # images only
    metrics: dict[str, Any] = dict(scores(label_indices(final, class_names), y_pred, class_names))
    history_table = pd.read_csv(folder / "history.csv")
    metrics.update(
        {
            **kept_epoch(history_table, config, scored_apart=scored is not None),
            "config": config.to_dict(),
            **runtime.describe(),
            "cache": cache.as_dict(),
            "data": {
                "train": describe(train, class_names),
                "validation": describe(final, class_names),  # the part scored
                **({} if select is None else {"selection": describe(select, class_names)}),
            },
            **(extra or {}),
        }
    )
    return _finish(
        folder, metrics, history_table, part="scored fold" if scored is not None else "validation"
    )


def _finish(folder: Path, metrics: dict, history: pd.DataFrame, *, part: str) -> dict:
    """The run folder's pictures, then its record (last: it lists every other file)."""
    title = (
        f"{part}: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}"
        f"{absent_note(metrics)}"
    )
    draw_plots(  # a picture that fails is a warning: the model and its scores are kept
        folder,
        confusion_matrix=lambda path: plot_confusion(
            metrics["confusion_matrix"], metrics["class_names"], path, title=title
        ),
        curves=lambda path: plot_curves(history, path),
    )
    metrics["files"] = list_files(folder, leave_out={RUN.record, resume.FOLDER})
    write_json(folder / RUN.record, stamp(RUN, metrics))
    return metrics


def _batches(
    train: pd.DataFrame,
    others: tuple[pd.DataFrame | None, ...],
    class_names: list[str],
    config: TrainConfig,
    *,
    cache: bool,
    threads: int | None,
) -> tuple[Any, ...]:
    """The training batches (shuffled per epoch, all full), then one unshuffled batches
    object per table of `others` (None for None)."""
    from .pipeline import Batching, ImageBatches, class_weights

    # The batch option is the global batch: split across the replicas.
    common = Batching(
        n_classes=len(class_names),
        size=config.size,
        batch=config.global_batch,
        resize=config.resize,
        cache=cache,
        pad_to=pad_to(),
        threads=threads,
    )
    counts = list(class_counts(train, class_names).values())
    train_ds = ImageBatches.of_table(
        train,
        class_names,
        replace(common, shuffle=True, full=True, seed=config.seed),
        class_weights=class_weights(counts) if config.class_weight == "balanced" else None,
    )
    held = [None if t is None else ImageBatches.of_table(t, class_names, common) for t in others]
    return (train_ds, *held)


def _train_model(
    batches: tuple[Any, Any],
    config: TrainConfig,
    folder: Path,
    *,
    runtime: Any,
    train_counts: list[int],
    control: RunControl,
    settings: dict,
    reuse: Reuse | None = None,
) -> Any:
    """The model with the weights the config keeps (the best epoch's, or the last's): frozen
    base, then (optionally) fine-tuning.

    One checkpoint across both phases, so the model kept is the best epoch of the whole run,
    the one metrics.json names (none with keep='last'). EarlyStopping only stops. Every epoch's end saves what a
    resumed run needs (trainer.resume); a folder holding such a state continues from it."""
    from .models import unfreeze
    from .pipeline import unchanged

    train_ds, val_ds = batches  # (training, the part that chooses or None); a class per count
    progress, n_classes = control.progress, len(train_counts)
    state = resume.load(folder, settings)
    fine_tune = config.freeze_base and config.fine_tune_epochs > 0
    phase, done, stopped = resume.starting_point(state)

    compiler = Compiler(config, runtime, train_counts, steps=len(train_ds), progress=progress)
    model = compiler.model(n_classes, second_phase=phase["phase"] == 2, reuse=reuse)
    check_space(folder, model)
    if runtime.strategy == "MultiWorkerMirroredStrategy" and runtime.replicas > 1:
        fit_multi_worker(model)
    best_weights = folder / "best.weights.h5"
    stateful, checkpoint, saver = progress_callbacks(config, folder, settings, phase)
    if state is not None:
        if progress:
            print(f"{control.label}{resume.where(state, config)}", file=sys.stderr)
        resume.restore(folder, state, model, checkpoint=checkpoint, saver=saver, stateful=stateful)
        train_ds.start_at(done)  # the (seed, epoch) shuffle of the next epoch
    hold, release = epoch_end_held()
    fit_phase = partial(
        model.fit,
        train_ds,
        validation_data=val_ds,
        callbacks=[
            hold,
            unchanged(*(b for b in (train_ds, val_ds) if b is not None)),
            *stateful.values(),
            history_log(folder / "history.csv"),
            collapse_watch(config, label=control.label),
            *([] if isinstance(checkpoint, NoCheckpoint) else [checkpoint]),
            *control.callbacks_for(folder, config),
            saver,  # it records the others' state
            release,  # a Ctrl-C held over the epoch's end lands here
        ],
        verbose=keras_verbosity(progress=progress),
        shuffle=False,  # ImageBatches shuffles
    )
    if phase["phase"] == 1:
        if not stopped and done < config.epochs:
            done += len(fit_phase(initial_epoch=done, epochs=config.epochs).epoch)
        if fine_tune:  # the base joins in, at a tenth of the learning rate
            with runtime.scope():
                unfreeze(model)
                compiler.compile(model, config.rate / 10, config.fine_tune_epochs)
            phase.update(phase=2, phase1_epochs=done)
            stopped = False
    if phase["phase"] == 2:
        end = phase["phase1_epochs"] + config.fine_tune_epochs
        if not stopped and done < end:
            fit_phase(initial_epoch=done, epochs=end)
    if best_weights.exists():
        with warnings.catch_warnings():  # saved beside a first phase's optimizer: not needed
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            model.load_weights(best_weights)
        best_weights.unlink()
    return model  # the resume state goes once the run folder is in place (ownership.staged)


def absent_classes(
    validation: pd.DataFrame, class_names: list[str], train: pd.DataFrame
) -> list[str]:
    """A warning (also returned, for metrics.json) per class with no validation image."""
    present = set(validation.label)
    found = []
    for name in class_names:
        if name not in present:
            n = int((originals_only(train).label == name).sum())
            found.append(
                f"class '{name}' has no validation image ({n} original(s) in all, "
                "all in training): its F1 is not measured and counts as 0 in macro F1"
            )
            warnings.warn(found[-1], ToolWarning, stacklevel=2)
    return found


def fit(
    data: str | Place,
    out: str | Place,
    config: TrainConfig | None = None,
    *,
    val: str | Place | None = None,
    balance: Balancing | None = None,
    existing: Existing = Existing.ERROR,
    callbacks: Sequence = (),
    control: RunControl | None = None,
) -> dict:
    """Train on a class folder; validate on `val` or a grouped split of `data` (originals only).

    `balance`: train on the balanced set `balance build DATA` would write (every class up to
    N_min, one transform per copy; the same split as from that folder), its copies made
    from their originals as their batches are, never written (see trainer.balancing).

    `callbacks`: Keras callbacks of yours, run with the trainer's own (after them, before the
    state a resumed run needs is saved); added to `control`'s. `control`: progress, reading
    threads, TensorBoard logs (RUN/logs); see RunControl.

    The run folder appears whole when training ends, or not at all; an earlier run there is
    replaced only with existing=Existing.OVERWRITE. A killed run is continued from its last
    finished epoch with existing=Existing.RESUME, to the same scores. In multi-worker
    training (TF_CONFIG) only the chief writes it; the other workers' copies are discarded.
    """
    config = optional(config, TrainConfig, "config", "TrainConfig(epochs=30)") or TrainConfig()
    existing = member(existing, Existing, "existing", TrainValueError)
    config.check_weights()
    inputs = {"data folder": location(data), "validation folder": location(val) if val else None}
    if val is not None and overlaps(location(data), location(val)):
        raise TrainError(
            f"the validation folder {val} overlaps the data folder {data}: "
            "validation would not be held out"
        )
    control = optional(control, RunControl, "control", "RunControl(workers=4)") or RunControl()
    control = replace(control, callbacks=(*control.callbacks, *callbacks))
    data_in = DataIn(data, val, optional(balance, Balancing, "balance", "Balancing(nmin=1500)"))
    if not is_chief():
        check_inputs(location(out).resolve(), inputs)
        return _fit_folder(data_in, None, config, control)
    with claim(out, RUN, inputs=inputs, existing=existing) as c:
        if c.resuming:
            raise TrainError(
                f"{c.path} is a finished run: nothing to resume ({OVERWRITE} replaces it)"
            )
        return _fit_folder(data_in, c, config, control)


class DataIn(NamedTuple):
    """What a fit reads: the data folder, a validation folder, and how DATA is balanced."""

    data: str | Place
    val: str | Place | None
    balance: Balancing | None


def _fit_folder(data_in: DataIn, c: Claim | None, config: TrainConfig, control: RunControl) -> dict:
    progress, (data, val, balance) = control.progress, data_in
    folder = list_folder(data, progress=progress)
    table = folder.table
    if balance is not None:
        if folder.has_manifest:
            raise TrainError(
                f"{data} is a balanced folder already: balance its source, or train on it as it is"
            )
        table = recipe_table(folder.scan, balance.settings(config.seed), redraw=balance.redraw)
    config = config.resolved(len(table))
    if val is not None:
        val_folder = list_folder(val, progress=progress)
        train, validation = table, originals_only(val_folder.table)
        label_indices(validation, folder.class_names)  # every validation class must be known
        shared = shared_files(train, validation)
        if shared:
            raise TrainError(
                f"{len(shared)} validation image(s) are also in the training data "
                f"(same bytes: {shared[0][1]} = {shared[0][0]}): validation would "
                "not be held out"
            )
        skipped = folder.skipped + val_folder.skipped
    else:
        train, validation = holdout(table, config.val_split, config.seed)
        skipped = folder.skipped
    extra = {
        "skipped": [s.as_dict() for s in skipped],
        "warnings": absent_classes(validation, folder.class_names, train),
        **({"balance": balance.record()} if balance else {}),
    }
    if c is None:  # a non-chief worker: its copy of the outputs is discarded
        with tempfile.TemporaryDirectory() as tmp:
            return train_run(
                Parts(train, validation),
                folder.class_names,
                config,
                Path(tmp),
                control=control,
                extra=extra,
            )
    with c.staged() as tmp:
        metrics = train_run(
            Parts(train, validation),
            folder.class_names,
            config,
            tmp,
            control=control,
            extra=extra,
        )
    metrics["out"] = str(c.path)
    return metrics
