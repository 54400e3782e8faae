"""``losskit eval``: score a model's predictions from files, streaming (:func:`losskit.evaluate`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .._errors import LossInputError
from ..tasks import Task
from ._common import CLIError, output_file, require, write_text

EVAL_HINT = "pip install 'losskit[eval]'"


class PredKind(str, Enum):
    logits = "logits"
    probs = "probs"


def _progress(as_json: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class RowsPerSecond(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.0f} rows/s" if task.speed else "", style="cyan")

    console = Console(stderr=True)
    # only on a terminal: a log file or a pipe gets the one-line error or nothing, not bar remnants
    return Progress(TextColumn("scoring"), BarColumn(), TextColumn("{task.completed:,.0f} rows"),
                    RowsPerSecond(), TimeElapsedColumn(), console=console, transient=True,
                    disable=as_json or not console.is_terminal)


def eval_command(
    paths: Annotated[list[Path], typer.Argument(help="Parquet, CSV, NPY or NPZ files, directories or globs.",
                                                 show_default=False, metavar="PATH")],
    pred: Annotated[list[str] | None, typer.Option(
        help="Prediction columns: names or globs (`logit_*`), repeated or comma-separated "
             "[default: the columns named `logit*`, else `prob*`, else `pred*`].", show_default=False)] = None,
    target: Annotated[list[str] | None, typer.Option(
        help="Target column(s); several are a one-hot or multi-hot target "
             "[default: `target`, else the `target_*` columns].", show_default=False)] = None,
    weight: Annotated[str | None, typer.Option(help="Column of per-example weights (as `weight` in every "
                                               "losskit loss).", show_default=False)] = None,
    task: Annotated[Task | None, typer.Option(help="The task [default: detected from the target, "
                                                  "as losskit.head_for does; the reason is printed].",
                                                  show_default=False)] = None,
    loss: Annotated[str | None, typer.Option(help="Any loss of the task's head (e.g. focal, huber, quantile) "
                                             "[default: the task's cross-entropy or squared error].",
                                             show_default=False)] = None,
    pred_kind: Annotated[PredKind | None, typer.Option(help="What the predictions are [default: from the "
                                                       "column names or file metadata, else logits].",
                                                       show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report (tables and "
                                              "figures embedded) to this file.", show_default=False,
                                              metavar="REPORT.html")] = None,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per batch: peak memory is one batch plus "
                                            "the accumulators.")] = 1_000_000,
    dask: Annotated[bool, typer.Option("--dask", help="Score on a new local Dask cluster.")] = False,
    scheduler: Annotated[str | None, typer.Option(help="Score on the running Dask cluster at this address.",
                                                  show_default=False, metavar="ADDRESS")] = None,
    auc_exact_limit: Annotated[int, typer.Option(min=0, help="ROC AUC is exact up to this many scores "
                                                 "(shared by the labels of a multi-label file), binned "
                                                 "beyond it with its error bound printed.")] = 10_000_000,
    calibration: Annotated[Path | None, typer.Option(help="Score the predictions calibrated by this JSON of "
                                                     "losskit calibrate: metrics calibrated, `before` uncalibrated.",
                                                     show_default=False, metavar="CALIBRATION.json")] = None,
) -> None:
    """Score a model's predictions from files: the task's loss and the metrics that go with it.

    Reads the files in batches of --batch-rows (memory does not grow with the files), on one
    process or on Dask workers, and reports per task: **binary** loss, log-loss, accuracy at 0.5,
    ROC AUC, Brier score, expected calibration error and a reliability diagram; **multiclass**
    loss, log-loss, accuracy, top-5 accuracy, ECE, per-class loss/recall/support and a confusion
    matrix; **multilabel** loss, exact match, Hamming loss, per-label loss/accuracy/ROC AUC;
    **regression** loss, MSE, MAE, R^2 and a residual histogram. Weighted means use --weight as
    every losskit loss does. Numbers equal scikit-learn's (ROC AUC exactly up to
    --auc-exact-limit scores, else within the printed bound).

    **Examples**

    ```
    losskit demo --task multiclass && losskit eval losskit-demo/predictions.parquet
    losskit eval preds/*.parquet --pred 'logit_*' --target label --weight w
    losskit eval scores.csv --pred p --pred-kind probs --task binary --json
    losskit eval data/ --html report.html --dask
    losskit eval test.parquet --calibration calibration.json --html report.html
    ```
    """
    require("pyarrow", "losskit eval (its Parquet and CSV reader)")
    from ..evaluation import evaluate
    from ..evaluation import report as _report

    if html is not None:
        output_file(html, "--html")
        require("matplotlib", "losskit eval --html (its figures)")
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task("scoring", total=None)

            def on_progress(done: int, total: int | None) -> None:
                progress.update(bar, completed=done, total=total)

            # evaluate's own body: its errors name this command's flags (evaluate() names its keywords)
            result = evaluate.__wrapped__([str(p) for p in paths], pred=pred or None, target=target or None,
                                          weight=weight, task=task.value if task else None, loss=loss,
                                          pred_kind=pred_kind.value if pred_kind else None, batch_rows=batch_rows,
                                          dask=dask, scheduler=scheduler, auc_exact_limit=auc_exact_limit,
                                          on_progress=on_progress, calibration=calibration)
    except LossInputError as error:
        raise CLIError(str(error)) from None
    except ImportError as error:
        raise CLIError(f"losskit eval needs {error.name}, which is not installed: {EVAL_HINT}") from None
    if html is not None:
        write_text(html, _report.to_html(result))
    if as_json:
        typer.echo(_report.to_json(result), nl=False)
        return
    from rich.console import Console

    console = Console()
    for table in _report.tables(result):
        console.print(table)
    if html is not None:
        console.print(f"wrote {html}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


__all__ = ["eval_command", "register"]
