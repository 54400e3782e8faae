"""``losskit demo``: train one small network per task through losskit's heads, and report."""

from __future__ import annotations

import contextlib
import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .._errors import LossInputError
from ..demo.train import DEFAULTS
from ..tasks import Task
from ._common import (
    CLIError,
    atomic_write,
    atomic_write_all,
    output_dir,
    output_file,
    removed_on_failure,
    require,
    text_writer,
)

DEFAULT_DIR = Path("losskit-demo")


#: ``--task``: every task, or one
TaskChoice = Enum("TaskChoice", {"all": "all", **{task.value: task.value for task in Task}}, type=str)


def _table(result, goal):
    from rich.table import Table

    name, target = goal
    table = Table(title=f"{result.task}: {result.dataset}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("head", f"{result.head} (head_for: {result.reason})")
    table.add_row("units / activation", f"{result.units} / {result.activation}")
    scaled = " (target / its mean)" if result.loss.endswith("Deviance") else " (standardised target)"
    table.add_row("loss", result.loss + (scaled if result.task == "regression" else ""))
    table.add_row("examples", f"{result.n_train} train, {result.n_val} held out, "
                  f"{result.n_features} features")
    table.add_row("epochs", str(result.epochs))
    table.add_row("train loss", f"{result.train_loss[0]:.4f} -> {result.train_loss[-1]:.4f}")
    table.add_row("held-out loss", f"{result.val_loss[0]:.4f} -> {result.val_loss[-1]:.4f}")
    for metric, value in result.metrics.items():
        line = f"{value:.4f}  (predict-the-majority/mean baseline {result.baseline[metric]:.4f})"
        if metric == name:
            met = "[green]met[/green]" if value >= target else "[red]not met[/red]"
            line += f"  goal >= {target}: {met}"
        table.add_row(f"held-out {metric}", line)
    calibration = result.calibration
    if calibration is not None:
        if calibration["temperature"] is None:
            table.add_row("temperature", f"none: {calibration['reason']}")
        else:
            table.add_row("temperature", f"{calibration['temperature']:.4f} (fitted on {calibration['n_calibration']} "
                          f"calibration examples carved from the training data, {calibration['passes']} passes)")
            table.add_row("held-out NLL", f"{calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f} "
                          "(uncalibrated -> calibrated)")
            table.add_row("held-out ECE", f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}")
    table.add_row("time", f"{result.seconds:.2f} s")
    return table


def _loss_list() -> str:
    from ..demo.train import demo_losses

    return "; ".join(f"{task}: {', '.join(demo_losses(task))}" for task in DEFAULTS)


_LOSSES = _loss_list() + " [default: cross-entropy or squared error]."
_EPOCHS = ", ".join(f"{name} {config.epochs}" for name, config in DEFAULTS.items())


def demo(
    task: Annotated[TaskChoice, typer.Option(help="Which task to train.")] = TaskChoice.all,
    epochs: Annotated[int | None, typer.Option(min=1, help=f"Epochs per task [default: {_EPOCHS}].",
                                               show_default=False)] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the split, the initialisation and "
                                      "the mini-batch order.")] = 0,
    loss: Annotated[str | None, typer.Option(help="Any loss of the chosen --task's head: " + _LOSSES,
                                             show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Directory for loss_curves.png, results.json, the held-out "
                                      "predictions (predictions.parquet, or predictions-TASK.parquet for "
                                      "each of several tasks) and the fitted temperatures (calibration.json, "
                                      "or calibration-TASK.json); created if missing, an earlier run's files "
                                      "removed.")] = DEFAULT_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead "
                                          "of tables.")] = False,
) -> None:
    """Train a small NumPy network per task using only losskit heads and their analytic gradients.

    Data sets bundled with losskit: **binary** breast cancer, **multiclass** digits
    (10 classes), **multilabel** four labels of each digit (even, > 4, prime, closed loop),
    **regression** diabetes. The head of each task is chosen by `losskit.head_for` from the
    training targets. Prints a table per task (first and final train / held-out loss, held-out
    metric against a trivial baseline) and writes into --out a PNG of the loss curves, the results
    as JSON and the held-out predictions as Parquet, which `losskit eval` scores.

    **Examples**

    ```
    losskit demo                       # all four tasks, default settings
    losskit demo --task multiclass --epochs 10
    losskit demo --seed 3 --out /tmp/run3
    losskit demo --json > results.json
    losskit demo --task regression --loss huber
    losskit demo --task binary --loss focal
    losskit demo --task multiclass && losskit eval losskit-demo/predictions.parquet
    ```
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    require("matplotlib", "losskit demo (the loss-curve figure)")
    from ..demo import GOALS, TASKS, run
    from ..demo.train import CALIBRATED
    from . import figures
    from .plot import figure_writer

    # typer has checked --task, --epochs and --seed; --out now, before training: fail fast,
    # not after a minute, and write nothing when an option is wrong
    if loss is not None:
        from ..demo.train import check_loss

        if task is TaskChoice.all:
            raise CLIError(f"--loss: expected a single --task with it (each task has its own losses), got "
                           f"--task all and --loss {loss}")
        try:
            check_loss(task.value, loss)
        except LossInputError as error:
            raise CLIError(f"--{error}") from None
    require("pyarrow", "losskit demo (its predictions.parquet)")
    # a directory made for this run is removed again when the run fails or is interrupted (Ctrl-C in training
    # left an empty new directory)
    with removed_on_failure(out):
        directory = output_dir(out)
        tasks = list(TASKS) if task is TaskChoice.all else [task.value]
        prediction_files = {name: directory / prediction_file(name, len(tasks)) for name in tasks}
        calibrations = [directory / calibration_file(name, len(tasks)) for name in tasks if name in CALIBRATED]
        for path in [directory / "loss_curves.png", directory / "results.json", *prediction_files.values(),
                     *calibrations]:
            output_file(path)
        earlier = _earlier_run_files(directory, TASKS)
        start = time.perf_counter()
        results = []
        progress = Progress(TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("train {task.fields[train]:.4f}  held out {task.fields[val]:.4f}"),
                            TimeElapsedColumn(), console=Console(stderr=True), disable=as_json)
        with progress:
            for name in tasks:
                n_epochs = epochs or DEFAULTS[name].epochs
                bar = progress.add_task(name, total=n_epochs, train=float("nan"), val=float("nan"))

                def on_epoch(epoch, train_loss, val_loss, bar=bar):
                    progress.update(bar, completed=epoch, train=train_loss, val=val_loss)

                results.append(run(name, epochs=n_epochs, seed=seed, loss=loss, on_epoch=on_epoch))
        total = time.perf_counter() - start

        curves = directory / "loss_curves.png"
        writes = [(curves, figure_writer(figures.loss_curves(results), "png"))]
        for result in results:
            writes.append((prediction_files[result.task], predictions_writer(result)))
            if result.calibrator is not None:  # beside the predictions: losskit eval ... --calibration FILE
                calibration = directory / calibration_file(result.task, len(tasks))
                writes.append((calibration, text_writer(result.calibrator.to_json())))
        written = [path for path, _ in writes] + [directory / "results.json"]
        report = {"seed": seed, "total_seconds": total, "files": [str(path) for path in written],
                  "tasks": {r.task: r.to_dict() for r in results}}
        writes.append((directory / "results.json", text_writer(json.dumps(report, indent=2) + "\n")))
        atomic_write_all(writes)  # every file of this run, or none
        # an earlier run's predictions or calibration beside this run's are taken for this run's (`losskit eval
        # --calibration` applied a temperature fitted on another seed's network): the files an earlier demo run
        # listed in its results.json, of the demo's own names and unchanged since, that this run did not write are
        # removed once its files are in place (a file the demo did not write, or one another tool rewrote since, a
        # calibration.json of `losskit calibrate`, is kept)
        for path in earlier:
            if path not in written:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console = Console()
    for result in results:
        console.print(_table(result, GOALS[result.task]))
    console.print(f"{len(results)} task(s) in {total:.1f} s; wrote {', '.join(map(str, written))} (score the "
                  f"predictions with `losskit eval`)")


def _own_names(tasks) -> list[str]:
    """Every name of a prediction or calibration file the demo writes, for one task or several."""
    return [name(task, n) for task in tasks for n in (1, len(tasks)) for name in (prediction_file, calibration_file)]


def _earlier_run_files(directory: Path, tasks) -> list[Path]:
    """The prediction and calibration files an earlier demo run wrote into ``directory``: those its
    ``results.json`` lists, of the demo's own names, and not changed since (none when there is no readable
    one). A run writes its files before its ``results.json``, so a listed file modified after it is another
    tool's: a ``losskit calibrate --out calibration.json`` in the same folder was removed (found in review)."""
    record = directory / "results.json"
    try:
        written = record.stat().st_mtime_ns
        listed = json.loads(record.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    names = set(_own_names(tasks))
    paths = [directory / name for name in {Path(str(f)).name for f in listed if isinstance(f, str)} if name in names]
    return [path for path in paths if _unchanged_since(path, written)]


def _unchanged_since(path: Path, time_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns <= time_ns
    except OSError:  # gone already
        return False


def prediction_file(task: str, n_tasks: int) -> str:
    """``predictions.parquet`` for a one-task run, ``predictions-<task>.parquet`` for each of several."""
    return "predictions.parquet" if n_tasks == 1 else f"predictions-{task}.parquet"


def calibration_file(task: str, n_tasks: int) -> str:
    """``calibration.json`` for a one-task run, ``calibration-<task>.json`` for each of several."""
    return "calibration.json" if n_tasks == 1 else f"calibration-{task}.json"


def write_predictions(path: Path, result) -> Path:
    """The held-out predictions of ``result`` as Parquet, with the task and what the predictions are
    in the schema's metadata (``losskit.task``, ``losskit.pred_kind``, ``losskit.loss``)."""
    return atomic_write(path, predictions_writer(result))


def predictions_writer(result):
    """A ``write(temp_path)`` of :func:`write_predictions`' file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..evaluation import _arrow

    metadata = {"losskit.task": result.task, "losskit.loss": result.loss, "losskit.dataset": result.dataset}
    if result.task != "regression":
        metadata["losskit.pred_kind"] = "logits"
    columns = result.predictions  # pa.table(columns) would import pandas (0.5 s): evaluation/_arrow.py
    table = pa.Table.from_arrays([_arrow.to_arrow(v) for v in columns.values()],
                                 names=list(columns)).replace_schema_metadata(metadata)
    def write(temp: str) -> None:
        with open(temp, "wb") as handle:  # (pyarrow encodes a path string as UTF-8: a non-UTF-8 --out failed)
            pq.write_table(table, handle)

    return write


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


__all__ = ["demo", "register"]
