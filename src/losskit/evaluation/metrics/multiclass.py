"""Multi-class metrics of K scores per example, streaming and mergeable."""

from __future__ import annotations

import numpy as np

from ..adaptive import AdaptiveCalibration
from ._common import (
    _NO_WEIGHT,
    _Calibration,
    _compiled,
    _count,
    _f1,
    _floats,
    _kind,
    _log_clip,
    _mce,
    _mean,
    _row_count,
    _same,
    _Scratch,
    _shape,
    _total_weight,
    _weights,
    _wsum,
)

# softmax without the max shift when every row's max logit is within this: exp cannot overflow,
# the largest term is >= e^-64, and log(sum) carries an absolute error <= ~70 ulp(1)
_UNSHIFTED_SOFTMAX = 64.0
_CONFUSION_MAX_CLASSES = 1000

__all__ = ["MulticlassMetrics"]


class MulticlassMetrics:
    r"""Multi-class metrics of ``K`` scores per example, streaming and mergeable.

    ``update(pred [n, K], y [n] in [0, K), w [n] or None, example_loss [n] or None)``:
    ``example_loss`` is the task loss per example, used only for ``per_class`` (the string ``"log_loss"``:
    the task loss is the log-loss itself, which the update computes anyway). ``result()`` keys:

    * ``accuracy``: argmax (ties to the lowest index, as ``np.argmax``) == y, = ``accuracy_score``;
    * ``top{top_k}_accuracy`` (``top5_accuracy`` by default), only when ``K > top_k``: =
      ``top_k_accuracy_score(y, pred, k=top_k, labels=range(K))``, whose stable argsort reversed
      ranks equal scores by *descending* class index: the true class ranks
      ``#{j: s_j > s_y} + #{j > y: s_j = s_y}``, a hit when that is ``< top_k``;
    * ``log_loss``: = ``log_loss(y, softmax(pred) or pred, labels=range(K))`` (from logits:
      ``logsumexp(z) - z_y``; for probs, ``-log(clip(p_y, eps, 1 - eps))``, rows not renormalised);
    * ``ece``, ``reliability``: top-label calibration, confidence = max probability, outcome =
      argmax == y, the same bins as :class:`BinaryMetrics`;
    * ``per_class``: ``[{class, support (weight of true class), count (rows), loss (weighted mean
      example_loss; None unless every batch gave it), recall, precision}]`` (None where the denominator is 0);
    * ``confusion``: ``K x K`` weighted counts, rows true, columns predicted, only when
      ``K <= 1000`` (else ``confusion_omitted`` says why).
    """

    def __init__(self, n_classes: int, pred_kind: str, *, top_k: int = 5, n_bins: int = 15,
                 exact_limit: int = 1_000_000):
        self.n_classes = _count("n_classes", n_classes, 2)
        self.pred_kind = _kind(pred_kind)
        self.top_k = _count("top_k", top_k, 1)
        k = self.n_classes
        self.rows = 0
        self.weight_sum = 0.0
        self._log_loss = 0.0
        self._correct = 0.0
        self._top_k = 0.0
        self._calibration = _Calibration(n_bins)
        self._adaptive = AdaptiveCalibration(exact_limit, n_bins)
        self._class_cells = np.zeros((k, n_bins, 2))  # per class: the reliability bins of p_c against [y == c]
        self._class_confidence = np.zeros((k, n_bins))
        self._count = np.zeros(k, dtype=np.int64)
        self._scratch = _Scratch()
        self._class_loss = np.zeros(k)
        self._loss_rows = 0  # rows that came with example_loss: the loss column is reported only if all did
        if k <= _CONFUSION_MAX_CLASSES:
            self._confusion = np.zeros((k, k))
            self._support = self._hits = self._predicted = None
        else:
            self._confusion = None
            self._support, self._hits, self._predicted = np.zeros(k), np.zeros(k), np.zeros(k)

    def update(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
               example_loss: np.ndarray | None = None) -> None:
        pred = _floats(pred)
        k = self.n_classes
        n = len(pred)
        _shape("pred", pred, (n, k))
        _shape("y", y, (n,))
        kernels = _compiled(n * k)
        w = _weights(w, n, kernels is not None)
        y = np.asarray(y)
        y = y if kernels is not None and y.dtype.kind in "iu" else y.astype(np.intp)
        log_loss_is_loss = isinstance(example_loss, str) and example_loss == "log_loss"
        if example_loss is not None and not log_loss_is_loss:
            example_loss = np.asarray(example_loss, dtype=np.float64)
            _shape("example_loss", example_loss, (n,))
        if kernels is not None:
            self._update_compiled(kernels, pred, y, w, None if log_loss_is_loss else example_loss, log_loss_is_loss)
            return
        self._update_confidence(pred, y, w)
        clip = _log_clip(pred.dtype)  # the file's dtype, before the float64 the NumPy steps sum in
        pred = np.ascontiguousarray(pred, dtype=np.float64)
        scratch = self._scratch
        top = pred.argmax(axis=1)
        flat = pred.reshape(-1)
        row_start = scratch.row_starts(n, k)
        index = scratch.get("index", n, np.intp)
        # mode="clip": the indices are valid, and "raise" would buffer the output
        s_true = np.take(flat, np.add(row_start, y, out=index), out=scratch.get("s_true", n), mode="clip")
        s_top = np.take(flat, np.add(row_start, top, out=index), out=scratch.get("s_top", n), mode="clip")
        if self.pred_kind == "logits":
            e = scratch.get("exp", n * k).reshape(n, k)
            total = scratch.get("total", n)
            if n and float(np.max(np.abs(s_top))) <= _UNSHIFTED_SOFTMAX:
                np.exp(pred, out=e)
                np.einsum("ij->i", e, out=total)
                confidence = np.take(e.reshape(-1), index, out=scratch.get("confidence", n), mode="clip")
                confidence /= total
                loss = np.log(total, out=total)
                loss -= s_true  # log-softmax of the true class, negated
            else:
                np.subtract(pred, s_top[:, None], out=e)  # <= 0: exp cannot overflow
                np.exp(e, out=e)
                np.einsum("ij->i", e, out=total)  # in [1, K]
                confidence = np.reciprocal(total, out=scratch.get("confidence", n))
                loss = np.log(total, out=total)
                loss += s_top
                loss -= s_true
        else:
            confidence = s_top
            with np.errstate(divide="ignore"):
                loss = np.log(s_true, out=scratch.get("total", n))
            np.clip(loss, *clip, out=loss)
            np.negative(loss, out=loss)
        correct = top == y
        if log_loss_is_loss:
            example_loss = loss
        self._log_loss += _wsum(loss, w)
        self._correct += _wsum(correct, w)
        if k > self.top_k:
            self._top_k += _wsum(_top_k_hits(pred, s_true, y, self.top_k, scratch), w)
        self._calibration.update(confidence, correct, w, self._scratch)
        np.add.at(self._count, y, 1)
        if example_loss is not None:
            np.add.at(self._class_loss, y, example_loss if w is None else example_loss * w)
            self._loss_rows += n
        one = 1.0 if w is None else w
        if self._confusion is not None:
            cell = np.multiply(y, k, out=self._scratch.get("cell", n, np.intp))
            cell += top
            np.add.at(self._confusion.reshape(-1), cell, one)
        else:
            np.add.at(self._support, y, one)
            np.add.at(self._hits, y[correct], 1.0 if w is None else w[correct])
            np.add.at(self._predicted, top, one)
        self.rows += n
        self.weight_sum += _total_weight(w, n)

    def _update_confidence(self, pred, y, w) -> None:
        """NumPy steps: the rows' top-label confidences (adaptive ECE) and every class's reliability bins
        (classwise ECE); the compiled sweep fills these in :meth:`_update_compiled`."""
        n, k = pred.shape
        p = np.asarray(pred, dtype=np.float64)
        top_class = np.argmax(pred, axis=1)  # the top label as np.argmax picks it (the first maximum)
        score = None
        if self.pred_kind == "logits":
            p = np.exp(p - p.max(axis=1, keepdims=True))
            p[np.arange(n), top_class] = 0.0
            others = p.sum(axis=1)  # sum over the other classes: the top confidence's logit without cancellation
            p[np.arange(n), top_class] = 1.0
            with np.errstate(divide="ignore"):
                score = -np.log(others)
            p /= p.sum(axis=1, keepdims=True)
        n_bins = self._class_confidence.shape[1]
        cell = np.minimum((p * n_bins).astype(np.intp), n_bins - 1) + np.arange(k) * n_bins  # [n, K]
        outcome = np.arange(k) == np.asarray(y)[:, None]
        weight = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
        np.add.at(self._class_cells.reshape(-1), 2 * cell + outcome, np.broadcast_to(weight[:, None], (n, k)))
        np.add.at(self._class_confidence.reshape(-1), cell, p * weight[:, None])
        self._adaptive.update(p[np.arange(n), top_class], top_class == y, w, score=score)

    def _update_compiled(self, kernels, pred, y, w, example_loss, log_loss_is_loss: bool) -> None:
        """The same update in one compiled sweep (:func:`losskit.fused.metrics.multiclass_update`)."""
        sums = np.zeros(4)
        calibration, adaptive = self._calibration, self._adaptive
        empty = np.zeros(0)
        with_confusion = self._confusion is not None
        n = len(pred)
        columns = pred.T if pred.flags.f_contiguous else np.ascontiguousarray(pred.T)  # [K, n], C order
        # the top confidences and hits, only while the equal-mass ECE keeps its exact rows
        with_rows = adaptive.keeps(n)
        top, hit = (np.empty(n), np.empty(n, dtype=np.uint8)) if with_rows else (empty, np.zeros(0, dtype=np.uint8))
        kernels.multiclass_update(columns, y, _NO_WEIGHT if w is None else w,
                                  empty if example_loss is None else example_loss,
                                  log_loss_is_loss, self.pred_kind == "logits",
                                  *_log_clip(pred.dtype), self.top_k, calibration.weight.reshape(-1),
                                  calibration.confidence, self._count, self._class_loss,
                                  self._confusion if with_confusion else np.zeros((0, 0)),
                                  empty if with_confusion else self._support, empty if with_confusion else self._hits,
                                  empty if with_confusion else self._predicted, sums, self._class_cells,
                                  self._class_confidence, adaptive.histogram, 32 - adaptive.bins_log2, top, hit)
        adaptive.add_counted(n, lambda: (top, hit.view(bool), w))
        self._log_loss += float(sums[0])
        self._correct += float(sums[1])
        if self.n_classes > self.top_k:
            self._top_k += float(sums[2])
        if example_loss is not None or log_loss_is_loss:
            self._loss_rows += n
        self.rows += n
        self.weight_sum += float(sums[3])

    def merge(self, other: MulticlassMetrics) -> MulticlassMetrics:
        _same(self, other, "n_classes", "pred_kind", "top_k")
        self._calibration.merge(other._calibration)
        self._adaptive.merge(other._adaptive)
        self._class_cells += other._class_cells
        self._class_confidence += other._class_confidence
        self.rows += other.rows
        self.weight_sum += other.weight_sum
        self._log_loss += other._log_loss
        self._correct += other._correct
        self._top_k += other._top_k
        self._count += other._count
        self._class_loss += other._class_loss
        self._loss_rows += other._loss_rows
        if self._confusion is not None:
            self._confusion += other._confusion
        else:
            self._support += other._support
            self._hits += other._hits
            self._predicted += other._predicted
        return self

    def result(self) -> dict:
        total = self.weight_sum
        ece, bins = self._calibration.result()
        out = {"accuracy": _mean(self._correct, total)}
        if self.n_classes > self.top_k:
            out[f"top{self.top_k}_accuracy"] = _mean(self._top_k, total)
        out.update({"log_loss": _mean(self._log_loss, total), "ece": ece, "reliability": bins})
        if self._confusion is not None:
            support, hits, predicted = self._confusion.sum(axis=1), np.diagonal(self._confusion), self._confusion.sum(0)
        else:
            support, hits, predicted = self._support, self._hits, self._predicted
        # scikit-learn's f1_score: macro over the classes present in the target or the predictions
        present = (support > 0) | (predicted > 0)
        adaptive = self._adaptive.result()
        out.update({"macro_f1": float(np.mean(_f1(hits, predicted, support)[present])) if present.any() else None,
                    "micro_f1": float(_f1(hits.sum(), predicted.sum(), support.sum())) if total else None,
                    "mce": _mce(bins), "ece_adaptive": adaptive.pop("ece_adaptive"), "adaptive": adaptive,
                    "classwise_ece": _classwise_ece(self._class_cells, self._class_confidence)})
        has_loss = self._loss_rows == self.rows
        out["per_class"] = [
            {"class": c, "support": float(support[c]), "count": int(self._count[c]),
             "loss": _mean(float(self._class_loss[c]), float(support[c])) if has_loss else None,
             "recall": _mean(float(hits[c]), float(support[c])),
             "precision": _mean(float(hits[c]), float(predicted[c]))}
            for c in range(self.n_classes)]
        if self._confusion is not None:
            out["confusion"] = self._confusion.tolist()
        else:
            out["confusion_omitted"] = (f"{self.n_classes} classes: the confusion matrix is kept only up to "
                                        f"{_CONFUSION_MAX_CLASSES}")
        return out


def _classwise_ece(cells: np.ndarray, confidence: np.ndarray) -> float | None:
    """Mean over classes of each class's ECE, ``sum_b |S_cb - O_cb| / W`` (Kull et al. 2019)."""
    weight = cells.sum(axis=2)
    total = weight.sum(axis=1)
    if not np.all(total > 0):
        return None
    return float(np.mean(np.abs(confidence - cells[:, :, 1]).sum(axis=1) / total))


def _top_k_hits(pred: np.ndarray, s_true: np.ndarray, y: np.ndarray, top_k: int, scratch: _Scratch) -> np.ndarray:
    """Bool ``[n]``: the true class is among the ``top_k`` highest scores, ties ranked as sklearn's
    ``top_k_accuracy_score`` ranks them (equal scores: the higher class index first)."""
    n, k = pred.shape
    s_true = s_true[:, None]
    mask = scratch.get("mask", n * k, bool).reshape(n, k)
    at_least = _row_count(np.greater_equal(pred, s_true, out=mask))  # counts the true class itself
    # rank = #{s_j > s_y} + #{j > y: s_j = s_y} = at_least - 1 - #{j < y: s_j = s_y} <= at_least - 1
    hits = at_least <= top_k
    unsure = np.flatnonzero(~hits)  # a miss, unless scores tie with the true class's
    if unsure.size:
        equal = pred[unsure] == s_true[unsure]
        tied = np.flatnonzero(_row_count(equal) > 1)
        if tied.size:  # rare with continuous scores: count the ties that rank below the true class
            rows = unsure[tied]
            before = np.arange(k) < y[rows, None]
            rank = at_least[rows].astype(np.intp) - 1 - _row_count(equal[tied] & before)
            hits[rows] = rank < top_k
    return hits
