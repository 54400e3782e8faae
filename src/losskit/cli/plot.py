"""``losskit plot``: draw the figures that explain the heads, as PNG or SVG."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..tasks import Task
from ._common import (
    CLIError,
    atomic_write_all,
    check_file_name,
    check_path_names,
    output_dir,
    output_file,
    removed_on_failure,
    require,
)

DEFAULT_DIR = Path("losskit-figures")
SUFFIXES = (".png", ".svg")
#: image formats losskit plot does not write: an --out of this suffix is refused, where it would have
#: become a directory of that name
OTHER_IMAGES = (".pdf", ".jpg", ".jpeg", ".gif", ".eps", ".ps", ".tif", ".tiff", ".webp", ".bmp")


def _figures():
    from . import figures

    return figures.FIGURES


FigureName = Enum("FigureName", {name: name for name in ["all", *_figures()]}, type=str)


class Format(str, Enum):
    png = "png"
    svg = "svg"


def figure_writer(fig, fmt: str):
    """A ``write(temp_path)`` of ``fig`` as ``fmt`` (``"png"`` or ``"svg"``; :func:`~._common.atomic_write_all`).

    PNGs are stored with a 256-colour palette: a third of the bytes of matplotlib's RGBA
    output for these flat-colour plots, small enough to commit under docs/figures.
    """
    if fmt == "svg":
        import matplotlib

        def write_svg(temp: str) -> None:
            # no date and a fixed salt for the element ids: the same figure gives the same bytes
            with matplotlib.rc_context({"svg.hashsalt": "losskit"}):
                fig.savefig(temp, format="svg", metadata={"Date": None})

        return write_svg

    def write_png(temp: str) -> None:
        import io

        from PIL import Image  # matplotlib's own dependency

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        image = Image.open(buffer).convert("RGB")
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            temp, format="PNG", optimize=True)

    return write_png


def _targets(names: list[str], given: str, fmt: str | None) -> list[tuple[str, Path, str]]:
    """(figure, file, format) for each figure: ``given`` (--out as typed) is a file for one figure named
    ``*.png`` / ``*.svg``, else (or when it is an existing directory, or ends in a slash) a directory."""
    out = Path(given)
    check_path_names(out)
    # a trailing slash says a directory, as POSIX reads it (Path drops it: `--out figs.svg/` wrote a file, found
    # in review)
    a_file = not (given.endswith(("/", os.sep)) or out.is_dir())
    if a_file and out.suffix.lower() in OTHER_IMAGES:
        raise CLIError(f"--out: expected a directory or a file ending in .png or .svg, got '{out}' (losskit plot "
                       f"does not write {out.suffix[1:]})")
    if a_file and out.suffix.lower() in SUFFIXES:
        if len(names) > 1:
            raise CLIError(f"--out: expected a directory for 'plot all', got the file name '{out}'")
        file_format = out.suffix.lower()[1:]
        if fmt is not None and fmt != file_format:
            raise CLIError(f"--format: expected {file_format} (the suffix of --out '{out}'), got {fmt}")
        check_file_name(out)  # before its directory is made, and before the figure is drawn
        output_dir(out.parent if str(out.parent) else Path("."), "--out")
        return [(names[0], output_file(out), file_format)]
    fmt = fmt or "png"
    directory = output_dir(out)
    return [(name, output_file(directory / f"{name}.{fmt}"), fmt) for name in names]


def plot(
    figure: Annotated[FigureName, typer.Argument(help="The figure to draw, or 'all'.",
                                                 show_default=False)],
    out: Annotated[str, typer.Option(
        help="A directory (created if missing), or a file ending in .png or .svg for one figure (a trailing "
             "slash says a directory).")
    ] = str(DEFAULT_DIR),
    fmt: Annotated[Format | None, typer.Option("--format", help="png or svg when --out is a "
                                                "directory [default: png].", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the files written as JSON "
                                          "instead of a table.")] = False,
    task: Annotated[Task | None, typer.Option(help="The task whose losses the 'losses' figure draws "
                                              "[default: regression].", show_default=False)] = None,
) -> None:
    """Draw the figures that explain the output heads, as PNG or SVG.

    Figures: **sigmoid** (sigmoid over z), **bce** (binary cross-entropy against p for y = 1
    and y = 0), **softmax** (a small logit vector: logits, exponentials, probabilities),
    **cross-entropy** (categorical CE against the true class's probability), **mse** (squared
    error, a parabola, with its gradient), **bce-landscape** (BCE over logit and target),
    **gradients** (the analytic gradient curves), **losses** (the --task head's losses of one
    residual or margin and their gradients, side by side: MSE, MAE, Huber, log-cosh... against the
    residual; BCE, focal, hinge against the margin). Every curve is computed by losskit.

    **Examples**

    ```
    losskit plot all                   # into ./losskit-figures/
    losskit plot all --out docs/figures --format svg
    losskit plot sigmoid --out sigmoid.png
    losskit plot softmax --json
    losskit plot losses --task binary --out losses-binary.png
    ```
    """
    from rich.console import Console
    from rich.table import Table

    from . import figures

    require("matplotlib", "losskit plot")  # before any directory is made
    if task is not None and figure.value not in ("losses", "all"):
        raise CLIError(f"--task: expected no --task for the {figure.value} figure (it chooses the losses figure's "
                       f"task), got --task {task.value}")
    task = Task.REGRESSION if task is None else task
    names = list(figures.FIGURES) if figure.value == "all" else [figure.value]
    # the directories --out makes are removed again on a failure or a Ctrl-C, as the demo's (an empty one was left)
    with removed_on_failure(out):
        targets = _targets(names, out, None if fmt is None else fmt.value)
        writes = []
        for name, path, file_format in targets:
            draw = figures.FIGURES[name][0]
            writes.append((path, figure_writer(draw(task.value) if name == "losses" else draw(), file_format)))
        # every figure drawn first, then written together: a failure (a full disk) or a Ctrl-C leaves the set
        # of the run before, not some of this run's figures beside others of the last
        atomic_write_all(writes)
    written = [{"figure": name, "file": str(path), "format": file_format, "bytes": path.stat().st_size,
                "description": figures.FIGURES[name][1]} for name, path, file_format in targets]
    if as_json:
        typer.echo(json.dumps(written, indent=2))
        return
    table = Table(title="losskit plot: figures written")
    for column in ("figure", "file", "bytes", "shows"):
        # the file column folds rather than cut: the table is there to say where the files went
        table.add_column(column, justify="right" if column == "bytes" else "left",
                         overflow="fold" if column == "file" else "ellipsis")
    for row in written:
        table.add_row(row["figure"], row["file"], f"{row['bytes']:,}", row["description"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("plot")(plot)
