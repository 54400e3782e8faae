"""A :class:`~losskit.evaluation.Report` for people: rich tables, JSON, and one self-contained HTML page.

Design note: the HTML page embeds its figures as PNG data URIs and its style inline, with no
script and no external resource, so it reads the same offline, attached to an e-mail or
archived beside a model; the figures are drawn with matplotlib's Agg backend, the tables are the
same rows the terminal shows.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math

__all__ = ["tables", "to_json", "to_html", "figures"]

_NAMES = {"loss": "loss", "log_loss": "log-loss", "accuracy": "accuracy", "roc_auc": "ROC AUC",
          "brier": "Brier score", "ece": "expected calibration error", "top5_accuracy": "top-5 accuracy",
          "exact_match": "exact match", "hamming_loss": "Hamming loss", "mse": "MSE", "mae": "MAE", "r2": "R^2",
          "average_precision": "average precision", "f1": "F1 (at 0.5)", "macro_f1": "macro F1",
          "micro_f1": "micro F1", "mce": "maximum calibration error", "ece_adaptive": "ECE, equal-mass bins",
          "classwise_ece": "classwise ECE"}
#: the order of the metrics in the tables (the JSON keeps METRIC_KEYS' order)
_SHOWN = ("loss", "log_loss", "accuracy", "top5_accuracy", "exact_match", "hamming_loss", "roc_auc",
          "average_precision", "f1", "macro_f1", "micro_f1", "brier", "ece", "mce", "ece_adaptive", "classwise_ece",
          "mse", "mae", "r2")
#: rows of a per-class / per-label table printed to the terminal (the JSON and HTML have all)
TERMINAL_ROWS = 30


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3e}"
    return str(value)


def summary_rows(report) -> list[tuple[str, str]]:
    """``(name, value)`` rows of the summary table, shared by the terminal and the HTML page."""
    rows = [("task", f"{report.task} ({report.reason})"), ("rows", f"{report.rows:,}")]
    if report.weight_sum != report.rows:
        rows.append(("weight sum", _number(report.weight_sum)))
    rows.append(("loss function", report.loss_name + (f" on {report.pred_kind}" if report.pred_kind else "")))
    before = getattr(report, "before", None)
    if before is not None:
        rows.append(("calibration", _calibration_text(report.calibration)))
    for key in sorted(report.metrics, key=_SHOWN.index):
        value = _number(report.metrics[key])
        if before is not None:
            value += f"  (uncalibrated: {_number(before.get(key))})"
        rows.append((_NAMES[key], value))
    if report.auc:
        rows.append(("ROC AUC method", _auc_method(report.auc)))
        if report.auc.get("undefined"):  # the macro mean is over the others: say which are left out
            names = [row["label"] for row in report.tables.get("per_label", [])]
            left = [str(names[i]) if i < len(names) else str(i) for i in report.auc["undefined"]]
            rows.append(("ROC AUC left out", f"{len(left)} label(s) of one class only, not in the macro mean: "
                                             f"{', '.join(left[:10])}{', ...' if len(left) > 10 else ''}"))
        if report.auc.get("method") == "binned" and "ap_bound" in report.auc:
            bound = report.auc["ap_bound"]
            rows.append(("average precision method", f"binned, within +/- {bound:.2e} of the exact value"))
    adaptive = getattr(report, "adaptive", None)
    if adaptive and adaptive.get("method") == "binned":
        rows.append(("equal-mass ECE method", f"binned, within +/- {adaptive['bound']:.2e} of the exact value"))
    rows.append(("ran on", f"{report.engine}, {report.seconds:.2f} s"))
    return rows


def _calibration_text(calibration: dict | None) -> str:
    if not calibration:
        return "-"
    params = ", ".join(f"{k} = {_short(v)}" for k, v in calibration["params"].items())
    return f"{calibration['method']} ({params}); the metrics are of the calibrated predictions"


def _short(value) -> str:
    if isinstance(value, list):
        shown = ", ".join(_number(float(v)) for v in value[:6])
        return f"[{shown}{', ...' if len(value) > 6 else ''}]"
    return _number(float(value)) if isinstance(value, int | float) else str(value)


def _auc_method(auc: dict) -> str:
    if auc.get("method") == "binned":
        return f"binned (a fixed histogram of the scores), within +/- {auc['bound']:.2e} of the exact value"
    return auc.get("method", "-")


def _table_rows(report) -> tuple[str, list[str], list[list[str]]] | None:
    """The per-class / per-label / per-output table as a title, headers and string rows."""
    for key, title in (("per_class", "per class"), ("per_label", "per label"), ("per_output", "per output")):
        rows = report.tables.get(key)
        if rows:
            headers = [h for h in rows[0] if not h.startswith("auc_")]
            return title, headers, [[_number(row.get(h)) for h in headers] for row in rows]
    return None


def tables(report) -> list:
    """The rich tables of the terminal report."""
    from rich.table import Table

    summary = Table(title=f"losskit eval: {report.task}", title_justify="left", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    for name, value in summary_rows(report):
        summary.add_row(name, value)
    out = [summary]
    detail = _table_rows(report)
    if detail is not None:
        title, headers, rows = detail
        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header, justify="right")
        for row in rows[:TERMINAL_ROWS]:
            table.add_row(*row)
        if len(rows) > TERMINAL_ROWS:
            table.caption = f"first {TERMINAL_ROWS} of {len(rows)} rows; --json or --html have all"
        out.append(table)
    return out


def to_json(report) -> str:
    """The report as JSON; a number that is not finite (a metric that overflowed: the squared error of
    predictions near 1e200) is ``null``, as JSON has no inf or NaN."""
    return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False, default=_plain) + "\n"


def _finite(value):
    """``value`` with every float that is not finite made None, through dicts, lists and arrays."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# -- figures -----------------------------------------------------------------------------------

def figures(report) -> dict:
    """``{title: matplotlib Figure}`` for what the task draws: a reliability diagram (classifiers),
    a confusion matrix (multi-class), per-label ROC AUC (multi-label), residuals (regression)."""
    out = {}
    data = report.figures
    if data.get("reliability") and data.get("reliability_before"):
        out["Reliability diagrams: uncalibrated and calibrated"] = _reliability_pair(
            data["reliability_before"], data["reliability"], report.task)
    elif data.get("reliability"):
        out["Reliability diagram"] = _reliability(data["reliability"], report.task)
    if data.get("confusion"):
        out["Confusion matrix"] = _confusion(data["confusion"])
    if report.tables.get("per_label"):
        out["ROC AUC per label"] = _per_label_auc(report.tables["per_label"])
    if data.get("residuals"):
        out["Residuals (prediction - target)"] = _residuals(data["residuals"])
    return out


def _reliability_pair(before: list, after: list, task: str):
    """The two reliability diagrams side by side, uncalibrated on the left."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 6.0), layout="constrained")
    for sub, bins, title in zip(figure.subfigures(1, 2), (before, after), ("uncalibrated", "calibrated"),
                                strict=True):
        _reliability(bins, task, sub)
        sub.suptitle(title, fontsize=10)
    return figure


def _reliability(bins: list, task: str, figure=None):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 6.0), layout="constrained") if figure is None else figure
    axis, counts = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = bins[0]["upper"] - bins[0]["lower"]
    observed = [b["frequency"] if b["frequency"] is not None else 0.0 for b in bins]
    axis.bar(centres, observed, width=width * 0.9, color="#4878a8", alpha=0.8, label="observed")
    filled = [b for b in bins if b["weight"]]
    axis.plot([b["confidence"] for b in filled], [b["frequency"] for b in filled], "o-", color="#c44e52",
              markersize=3, label="mean confidence vs observed")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("observed frequency" if task == "binary" else "accuracy")
    axis.legend(loc="best", fontsize=8)
    counts.bar(centres, [b["weight"] for b in bins], width=width * 0.9, color="0.55")
    counts.set_ylabel("weight")
    counts.set_xlabel("P(positive)" if task == "binary" else "confidence (max probability)")
    return figure


def _confusion(matrix: list):
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    k = len(counts)
    size = min(3 + 0.45 * k, 12)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axis = figure.add_subplot()
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, label="share of the true class (recall on the diagonal)")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    if k <= 20:
        axis.set_xticks(range(k))
        axis.set_yticks(range(k))
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    axis.text(j, i, f"{counts[i, j]:.4g}", ha="center", va="center", fontsize=7,
                              color="white" if share[i, j] > 0.5 else "black")
    return figure


def _per_label_auc(rows: list):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4, 0.5 * len(rows) + 2), 3.6), layout="constrained")
    axis = figure.add_subplot()
    values = [r["roc_auc"] if r.get("roc_auc") is not None else 0.0 for r in rows]
    axis.bar([str(r["label"]) for r in rows], values, color="#4878a8")
    axis.set_ylim(0, 1)
    axis.set_ylabel("ROC AUC")
    axis.set_xlabel("label")
    return figure


def _residuals(histogram: dict):
    from matplotlib.figure import Figure

    edges, weights = histogram["edges"], histogram["weights"]
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axis = figure.add_subplot()
    axis.stairs(weights, edges, fill=True, color="#4878a8", alpha=0.8)
    axis.axvline(0, color="0.3", linewidth=1)
    axis.set_xlabel("residual")
    axis.set_ylabel("weight")
    note = histogram.get("note")
    if note:
        axis.set_title(note, fontsize=8)
    return figure


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# -- HTML --------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 60em;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th { background: #f4f4f4; } td.name { text-align: left; font-weight: 600; }
table.summary td { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 100%; height: auto; }
.small { color: #666; font-size: 0.85em; }
"""


def to_html(report) -> str:
    """One self-contained HTML page: the summary, the per-class/label/output table, the figures."""
    escape = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>losskit eval: {escape(report.task)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>losskit eval: {escape(report.task)}</h1>",
             f'<p class="small">{escape(", ".join(report.files[:5]))}'
             f'{escape(f" and {len(report.files) - 5} more" if len(report.files) > 5 else "")}'
             f"; losskit {escape(report.version)}</p>",
             '<table class="summary">']
    for name, value in summary_rows(report):
        parts.append(f'<tr><td class="name">{escape(name)}</td><td>{escape(value)}</td></tr>')
    parts.append("</table>")
    detail = _table_rows(report)
    if detail is not None:
        title, headers, rows = detail
        parts.append(f"<h2>{escape(title.capitalize())}</h2><table><tr>")
        parts += [f"<th>{escape(h)}</th>" for h in headers]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for title, figure in figures(report).items():
        parts.append(f"<h2>{escape(title)}</h2><figure>"
                     f'<img alt="{escape(title)}" src="data:image/png;base64,{_png(figure)}"></figure>')
    parts.append("</body></html>\n")
    return "\n".join(parts)
