"""What an evaluation computes, decided once (:class:`Spec`), and the accumulator that applies it
to row batches (:class:`Scorer`).

Design note: the task, the loss, the prediction kind and the number of outputs are settled by
:func:`plan` from the file layout and the first rows, before any scoring; a :class:`Spec` is a
small picklable record, so a Dask worker scores its piece of the files with exactly the
decisions the single-process run makes. A :class:`Scorer` holds only float64 sums and the
metric accumulators of :mod:`.metrics`, which merge exactly; that is what makes the cluster's
numbers equal the single process's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .. import heads as _heads
from .._errors import LossInputError, argument_renamed, fail
from ..losses import (
    BinaryCrossEntropy,
    Loss,
)
from ..targets import SOFT_LABELS_HINT, type_of_target
from ..tasks import Task
from .metrics import BinaryMetrics, MulticlassMetrics, MultilabelMetrics, RegressionMetrics
from .sources import Batch, Layout, weights_overflow

__all__ = ["Spec", "Scorer", "plan", "METRIC_KEYS"]

#: the keys of a report's flat ``metrics``, in this order, as they apply to the task
METRIC_KEYS = ("loss", "log_loss", "accuracy", "roc_auc", "average_precision", "f1", "macro_f1", "micro_f1",
               "brier", "ece", "mce", "ece_adaptive", "classwise_ece", "top5_accuracy", "exact_match",
               "hamming_loss", "mse", "mae", "r2")
#: multi-class equal-mass ECE: exact (rows kept and sorted) up to this many rows, binned beyond with its bound
ADAPTIVE_EXACT_LIMIT = 1_000_000
#: rows of the first batch that task detection reads (a sample: the rest are checked, not re-detected)
DETECT_ROWS = 100_000
#: a probability row of a multi-class file may miss 1 by this much (float32 files, rounded writers)
ROW_SUM_SLACK = float(np.sqrt(np.finfo(np.float32).eps))



@dataclass(frozen=True)
class Spec:
    """Everything a scorer needs, decided once: picklable, shared by every worker.

    ``task`` a :class:`~losskit.Task`; ``reason`` why (detection's sentence, or "given"); ``loss``
    the task's :class:`~losskit.Loss` on the predictions as the file holds them (None for
    multi-label probabilities, scored by ``example_loss`` alone); ``example_loss`` the per-example
    (multi-class) or per-label (multi-label) loss with ``reduction="none"`` that the tables need;
    ``pred_kind`` "logits", "probs" or None (regression); ``n_outputs`` prediction values per row;
    ``head`` the task head, whose ``predict`` gives a regression's point value.
    """

    task: str
    reason: str
    loss: Loss
    pred_kind: str | None
    n_outputs: int
    head: object = field(repr=False, compare=False)
    example_loss: Loss | None = None
    #: ROC AUC is exact while at most this many rows (per label) are seen, binned beyond
    auc_exact_limit: int = 10_000_000
    #: the loss is the log-loss itself (default cross-entropy on logits): the metrics' sums serve for both
    loss_is_log_loss: bool = False

    @property
    def loss_name(self) -> str:
        if self.loss is None:
            return "BinaryCrossEntropy summed over the labels"
        return type(self.loss).__name__


#: what ``losskit eval`` advises for regression predictions of more columns than target values (calibrate has
#: its own: its method, not a loss, says what the columns are)
EVAL_TWO_COLUMNS = "a mean and a log-variance per value: --loss gaussian_nll; quantiles: --loss quantile"


def plan(layout: Layout, first: Batch, *, task: str | None = None, loss: str | Loss | None = None,
         pred_kind: str | None = None, auc_exact_limit: int = 10_000_000,
         two_columns_advice: str = EVAL_TWO_COLUMNS) -> Spec:
    """Settle the task (given, or detected from ``first``'s target with :func:`~losskit.targets.type_of_target`,
    as :func:`~losskit.head_for` does), the loss, the prediction kind and the widths; every
    mismatch between them is a :class:`~losskit.LossInputError` naming the option to change
    (``two_columns_advice``: the command's own, for regression predictions of several columns a value)."""
    if task is not None:
        task = Task.parse(task, "--task")
    if pred_kind is not None and pred_kind not in ("logits", "probs"):
        raise fail("--pred-kind", "logits or probs", repr(pred_kind))
    n_pred = first.pred.shape[1]
    n_target = first.target.shape[1]
    implied = _task_of_loss(loss) if task is None else None
    if implied is not None:  # a loss of one task says the task (a Poisson target of whole floats was ambiguous)
        task, reason = implied, f"--loss {loss if isinstance(loss, str) else type(loss).__name__} is a {implied} loss"
    detected = task is None
    if detected:
        task, reason = _detect(layout, first)
        if task == "binary" and n_pred > 1 and n_target == 1:  # the prediction columns are authoritative
            task, reason = Task.MULTICLASS, f"{reason}; {n_pred} prediction columns, one per class: multiclass"
    elif implied is None:
        reason = f"--task {task} given"
    kind = pred_kind or layout.pred_kind or ("logits" if task != "regression" else None)
    if pred_kind is None and layout.pred_kind is None and task != "regression":
        _check_unmarked_logits(first.pred, layout)
    if task == "regression":
        if pred_kind is None and layout.pred_kind is not None and (implied is not None or detected):
            # the columns say logits or probabilities (their names, or the file's metadata) and a task read off
            # --loss or the target reads values: a binary logit file was scored as regression without a word
            # (--loss huber, or one stray label 1.5). --task regression given is the user's word: taken
            said = ("the file's metadata 'losskit.pred_kind'" if "losskit.pred_kind" in layout.metadata
                    else f"the name {layout.pred[0]!r}")
            option = "--loss" if implied is not None else "--task"
            raise fail(option, f"a classifier's task for predictions that are {layout.pred_kind} ({said})",
                       f"{task} ({reason})", (f"the task was detected from the target as {task}: check the "
                                              "target's values, or " if detected else "")
                       + "pass --task: binary, multiclass or multilabel for a classifier's predictions, regression "
                       "to score them as values")
        if pred_kind is not None:
            raise fail("--pred-kind", "no --pred-kind for a regression task (its predictions are values)",
                       f"--pred-kind {pred_kind} ({reason})")
        kind = None
    try:
        head = _head(task, loss, n_pred, n_target, two_columns_advice)
    except LossInputError as error:
        if not detected or str(error).startswith("--loss"):  # (a loss's name or options: not the task's doing)
            raise
        # the columns disagree with the task read off the target (a label 1.5 makes it regression): say so
        raise LossInputError(f"{error}; the task was detected from the target as {task} ({reason}): check the "
                             f"target's values, or pass --task") from None
    loss_object = head.loss_object
    if kind == "probs":
        if loss is not None:
            raise fail("--loss", "no --loss with probabilities (the catalogue's losses take logits)",
                       f"--loss {loss if isinstance(loss, str) else type(loss).__name__} with --pred-kind probs",
                       "give logits, or leave --loss out to score the probabilities with the task's cross-entropy")
        # multi-label probabilities: scored as the sum over labels of the binary cross-entropy on probabilities
        loss_object = None if task == "multilabel" else type(loss_object).probability_form()
    example_loss = None
    if task == "multiclass":
        example_loss = loss_object.replace(reduction="none")
    elif task == "multilabel" and kind == "probs":
        example_loss = BinaryCrossEntropy(reduction="none")
    elif task == "multilabel":
        example_loss = loss_object.per_label().replace(reduction="none")
    if task == "multilabel":  # the limit counts scores: the labels share it
        auc_exact_limit //= n_pred
    if layout.rows is not None and layout.rows > auc_exact_limit:
        auc_exact_limit = 0  # binned in the end whatever happens: keep no row for the exact path meanwhile
    return Spec(task=task, reason=reason, loss=loss_object, pred_kind=kind, n_outputs=n_pred, head=head,
                example_loss=example_loss, auc_exact_limit=auc_exact_limit,
                loss_is_log_loss=kind == "logits" and n_target == 1 and _is_plain(loss_object))


def _check_unmarked_logits(pred: np.ndarray, layout: Layout) -> None:
    """Predictions whose kind nothing names (no flag, no ``logit*`` / ``prob*`` names, no metadata) are
    read as logits; where every one of the first rows lies in [0, 1], they are far likelier probabilities,
    which scored as logits give every metric wrong without a word: refused, asking which they are."""
    with np.errstate(invalid="ignore"):
        inside = bool(pred.size) and bool(np.all((pred >= 0) & (pred <= 1)))
    if inside:
        columns = ", ".join(layout.pred[:3]) + (", ..." if len(layout.pred) > 3 else "")
        raise fail("--pred-kind", f"logits or probs for predictions whose kind nothing names ({layout.files[0]}: "
                   f"columns {columns}, not 'logit*' or 'prob*', no 'losskit.pred_kind' metadata)",
                   f"none, and every prediction of the first {len(pred)} rows in [0, 1], as probabilities are",
                   "pass --pred-kind probs if they are probabilities, --pred-kind logits if they are logits")


def _is_plain(loss: Loss | None) -> bool:
    """``loss`` is a log-loss (a loss with a probability form: BCE or softmax CE, on logits) with
    every option at its default (the reduction aside): then it equals scikit-learn's log-loss."""
    cls = type(loss)
    if loss is None or cls.__dict__.get("probability_form") is None:
        return False
    return {**loss.options.as_dict(), "reduction": "mean", "impl": "auto"} == cls().options.as_dict()


def _task_of_loss(loss) -> Task | None:
    """The one task whose heads take ``loss`` (a name or a Loss object), or None (none given; several take it,
    as "bce" binary and multi-label; none does, which the head's error then says)."""
    if loss is None:
        return None
    tasks = []
    for kind in Task:
        try:
            _heads.loss_class(kind, loss)
        except LossInputError:
            continue
        tasks.append(kind)
    return tasks[0] if len(tasks) == 1 else None


def _as_flags(text: str) -> str:
    """type_of_target's words for a head's keyword (``task='multiclass'``) as this module's, the command's flag
    (``--task multiclass``; lk.evaluate says them back as keywords): the command said ``pass task='multiclass'``."""
    return re.sub(r"\btask='(\w+)'", r"--task \1", text)


def _detect(layout: Layout, first: Batch) -> tuple[str, str]:
    """The task :func:`~losskit.targets.type_of_target` reads off the first rows' target, and why."""
    sample = first.target[:DETECT_ROWS]
    if all(layout.kinds.get(name) in ("int", "bool") for name in layout.target):
        sample = sample.astype(np.int64)  # booleans as 0/1 labels, as the loss reads them
    try:
        info = type_of_target(sample[:, 0] if sample.shape[1] == 1 else sample)
    except LossInputError as error:
        where = first.path if len(layout.files) == 1 else f"the {len(layout.files)} files from {first.path}"
        raise LossInputError(f"{_as_flags(str(error))} (read from the first {len(sample):,} rows of {where}; "
                             f"give --task to decide)") from None
    more = layout.rows is None or layout.rows > len(sample)
    # a head trains on soft labels, but eval's binary metrics (accuracy, ROC AUC) need 0/1 labels
    reason = _as_flags(info.reason.replace(SOFT_LABELS_HINT, ""))
    reason += f" (read from the first {len(sample):,} rows)" if more else ""
    return info.kind, reason


@argument_renamed(loss="--loss")  # a loss's name or options: the command's option
def _head(task: str, loss, n_pred: int, n_target: int, two_columns_advice: str = EVAL_TWO_COLUMNS):
    """The task's head for these widths, or an error that says which option fits the file."""
    options = {} if loss is None else {"loss": loss}
    if task == "binary":
        if n_pred != 1 or n_target != 1:
            raise fail("--pred", "one prediction column and one target column for a binary task",
                       f"{n_pred} prediction and {n_target} target values per row",
                       "two columns of class scores are a multiclass task: give --task multiclass")
        return _heads.head("binary", **options)
    if task == "multiclass":
        if n_pred < 2:
            raise fail("--pred", "K >= 2 prediction columns (one per class) for a multiclass task",
                       f"{n_pred}")
        if n_target not in (1, n_pred):
            raise fail("--target", f"one label column or {n_pred} one-hot/probability columns",
                       f"{n_target} target values per row")
        return _heads.head("multiclass", n_classes=n_pred, **options)
    if task == "multilabel":
        if n_target != n_pred:
            raise fail("--target", f"one 0/1 column per label ({n_pred}, as --pred has)",
                       f"{n_target} target values per row")
        return _heads.head("multilabel", n_labels=n_pred, **options)
    head = _heads.head("regression", **options) if loss is not None else None
    units = getattr(head, "units", None)
    if head is None or type(head) is _heads.RegressionHead:
        if n_pred != n_target:
            hint = two_columns_advice if loss is None and n_target == 1 else ""
            raise fail("--pred", f"one prediction column per target value ({n_target})", f"{n_pred}", hint)
        return _heads.head("regression", n_outputs=n_pred, **options)
    if n_pred != units or n_target != 1:
        raise fail("--pred", f"{units} prediction columns and one target column for {type(head).__name__}",
                   f"{n_pred} prediction and {n_target} target values per row")
    return head


class Scorer:
    """Sums and metric accumulators for one :class:`Spec`; ``update`` a batch, ``merge`` another."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.rows = 0
        self.loss_total = 0.0
        self.loss_weight = 0.0
        task = spec.task
        if task == "binary":
            self.metrics = BinaryMetrics(spec.pred_kind, auc_exact_limit=spec.auc_exact_limit)
        elif task == "multiclass":
            # the equal-mass ECE keeps rows (17 bytes each) and sorts them once: exact up to 1M rows only
            self.metrics = MulticlassMetrics(spec.n_outputs, spec.pred_kind,
                                             exact_limit=min(spec.auc_exact_limit, ADAPTIVE_EXACT_LIMIT))
        elif task == "multilabel":
            self.metrics = MultilabelMetrics(spec.n_outputs, spec.pred_kind, auc_exact_limit=spec.auc_exact_limit)
        else:
            n_values = spec.n_outputs if type(spec.head) is _heads.RegressionHead else 1
            self.metrics = RegressionMetrics(n_values)

    def update(self, batch: Batch) -> None:
        spec = self.spec
        pred, weight = batch.pred, batch.weight
        target = batch.target
        if spec.pred_kind == "probs":
            _check_probabilities(batch)
        example_loss = None
        if spec.task == "binary":
            y = _labels(batch, target[:, 0], 2, "a label 0 or 1")
            z = pred[:, 0]
            if not spec.loss_is_log_loss:
                self._add(*_core(spec.loss, z, y.astype(np.float64), weight, batch))
            self.metrics.update(z, y, weight)
        elif spec.task == "multiclass":
            if target.shape[1] == 1:
                y = _labels(batch, target[:, 0], spec.n_outputs, f"a class index in 0..{spec.n_outputs - 1}")
                loss_target = y
            else:
                y = np.argmax(target, axis=1)
                loss_target = np.asarray(target, dtype=np.float64)
            loss_input = pred
            if spec.pred_kind == "probs":
                loss_input = pred / _rows_summing_to_one(batch)[:, None]
            if spec.loss_is_log_loss:
                self.metrics.update(pred, y, weight, "log_loss")
            else:
                example_loss = _core(spec.example_loss, loss_input, loss_target, None, batch)
                self._add_examples(example_loss, weight)
                self.metrics.update(pred, y, weight, example_loss)
        elif spec.task == "multilabel":
            y = _labels(batch, target, 2, "a label 0 or 1")
            example_loss = _core(spec.example_loss, pred, y.astype(np.float64), None, batch)
            self._add_examples(example_loss.sum(axis=1), weight)
            self.metrics.update(pred, y, weight, example_loss)
        else:
            target = np.asarray(target, dtype=np.float64)  # integer counts or amounts are values here
            loss_target = target if target.shape[1] > 1 else target[:, 0]
            # a head of units (quantiles, Gaussian mean and log-variance) reads [N, units], one of them too
            units = type(spec.head) is not _heads.RegressionHead
            loss_input = pred if pred.shape[1] > 1 or units else pred[:, 0]
            self._add(*_core(spec.loss, loss_input, loss_target, weight, batch))
            point = np.asarray(spec.head.point(pred), dtype=np.float64)
            self.metrics.update(point.reshape(len(pred), -1), target, weight)
        self.rows += len(pred)

    def _add(self, total: float, weight_sum: float) -> None:
        self.loss_total += total
        self.loss_weight += weight_sum

    def _add_examples(self, example_loss: np.ndarray, weight) -> None:
        if weight is None:
            self._add(float(np.sum(example_loss)), float(len(example_loss)))
        else:
            self._add(float(example_loss @ weight), float(np.sum(weight)))

    def merge(self, other: Scorer) -> Scorer:
        self.rows += other.rows
        self.loss_total += other.loss_total
        self.loss_weight += other.loss_weight
        self.metrics.merge(other.metrics)
        return self

    def result(self) -> dict:
        """``metrics`` (the flat numbers, ``loss`` first) and the task's tables and figure data."""
        if not math.isfinite(self.metrics.weight_sum):  # each batch's fits (checked at read), their sum not
            raise weights_overflow()
        if self.rows and self.metrics.weight_sum == 0:  # every metric a 0 / 0: a report of blanks, exit 0
            raise fail("--weight", "weights whose sum is > 0 (a weighted mean of no weight is undefined)",
                       f"all {self.rows} rows of weight 0")
        details = self.metrics.result()
        if self.spec.loss_is_log_loss:
            details["loss"], weight_sum = details["log_loss"], self.metrics.weight_sum
        else:
            weight_sum = self.loss_weight
            details["loss"] = self.loss_total / weight_sum if weight_sum else None
        flat = {key: details.pop(key) for key in METRIC_KEYS if key in details}
        return {"metrics": flat, "weight_sum": weight_sum, **details}


def _core(loss: Loss, input, target, weight, batch: Batch):
    """``(sum_i w_i l_i, sum_i w_i)`` of the core loss on one batch, or its per-example values when
    ``loss`` reduces with "none"; the core's own checks' errors gain the file and rows they are about."""
    try:
        if loss.options.reduction == "none":
            return np.asarray(loss(input, target), dtype=np.float64)
        total, weight_sum = loss.sum_and_weight(input, target, weight=weight)
        return float(total), float(weight_sum)
    except LossInputError as error:
        found = _first_refused_row(loss, input, target, weight, str(error))
        if found is None:
            raise LossInputError(f"{batch.path}: rows {batch.start}-{batch.start + len(batch.pred) - 1}: "
                                 f"{error}") from None
        row, message = found
        raise LossInputError(f"{batch.path}: row {batch.start + row}: {message}") from None


def _first_refused_row(loss: Loss, input, target, weight, message: str) -> tuple[int, str] | None:
    """``(row, message)``: the first row at which the core refuses the batch with ``message``'s kind of error
    (its words before "got"), found by bisecting on prefixes (a check of rows: a row sum, a value's range), and
    the error of the prefix ending there, whose values are that row's (the whole batch's named another row's
    minimum). None for an empty batch. ``message`` is the whole batch's error: not computed again."""
    kind = message.split(", got ")[0]

    def refused(rows: int) -> str | None:
        try:
            loss.sum_and_weight(input[:rows], target[:rows], weight=None if weight is None else weight[:rows])
        except LossInputError as error:
            return str(error) if str(error).split(", got ")[0] == kind else None
        return None

    n = len(input)
    if not n:
        return None
    last = message
    low, high = 0, n  # refused(high); not refused(low) (an empty prefix is never refused)
    while high - low > 1:
        middle = (low + high) // 2
        at_middle = refused(middle)
        if at_middle is not None:
            high, last = middle, at_middle
        else:
            low = middle
    return high - 1, last


def _labels(batch: Batch, values: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    """``values`` as integer labels in ``[0, n_classes)``; the first that is not, by file, column and row."""
    integers = values.dtype.kind in "biu" and values.size
    if integers and (values.dtype.kind == "b" or (values.min() >= 0 and values.max() < n_classes)):
        return values  # integer labels in range: used as they are, no copy
    labels = values.astype(np.int64)
    bad = (labels != values) | (labels < 0) | (labels >= n_classes)
    if bad.any():
        index = int(np.argmax(bad.reshape(-1)))
        raise batch.error("target", index, what, values.reshape(-1)[index])
    return labels


def _check_probabilities(batch: Batch) -> None:
    pred = batch.pred
    bad = (pred < 0) | (pred > 1)
    if bad.any():
        index = int(np.argmax(bad.reshape(-1)))
        raise batch.error("pred", index, "a probability in [0, 1] (--pred-kind probs)",
                          pred.reshape(-1)[index])


def _rows_summing_to_one(batch: Batch) -> np.ndarray:
    """The sums of the probability rows, each checked to be 1 within :data:`ROW_SUM_SLACK`."""
    sums = batch.pred.sum(axis=1)
    bad = np.abs(sums - 1) > ROW_SUM_SLACK
    if bad.any():
        row = int(np.argmax(bad))
        raise batch.error("pred", row * batch.pred.shape[1], f"class probabilities whose row sums to 1 "
                          f"(within {ROW_SUM_SLACK:.1e})", f"a row summing to {sums[row]:.9g}")
    return sums
