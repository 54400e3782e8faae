"""Calibrations fitted on prediction files, streaming: one pass over the files per Newton step.

:func:`fit` settles the files, columns and task exactly as ``losskit eval`` does
(:func:`~losskit.evaluation.sources.resolve`, :func:`~losskit.evaluation.scoring.plan`), then
lets :func:`~.newton.minimise` drive passes; a pass reads the files in row batches (the next one
read meanwhile by a thread) and adds each batch's :class:`~.objectives.Sums`, so memory is a few
batches whatever the files' size. On Dask, each pass maps the files' pieces to the workers, which
read their rows themselves and send back one :class:`~.objectives.Sums` each; the client merges
them (float64 sums: the same numbers as one process, up to the order of the additions). The
cluster is started once and kept for every pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..._errors import LossInputError, argument_renamed, fail
from . import Calibration, from_fit, objective_for
from .inputs import check_classes, check_not_probabilities
from .newton import minimise

__all__ = ["fit", "FileFit", "batch_arrays"]


@dataclass
class FileFit:
    calibration: Calibration
    reason: str
    files: list
    columns: dict
    engine: str
    seconds: float


def batch_arrays(task: str, batch):
    """``(logits [n, K], target, weight)`` of one checked :class:`~..sources.Batch`, as the objectives take them."""
    from ..scoring import _labels

    pred, target = batch.pred, batch.target
    if task == "binary":
        return pred, _labels(batch, target[:, 0], 2, "a label 0 or 1").reshape(-1, 1), batch.weight
    if task == "multiclass":
        if target.shape[1] == 1:
            k = pred.shape[1]
            return pred, _labels(batch, target[:, 0], k, f"a class index in 0..{k - 1}"), batch.weight
        return pred, np.asarray(target, dtype=np.float64), batch.weight
    if task == "multilabel":
        return pred, _labels(batch, target, 2, "a label 0 or 1"), batch.weight
    return pred, np.asarray(target[:, 0], dtype=np.float64), batch.weight


def _piece_sums(objective, task, theta, layout, piece, batch_rows: int, first: bool):
    """The sums of one piece of the files (``piece`` None: all of them) at ``theta``."""
    from .. import sources

    total = None
    for batch in sources.prefetched(sources.batches(layout, piece, batch_rows=batch_rows)):
        z, y, w = batch_arrays(task, batch)
        part = objective.sums(theta, z, y, w, first)
        total = part if total is None else total.merge(part)
    return total


def plan_files(paths, *, pred, target, weight, task, method, batch_rows: int, pred_kind: str | None = None):
    """The layout and the :class:`~..scoring.Spec` of the files, checked for calibration; ``pred_kind``
    "logits" says the columns hold logits whatever their names say ("probs" is refused)."""
    from ...losses import GaussianNLL
    from .. import scoring, sources
    from .paired import calibrations, check_uncalibrated

    sources.check_batch_rows(batch_rows)
    files = sources.discover(paths)
    layout = sources.resolve(files, pred=pred, target=target, weight=weight)
    # a fit on calibrated logits could never be applied to them (apply and eval refuse such files)
    check_uncalibrated(calibrations(layout), "PATH")
    first = sources.first_batch(layout, files, scoring.DETECT_ROWS)
    if method == "variance" and task is None:
        task = "regression"
    loss = GaussianNLL() if method == "variance" else None
    # (eval's advice names its --loss, which calibrate has not: found in review)
    spec = scoring.plan(layout, first, task=task, loss=loss, pred_kind=pred_kind,
                        two_columns_advice="a mean and a log-variance per value: --method variance")
    if spec.pred_kind == "probs":
        raise fail("--pred-kind" if pred_kind else "--pred", "logits",
                   f"probability columns ({', '.join(layout.pred)})",
                   "calibration rescales logits: fitted on probabilities it fits a meaningless map "
                   "(gpleiss/temperature_scaling#29); give the model's raw outputs, or --pred-kind logits "
                   "if these columns hold logits")
    if pred_kind is None:  # (--pred-kind logits: the caller says what they are)
        try:
            check_not_probabilities(spec.task, first.pred, "--pred")
        except LossInputError as error:
            raise LossInputError(f"{first.path}: {error}") from None
    return layout, spec


def fit(paths, *, pred=None, target=None, weight=None, task: str | None = None, method: str = "temperature",
        pred_kind: str | None = None, l2: float = 0.0, batch_rows: int = 1_000_000, dask: bool = False,
        scheduler: str | None = None, max_passes: int = 100,
        on_pass: Callable[[int, object], None] | None = None) -> FileFit:
    """Fit ``method`` on the predictions in ``paths`` (files, directories, globs, as ``losskit eval``
    takes them), one streaming pass per Newton step; ``dask``/``scheduler`` as in :func:`~losskit.evaluate`."""
    if dask and scheduler is not None:
        raise fail("--dask", "either --dask (a local cluster) or --scheduler ADDRESS", "both")
    start = time.perf_counter()
    layout, spec = plan_files(paths, pred=pred, target=target, weight=weight, task=task, method=method,
                              batch_rows=batch_rows, pred_kind=pred_kind)
    with argument_renamed(method="--method", l2="--l2"):  # named as the command line's options
        objective = objective_for(method, spec.task, spec.n_outputs, l2)
    count = [0]

    def checked(total):
        first = count[0] == 0
        count[0] += 1
        if first:
            with argument_renamed(target="--target"):  # (the command line's words, as for --method)
                check_classes(spec.task, objective.method, total.mass, total.weight, "--weight",
                              getattr(objective, "l2", 0.0), l2_name="--l2")
        if on_pass is not None:
            on_pass(count[0], total)
        return total

    columns = {"pred": list(layout.pred), "target": list(layout.target), "weight": layout.weight}
    files = [str(f) for f in layout.files]
    if not (dask or scheduler is not None):
        result = minimise(objective, lambda theta: checked(
            _piece_sums(objective, spec.task, theta, layout, None, batch_rows, count[0] == 0)), max_passes=max_passes,
            what="--method")
        return FileFit(from_fit(objective, result), spec.reason, files, columns, "single process",
                       time.perf_counter() - start)
    from .. import sources
    from ..cluster import PIECES_PER_THREAD, connected, for_workers

    layout = for_workers(layout, scheduler)
    with connected(scheduler) as (client, where):
        threads = sum(client.nthreads().values())
        parts = sources.pieces(layout, threads * PIECES_PER_THREAD)

        def one_pass(theta):
            first = count[0] == 0
            futures = client.map(_piece_sums, [objective] * len(parts), [spec.task] * len(parts),
                                 [theta] * len(parts), [layout] * len(parts), parts,
                                 [batch_rows] * len(parts), [first] * len(parts), pure=False)
            # in piece order: the same sum on every run; a piece of no rows (an empty file) has no sums
            sums = [part for part in (future.result() for future in futures) if part is not None]
            total = sums[0]
            for part in sums[1:]:
                total.merge(part)
            return checked(total)

        result = minimise(objective, one_pass, max_passes=max_passes, what="--method")
        engine = f"{where}: {len(client.nthreads())} worker(s), {threads} thread(s), {len(parts)} pieces"
    return FileFit(from_fit(objective, result), spec.reason, files, columns, engine, time.perf_counter() - start)
