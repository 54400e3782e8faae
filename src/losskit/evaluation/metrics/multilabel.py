"""Multi-label metrics of K independent binary labels per example, streaming and mergeable."""

from __future__ import annotations

import numpy as np

from ..auc import RankAUC
from ._common import (
    _count,
    _f1,
    _kind,
    _logit,
    _mean,
    _row_count,
    _same,
    _shape,
    _total_weight,
    _wcolsum,
    _weights,
    _wsum,
)

_AUC_BUDGET_LOG2 = 22  # multi-label: K histograms of 2**bins_log2 bins x 16 bytes <= 2**26 bytes = 64 MB
_AUC_MIN_BINS_LOG2 = 8

__all__ = ["MultilabelMetrics"]


class MultilabelMetrics:
    r"""Multi-label metrics of ``K`` independent binary labels per example, streaming and mergeable.

    ``update(pred [n, K], y [n, K] in {0, 1}, w [n] or None, example_loss [n, K] or None)``; a
    label is predicted positive iff ``p > 0.5`` (logit > 0). ``result()`` keys:

    * ``exact_match``: all ``K`` labels right; ``accuracy`` is the same number, because that is what
      ``sklearn.metrics.accuracy_score`` computes on multi-label indicator input (subset accuracy);
    * ``hamming_loss``: weighted share of wrong labels, = ``hamming_loss(Y, P > 0.5, sample_weight=w)``;
    * ``roc_auc``: macro mean of the per-label ROC AUCs, = ``roc_auc_score(Y, P, average="macro")``
      when every label has both classes. Otherwise sklearn gives NaN (1.9; older versions raise):
      we average the defined ones and list the others in ``roc_auc_undefined`` (None when none is);
    * ``auc``: ``method`` ("exact", "binned" or "mixed") and ``bound``, the mean of the labels'
      bounds (a bound on the macro mean's binning error);
    * ``per_label``: ``[{label, positives (weight), loss (weighted mean example_loss[:, k]; None unless
      every batch gave it), accuracy, roc_auc, auc_method, auc_bound}]``.

    Each label has its own :class:`~.auc.RankAUC` with ``auc_exact_limit`` rows (so up to ``K`` times
    that many kept scores); ``auc_bins_log2=None`` picks the largest (<= 20, >= 8) that keeps the
    ``K`` histograms within 64 MB together.
    """

    def __init__(self, n_labels: int, pred_kind: str, *, auc_exact_limit: int = 10_000_000,
                 auc_bins_log2: int | None = None):
        self.n_labels = _count("n_labels", n_labels, 1)
        self.pred_kind = _kind(pred_kind)
        self.auc_bins_log2 = _auc_bins_log2(self.n_labels) if auc_bins_log2 is None else auc_bins_log2
        k = self.n_labels
        self.rows = 0
        self.weight_sum = 0.0
        self._exact = 0.0
        self._wrong = 0.0
        self._positives = np.zeros(k)
        self._loss = np.zeros(k)
        self._loss_rows = 0  # rows that came with example_loss: the loss column is reported only if all did
        self._correct = np.zeros(k)
        self._f1 = np.zeros((2, k))  # per label: weighted true positives, predicted positives
        self._auc = [RankAUC(auc_exact_limit, self.auc_bins_log2) for _ in range(k)]

    def update(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
               example_loss: np.ndarray | None = None) -> None:
        pred = np.asarray(pred, dtype=np.float64)
        k = self.n_labels
        n = len(pred)
        _shape("pred", pred, (n, k))
        _shape("y", y, (n, k))
        w = _weights(w, n)
        truth = y if y.dtype == bool else y.astype(bool)
        predicted = pred > (0.0 if self.pred_kind == "logits" else 0.5)
        self._f1 += [_wcolsum(predicted & truth, w), _wcolsum(predicted, w)]
        correct = np.equal(predicted, truth, out=predicted)
        right = _row_count(correct)
        self._exact += _wsum(right == k, w)
        self._wrong += _wsum(k - right.astype(np.float64), w)
        self._correct += _wcolsum(correct, w)
        self._positives += _wcolsum(truth, w)
        if example_loss is not None:
            example_loss = np.asarray(example_loss, dtype=np.float64)
            _shape("example_loss", example_loss, (n, k))
            self._loss += _wcolsum(example_loss, w)
            self._loss_rows += n
        score = pred if self.pred_kind == "logits" else _logit(pred)
        for label, auc in enumerate(self._auc):
            auc.update(score[:, label], truth[:, label], w)
        self.rows += n
        self.weight_sum += _total_weight(w, n)

    def merge(self, other: MultilabelMetrics) -> MultilabelMetrics:
        _same(self, other, "n_labels", "pred_kind", "auc_bins_log2")
        self.rows += other.rows
        self.weight_sum += other.weight_sum
        self._exact += other._exact
        self._wrong += other._wrong
        self._positives += other._positives
        self._loss += other._loss
        self._loss_rows += other._loss_rows
        self._correct += other._correct
        self._f1 += other._f1
        for mine, theirs in zip(self._auc, other._auc, strict=True):
            mine.merge(theirs)
        return self

    def result(self) -> dict:
        total = self.weight_sum
        k = self.n_labels
        aucs = [auc.result() for auc in self._auc]
        defined = [a for a in aucs if a["roc_auc"] is not None]
        methods = {a["method"] for a in aucs}
        exact_match = _mean(self._exact, total)
        ap = [a["average_precision"] for a in aucs if a["average_precision"] is not None]
        f1 = _f1(self._f1[0], self._f1[1], self._positives)
        out = {"exact_match": exact_match, "accuracy": exact_match,
               "hamming_loss": _mean(self._wrong, total * k),
               "roc_auc": float(np.mean([a["roc_auc"] for a in defined])) if defined else None,
               "average_precision": float(np.mean(ap)) if ap else None,
               "macro_f1": float(np.mean(f1)) if total else None,
               "micro_f1": float(_f1(self._f1[0].sum(), self._f1[1].sum(), self._positives.sum())) if total else None,
               "auc": {"method": methods.pop() if len(methods) == 1 else "mixed",
                       "bound": float(np.mean([a["bound"] for a in defined])) if defined else 0.0}}
        undefined = [label for label, a in enumerate(aucs) if a["roc_auc"] is None]
        if undefined:  # (in "auc" too: the report's and the JSON's, which keep no other key of this)
            out["roc_auc_undefined"] = out["auc"]["undefined"] = undefined
        out["per_label"] = [
            {"label": label, "positives": float(self._positives[label]),
             "loss": _mean(float(self._loss[label]), total) if self._loss_rows == self.rows else None,
             "accuracy": _mean(float(self._correct[label]), total),
             "f1": float(f1[label]), "roc_auc": a["roc_auc"], "average_precision": a["average_precision"],
             "auc_method": a["method"], "auc_bound": a["bound"]}
            for label, a in enumerate(aucs)]
        return out


def _auc_bins_log2(n_labels: int) -> int:
    """The largest ``bins_log2`` (<= 20, >= 8) with ``n_labels`` histograms of ``2**bins_log2 x 16`` bytes <= 64 MB."""
    need = int(np.ceil(np.log2(n_labels)))
    return min(20, max(_AUC_MIN_BINS_LOG2, _AUC_BUDGET_LOG2 - need))
