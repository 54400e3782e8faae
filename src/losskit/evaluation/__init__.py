"""Score a model's predictions from files: the task's loss and the metrics that go with it,
streaming in row batches on one machine or on a Dask cluster (``losskit eval`` calls
:func:`evaluate`).

>>> import losskit as lk                                           # doctest: +SKIP
>>> report = lk.evaluate("losskit-demo/predictions.parquet")      # doctest: +SKIP
>>> report.task, report.metrics["accuracy"]                       # doctest: +SKIP
('binary', 0.97...)

The parts, each a module: :mod:`.sources` finds the files and reads row batches (pyarrow for
Parquet and CSV, NumPy for NPY/NPZ); :mod:`.scoring` settles what to compute (:class:`~.scoring.Spec`)
and accumulates it (:class:`~.scoring.Scorer`); :mod:`.metrics` and :mod:`.auc` are the
mergeable metric accumulators; :mod:`.cluster` runs the same scorer on Dask workers;
:mod:`.report` renders the result as a table, JSON or a self-contained HTML page.

Design note: every mean is kept as a float64 ``(sum w_i x_i, sum w_i)`` pair (the losses through
``Loss.sum_and_weight``), so batches, files and workers combine exactly; peak memory is one
batch plus the accumulators, whatever the files' size. The one metric that cannot stream
exactly, ROC AUC, is exact while the scores fit under a limit and binned beyond it, with the
bound of the binning's error reported beside it.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import _checks
from .._errors import LossInputError, fail
from .scoring import METRIC_KEYS

__all__ = ["evaluate", "Report", "METRIC_KEYS"]

#: the flags of ``losskit eval`` in the errors of the modules below (the CLI is their first caller), each the
#: argument of :func:`evaluate` of that name: a Python caller reads the keyword it passed
_FLAG = r"(?<![\w-])--(pred-kind|batch-rows|pred|target|weight|task|loss|dask|scheduler|calibration)(?![\w-])"
_FLAGS = re.compile(_FLAG)
#: a flag and its value (``--pred-kind probs``, ``--pred logit_0,logit_1``), not a flag before a word of the sentence
_WITH_VALUE = re.compile(_FLAG + r" (?!(?:and|or|for|took|has|is|given|with|if|to|in|as|both|nor)\b)"
                         r"([\w.,*:/-]*[\w*/-])")


def _keywords(message: str) -> str:
    """``message`` in :func:`evaluate`'s words: ``--pred-kind: ...`` as ``pred_kind: ...``, ``--pred-kind probs`` as
    ``pred_kind='probs'``, the flag ``--dask`` as ``dask=True``, any other flag as its keyword."""
    def keyword(flag):
        return flag.replace("-", "_")

    head, colon, rest = message.partition(": ")
    if colon and _FLAGS.fullmatch(head):  # the argument the error is about
        message = keyword(head[2:]) + colon + rest
    message = _WITH_VALUE.sub(lambda match: f"{keyword(match.group(1))}={match.group(2)!r}", message)
    message = re.sub(r"(?<![\w-])--dask(?![\w-])", "dask=True", message)
    return _FLAGS.sub(lambda match: keyword(match.group(1)), message)


def _named_by_keyword(function):
    """``function`` whose :class:`LossInputError` and ``Report.reason`` speak of its keywords where the modules name
    ``losskit eval``'s flags (:func:`_keywords`); ``function.__wrapped__`` keeps the flags (the CLI calls it)."""
    @functools.wraps(function)
    def named(*args, **kwargs):
        try:
            report = function(*args, **kwargs)
            report.reason = _keywords(report.reason)  # "task='binary' given", not "--task binary given"
            return report
        except LossInputError as error:
            message = str(error)
            renamed = _keywords(message)
            if renamed == message:
                raise
            raise LossInputError(renamed) from None

    return named


@dataclass
class Report:
    """The result of :func:`evaluate`.

    ``task``, ``reason`` (why that task), ``rows``, ``version`` (losskit's), ``metrics`` (flat:
    the keys of :data:`METRIC_KEYS` that apply, ``loss`` being the task loss ``loss_name``),
    ``tables`` (``per_class`` / ``per_label`` / ``per_output`` lists of dicts), ``figures`` (the
    data the report draws: ``reliability``, ``confusion``, ``residuals``), ``auc`` (``method``
    "exact" or "binned" and its ``bound``), ``files``, ``columns``, ``pred_kind``, ``engine``,
    ``seconds``.
    """

    task: str
    reason: str
    rows: int
    version: str
    loss_name: str
    pred_kind: str | None
    metrics: dict
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    auc: dict | None = None
    weight_sum: float = 0.0
    files: list = field(default_factory=list)
    columns: dict = field(default_factory=dict)
    engine: str = "single process"
    seconds: float = 0.0
    #: with a calibration: the metrics of the predictions as read (``metrics`` are the calibrated ones)
    before: dict | None = None
    calibration: dict | None = None
    #: the equal-mass ECE's ``method`` ("exact" or "binned") and ``bound``
    adaptive: dict | None = None

    def to_dict(self) -> dict:
        """The JSON object of ``losskit eval --json``."""
        out = {"task": self.task, "reason": self.reason, "rows": self.rows, "version": self.version,
               "metrics": self.metrics, "loss": self.loss_name, "pred_kind": self.pred_kind,
               "weight_sum": self.weight_sum, "auc": self.auc, "adaptive": self.adaptive, **self.tables,
               "files": self.files, "columns": self.columns, "engine": self.engine, "seconds": self.seconds}
        if "reliability" in self.figures:
            out["reliability"] = self.figures["reliability"]
        if self.before is not None:
            out["before"] = self.before
            out["calibration"] = self.calibration
            if "reliability_before" in self.figures:
                out["reliability_before"] = self.figures["reliability_before"]
        return out


@_named_by_keyword
def evaluate(paths: str | os.PathLike | Sequence[str | os.PathLike], *, pred: Sequence[str] | str | None = None,
             target: Sequence[str] | str | None = None, weight: str | None = None, task: str | None = None,
             loss=None, pred_kind: str | None = None, batch_rows: int = 1_000_000, dask: bool = False,
             scheduler: str | None = None, auc_exact_limit: int = 10_000_000,
             on_progress: Callable[[int, int | None], None] | None = None, calibration=None) -> Report:
    """Score the predictions in ``paths`` against their targets; return a :class:`Report`.

    ``paths``: Parquet, CSV, NPY or NPZ files, directories or globs (see :func:`.sources.discover`).
    ``pred`` / ``target``: column names or globs (``"logit_*"``; several target columns are a one-hot or
    multi-hot target; defaults: ``logit*``, ``prob*`` or ``pred*`` and ``target`` / ``target_*``);
    ``weight``: a column of per-example weights, meaning what ``weight`` means in every losskit loss.
    ``task``: "binary", "multiclass", "multilabel" or "regression"; default: detected from the target
    as :func:`losskit.head_for` does, the reason kept in ``Report.reason``. ``loss``: any loss of the
    task's head (a name of :data:`losskit.heads.TASK_LOSSES` or a Loss); default the task's own.
    ``pred_kind``: "logits" or "probs" (default: from the column names or the file's metadata, else
    logits, but refused where every prediction of the first rows lies in [0, 1], as probabilities do).
    ``batch_rows``: rows per batch (memory is one batch plus the accumulators).
    ``dask=True`` starts a local Dask cluster, ``scheduler="tcp://..."`` uses a running one.
    ``auc_exact_limit``: ROC AUC is exact up to this many scores, binned beyond (bound reported).
    ``on_progress(rows_done, rows_total_or_None)`` is called as batches finish.
    ``calibration``: a :class:`~losskit.Calibration` (or the path of its JSON): the predictions are
    scored calibrated (``metrics``) and as read (``before``, the same keys), in the same pass.

    Shapes: the files are tables of N rows; the prediction columns give ``[N, K]`` values (K = 1 for a
    binary task or one regression output, else one per class, label or output), the target columns
    ``[N]`` labels or values, or ``[N, K]`` one-hot, multi-hot or values; the weight column ``[N]``.

    Bad files, columns or values raise :class:`~losskit.LossInputError` naming the file, the column
    and the first bad row.
    """
    from .._version import __version__
    from . import scoring, sources

    sources.check_batch_rows(batch_rows)  # now: the batches themselves are read only after the detection
    auc_exact_limit = _checks.int_at_least(auc_exact_limit, "auc_exact_limit", 0,
                                           "an integer >= 0 (scores up to which ROC AUC is exact)")
    if dask and scheduler is not None:
        raise fail("--dask", "either --dask (a local cluster) or --scheduler ADDRESS", "both")
    start = time.perf_counter()
    files = sources.discover(paths)
    layout = sources.resolve(files, pred=pred, target=target, weight=weight)
    first = sources.first_batch(layout, files, scoring.DETECT_ROWS)
    spec = scoring.plan(layout, first, task=task, loss=loss, pred_kind=pred_kind, auc_exact_limit=auc_exact_limit)
    make = scoring.Scorer
    if calibration is not None:
        import functools

        from .calibration.paired import Paired, calibrations, check_fits, check_uncalibrated

        calibration = _calibration(calibration)
        check_fits(calibration, spec)
        check_uncalibrated(calibrations(layout))
        make = functools.partial(Paired, calibration=calibration)
    if dask or scheduler is not None:
        from . import cluster

        scorer, engine = cluster.score(spec, layout, batch_rows=batch_rows, scheduler=scheduler,
                                       on_progress=on_progress, make=make)
    else:
        scorer, engine = make(spec), "single process"
        for batch in sources.prefetched(sources.batches(layout, batch_rows=batch_rows), depth=2):
            scorer.update(batch)
            if on_progress is not None:
                on_progress(scorer.rows, layout.rows)
    before = None
    if calibration is not None:
        before = scorer.before.result()
        scorer = scorer.after
    result = scorer.result()
    tables = {key: result.pop(key) for key in ("per_class", "per_label", "per_output") if key in result}
    _name_rows(tables, layout)
    figures = {key: result.pop(key) for key in ("reliability", "confusion", "residuals") if key in result}
    if before is not None and before.get("reliability"):
        figures["reliability_before"] = before["reliability"]
    return Report(task=spec.task, reason=spec.reason, rows=scorer.rows, version=__version__,
                  loss_name=spec.loss_name, pred_kind=spec.pred_kind,
                  metrics=result["metrics"],
                  tables=tables, figures=figures, auc=result.get("auc"), weight_sum=result["weight_sum"],
                  adaptive=result.get("adaptive"),
                  files=[str(f) for f in layout.files],
                  columns={"pred": list(layout.pred), "target": list(layout.target), "weight": layout.weight},
                  engine=engine, seconds=time.perf_counter() - start,
                  before=None if before is None else before["metrics"],
                  calibration=None if calibration is None else calibration.to_dict())


def _calibration(value):
    """A :class:`~losskit.Calibration`, or the one in the JSON file ``value`` names."""
    from .calibration import Calibration

    if isinstance(value, Calibration):
        return value
    try:
        with open(value, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise fail("--calibration", "a calibration JSON file (losskit calibrate --out)",
                   f"{os.fspath(value)!r}, which cannot be read: {error.strerror or error}") from None
    try:
        return Calibration.from_json(text)
    except LossInputError as error:
        raise LossInputError(f"--calibration: {os.fspath(value)}: {error}") from None


def _name_rows(tables: dict, layout) -> None:
    """Per-label and per-output rows named by their target columns (``target_even`` -> ``even``)
    when each holds one value, rather than by position."""
    names = list(layout.target)
    if any(layout.widths.get(name, 1) != 1 for name in names):
        return
    short = [name.removeprefix("target_") if name != "target" else name for name in names]
    for key, field_name in (("per_label", "label"), ("per_output", "output")):
        rows = tables.get(key) or []
        if len(rows) == len(short):
            for row, name in zip(rows, short, strict=True):
                row[field_name] = name
