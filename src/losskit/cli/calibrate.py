"""``losskit calibrate``: fit a post-hoc calibration on prediction files (streaming, one pass per Newton
step), and ``losskit calibrate apply``: write the calibrated logits."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .._errors import LossInputError
from ..tasks import Task
from ._common import CLIError, output_file, require, write_text
from .eval import EVAL_HINT, PredKind


class MethodName(str, Enum):
    temperature = "temperature"
    temperature_per_label = "temperature_per_label"
    vector = "vector"
    platt = "platt"
    variance = "variance"


def calibrate_command(
    paths: Annotated[list[str], typer.Argument(help="Parquet, CSV, NPY or NPZ files, directories or globs "
                                                    "(`apply PATH...` writes calibrated logits instead).",
                                               show_default=False, metavar="[apply] PATH")],
    out: Annotated[Path, typer.Option(help="Where to write: the calibration's JSON (fit), or the calibrated "
                                           "Parquet file (apply; CSV if FILE ends in .csv).",
                                      show_default=False, metavar="FILE")],
    pred: Annotated[list[str] | None, typer.Option(
        help="Prediction (logit) columns: names or globs, as in losskit eval [default: `logit*`].",
        show_default=False)] = None,
    target: Annotated[list[str] | None, typer.Option(
        help="Target column(s) [default: `target`, else the `target_*` columns].", show_default=False)] = None,
    weight: Annotated[str | None, typer.Option(help="Column of per-example weights.", show_default=False)] = None,
    task: Annotated[Task | None, typer.Option(help="The task [default: detected from the target, as "
                                                       "losskit eval does].", show_default=False)] = None,
    pred_kind: Annotated[PredKind | None, typer.Option(help="logits: the prediction columns hold logits, whatever "
                                                            "their names say (calibration rescales logits: "
                                                            "probabilities are refused) [default: from the column "
                                                            "names or the file's metadata].",
                                                       show_default=False)] = None,
    method: Annotated[MethodName, typer.Option(help="temperature (every classification task), "
                                                    "temperature_per_label (multi-label), vector (multi-class), "
                                                    "platt (binary), variance (Gaussian heads).")
                      ] = MethodName.temperature,
    l2: Annotated[float, typer.Option(min=0.0, help="Penalty l2/2 |b|^2 on vector scaling's offsets.")] = 0.0,
    calibration: Annotated[Path | None, typer.Option(help="apply: the calibration JSON to apply.",
                                                     show_default=False, metavar="CALIBRATION.json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per batch: peak memory is a few batches.")
                          ] = 1_000_000,
    dask: Annotated[bool, typer.Option("--dask", help="Fit on a new local Dask cluster.")] = False,
    scheduler: Annotated[str | None, typer.Option(help="Fit on the running Dask cluster at this address.",
                                                  show_default=False, metavar="ADDRESS")] = None,
) -> None:
    """Fit a post-hoc calibration of a model's logits on prediction files: Newton's method on the exact
    gradient and Hessian of the weighted NLL, each step one streaming pass over the files (constant
    memory; on Dask workers with --dask / --scheduler). Prints the parameters, the NLL and ECE before
    and after, and the number of passes; writes the calibration as JSON to --out, which
    `losskit eval --calibration` and `losskit calibrate apply` read.

    **Examples**

    ```
    losskit calibrate val/*.parquet --out calibration.json
    losskit calibrate val.parquet --pred 'logit_*' --target label --method vector --l2 0.01 --out cal.json
    losskit eval test.parquet --calibration calibration.json --html report.html
    losskit calibrate apply test.parquet --calibration calibration.json --out calibrated.parquet
    ```
    """
    require("pyarrow", "losskit calibrate (its Parquet and CSV reader)")
    output_file(out, "--out")
    # `apply` is the subcommand unless it names a file to fit on; with --calibration (apply's input, which a fit
    # refuses) it is the subcommand even then (a file named apply in the working directory made it a fit)
    if paths and paths[0] == "apply" and (calibration is not None or not Path("apply").exists()):
        # the options of a fit mean nothing to apply: refused, not ignored (--weight no_such_col wrote a file)
        ignored = {"--target": target, "--weight": weight, "--task": task, "--dask": dask or None,
                   "--scheduler": scheduler, "--l2": l2 or None,
                   "--method": None if method is MethodName.temperature else method.value}
        for option, value in ignored.items():
            if value:
                given = option if value is True else f"{option} {value.value if isinstance(value, Enum) else value}"
                raise CLIError(f"{option}: expected no {option} with `losskit calibrate apply` (the calibration "
                               f"JSON holds the fitted map; {option} is an option of the fit), got {given}")
        _apply(paths[1:], out, calibration, pred, batch_rows, as_json, pred_kind.value if pred_kind else None)
        return
    if l2 != 0 and method.value != "vector":
        raise CLIError(f"--l2: expected no --l2 for --method {method.value} (it penalises vector scaling's offsets), "
                       f"got --l2 {l2:g}")
    if calibration is not None:
        raise CLIError("--calibration: expected no --calibration when fitting (it is the input of "
                       "`losskit calibrate apply`), got one")
    from ..evaluation.calibration import files

    try:
        result = files.fit(paths, pred=pred or None, target=target or None, weight=weight,
                           task=task.value if task else None, method=method.value, l2=l2, batch_rows=batch_rows,
                           pred_kind=pred_kind.value if pred_kind else None,
                           dask=dask, scheduler=scheduler)
    except LossInputError as error:
        raise CLIError(str(error)) from None
    except ImportError as error:
        raise CLIError(f"losskit calibrate needs {error.name}, which is not installed: {EVAL_HINT}") from None
    fitted = result.calibration
    write_text(out, fitted.to_json())
    if as_json:
        info = {**fitted.to_dict(), "reason": result.reason, "files": result.files, "columns": result.columns,
                "engine": result.engine, "seconds": result.seconds, "out": str(out)}
        typer.echo(json.dumps(info, indent=2))
        return
    _table(fitted, result, out)


def _table(fitted, result, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.report import _number, _short

    table = Table(title=f"losskit calibrate: {fitted.method}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("task", f"{fitted.task} ({result.reason})")
    table.add_row("rows", f"{fitted.rows:,}")
    for name, value in fitted.params.items():
        table.add_row(name, _short(value))
    table.add_row("NLL", f"{_number(fitted.nll_before)} -> {_number(fitted.nll_after)}")
    if fitted.ece_before is not None:
        table.add_row("ECE (15 bins)", f"{_number(fitted.ece_before)} -> {_number(fitted.ece_after)}")
    table.add_row("passes", f"{fitted.passes} (one per Newton step, each one read of the files)")
    table.add_row("ran on", f"{result.engine}, {result.seconds:.2f} s")
    console = Console()
    console.print(table)
    console.print(f"wrote {out}")


def _apply(paths: list[str], out: Path, calibration: Path | None, pred, batch_rows: int, as_json: bool,
           pred_kind: str | None) -> None:
    from ..evaluation import _calibration
    from ..evaluation.calibration.apply import apply_files

    if calibration is None:
        raise CLIError("--calibration: expected the calibration JSON to apply (losskit calibrate --out), got none")
    if not paths:
        raise CLIError("PATH: expected at least one file, directory or glob to calibrate, got none")
    try:
        info = apply_files(paths, _calibration(calibration), out, pred=pred or None, batch_rows=batch_rows,
                           pred_kind=pred_kind)
    except LossInputError as error:
        raise CLIError(str(error)) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"wrote {info['rows']:,} rows of calibrated {', '.join(info['pred'])} to {out}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)


__all__ = ["calibrate_command", "register"]
