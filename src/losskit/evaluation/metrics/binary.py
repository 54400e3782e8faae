"""Binary classification metrics of one score per example, streaming and mergeable."""

from __future__ import annotations

import numpy as np

from ..adaptive import from_rank
from ..auc import RankAUC
from ._common import (
    _NO_WEIGHT,
    _as_bool,
    _Calibration,
    _compiled,
    _f1,
    _floats,
    _kind,
    _log_clip,
    _logit,
    _mce,
    _mean,
    _same,
    _Scratch,
    _shape,
    _total_weight,
    _weights,
    _wsum,
    _wsum_masked,
)

__all__ = ["BinaryMetrics"]


class BinaryMetrics:
    r"""Binary classification metrics of one score per example, streaming and mergeable.

    ``update(pred [n], y [n] in {0, 1}, w [n] or None)``: ``pred`` logits or probabilities of the
    positive class (``pred_kind``). ``result()`` keys:

    * ``accuracy``: prediction positive iff ``p > 0.5`` (logit > 0), = ``accuracy_score``;
    * ``log_loss``: = ``log_loss(y, p, labels=[0, 1])``; from logits it is
      ``log(1 + e^{-|z|}) + (|z| if z is on the wrong side else 0)``, finite for any finite logit
      (sklearn's clipping of ``p`` caps it near 36 instead, so the two part for ``|z| > ~36``);
    * ``brier``: :math:`\sum w (p - y)^2 / W`, = ``brier_score_loss``;
    * ``roc_auc`` and ``auc`` (:class:`~.auc.RankAUC`'s dict: ``method``, ``bound``) on the logit,
      = ``roc_auc_score``. For probs the score is ``log p - log1p(-p)``, which ranks as ``p`` does
      (0 and 1 give -inf and +inf) except that float64 probabilities a few ulps apart can round to
      one logit, a tie; float32 model outputs (2**-24 apart at least) never do;
    * ``ece`` and ``reliability`` (per bin ``lower``, ``upper``, ``weight``, ``confidence``,
      ``frequency``; None means for empty bins): confidence = ``p``, outcome = ``y``; binning as
      ``_Calibration`` (an inner edge goes to the upper bin, 1.0 to the last).

    >>> m = BinaryMetrics("probs", n_bins=2)
    >>> m.update(np.array([0.2, 0.9, 0.6, 0.4]), np.array([0, 1, 0, 1]), None)
    >>> r = m.result()
    >>> r["accuracy"], r["roc_auc"], round(r["brier"], 4), round(r["ece"], 4)
    (0.5, 0.75, 0.1925, 0.225)
    """

    def __init__(self, pred_kind: str, *, n_bins: int = 15, auc_exact_limit: int = 10_000_000,
                 auc_bins_log2: int = 20):
        self.pred_kind = _kind(pred_kind)
        self.rows = 0
        self.weight_sum = 0.0
        self._log_loss = 0.0
        self._brier = 0.0
        self._correct = 0.0
        self._calibration = _Calibration(n_bins)
        self._auc = RankAUC(auc_exact_limit, auc_bins_log2)
        self._f1 = np.zeros(3)  # weighted true positives, predicted positives, positives
        self._scratch = _Scratch()

    def update(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        pred = _floats(pred)
        n = len(pred)
        _shape("pred", pred, (n,))
        _shape("y", y, (n,))
        kernels = _compiled(n)
        w = _weights(w, n, kernels is not None)
        if kernels is not None:
            self._update_compiled(kernels, pred, np.asarray(y), w)
            return
        clip = _log_clip(pred.dtype)  # the file's dtype, before the float64 the NumPy steps sum in
        pred = np.asarray(pred, dtype=np.float64)
        truth = _as_bool(y)
        scratch = self._scratch
        if self.pred_kind == "logits":
            z = pred
            a = np.abs(z, out=scratch.get("a", n))
            e = np.negative(a, out=scratch.get("e", n))
            np.exp(e, out=e)  # exp(-|z|) in (0, 1]: never overflows
            wrong = np.not_equal(z > 0, truth)
            p = np.log1p(e, out=scratch.get("p", n))
            # -log sigmoid(+-z) = log(1 + exp(-|z|)) + max(t, 0) with t = z (y = 0) or -z (y = 1);
            # max(t, 0) is |z| on the wrong side and 0 otherwise (z = 0 counts either way)
            log_loss = _wsum(p, w) + _wsum_masked(a, wrong, w)
            # q = e / (1 + e) = sigmoid(-|z|), the smaller of p and 1 - p; p = 0.5 + sign(z) (0.5 - q)
            np.add(e, 1.0, out=p)
            np.divide(e, p, out=p)
            np.subtract(0.5, p, out=p)
            np.copysign(p, z, out=p)
            p += 0.5
            score, work = z, a
        else:
            p = pred
            with np.errstate(divide="ignore"):
                log_p = np.log(p, out=scratch.get("a", n))
                log_q = np.negative(p, out=scratch.get("e", n))
                np.log1p(log_q, out=log_q)  # log(1 - p) without cancellation
            score = np.subtract(log_p, log_q, out=scratch.get("score", n))  # the logit: -inf at 0, +inf at 1
            wrong = np.not_equal(p > 0.5, truth)
            # sklearn: -log(clip(p_true, eps, 1 - eps)), p_true = p (y = 1) or 1 - p (y = 0)
            np.clip(log_p, *clip, out=log_p)
            np.clip(log_q, *clip, out=log_q)
            log_loss = -_wsum_masked(log_p, truth, w) - _wsum_masked(log_q, ~truth, w)
            work = log_p
        positive = z > 0 if self.pred_kind == "logits" else p > 0.5
        self._f1 += [_wsum(positive & truth, w), _wsum(positive, w), _wsum(truth, w)]
        residual = np.subtract(p, truth, out=work)
        residual *= residual
        batch_weight = _total_weight(w, n)
        self._brier += _wsum(residual, w)
        self._log_loss += log_loss
        self._correct += batch_weight - _wsum(wrong, w)
        self._calibration.update(p, truth, w, scratch)
        self._auc.update(score, truth, w)
        self.rows += n
        self.weight_sum += batch_weight

    def _update_compiled(self, kernels, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        """The same update in one compiled sweep (:func:`losskit.fused.metrics.binary_update`)."""
        sums = np.zeros(7)
        auc, calibration = self._auc, self._calibration
        low, high = _log_clip(pred.dtype)
        kernels.binary_update(pred, y, _NO_WEIGHT if w is None else w, self.pred_kind == "logits", low,
                              high, auc.histogram, 32 - auc.bins_log2, calibration.weight.reshape(-1),
                              calibration.confidence, sums)
        self._log_loss += float(sums[0])
        self._brier += float(sums[1])
        self._correct += float(sums[2])
        n = len(pred)
        auc.add_counted(n, lambda: (pred if self.pred_kind == "logits" else _logit(pred), y != 0, w))
        self._f1 += sums[4:]
        self.rows += n
        self.weight_sum += float(sums[3])

    def merge(self, other: BinaryMetrics) -> BinaryMetrics:
        _same(self, other, "pred_kind")
        self._calibration.merge(other._calibration)
        self._auc.merge(other._auc)
        self.rows += other.rows
        self.weight_sum += other.weight_sum
        self._log_loss += other._log_loss
        self._brier += other._brier
        self._correct += other._correct
        self._f1 += other._f1
        return self

    def result(self) -> dict:
        total = self.weight_sum
        ece, bins = self._calibration.result()
        auc = self._auc.result()
        adaptive = from_rank(self._auc, self._calibration.n_bins)
        return {"accuracy": _mean(self._correct, total), "roc_auc": auc["roc_auc"],
                "log_loss": _mean(self._log_loss, total), "brier": _mean(self._brier, total), "ece": ece,
                "average_precision": auc.pop("average_precision"), "f1": float(_f1(*self._f1)) if total else None,
                "mce": _mce(bins), "ece_adaptive": adaptive.pop("ece_adaptive"), "adaptive": adaptive,
                "auc": auc, "reliability": bins}

