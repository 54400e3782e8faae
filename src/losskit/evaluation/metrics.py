r"""Streaming, mergeable metric accumulators for ``losskit eval``: binary, multi-class, multi-label, regression.

Each accumulator takes row batches with ``update(...)`` (arrays already checked by the reader:
finite, right shapes, labels in range, weights >= 0 or ``None`` for all 1), adds another one's
state with ``merge(other)`` (returns self), and reports with ``result()`` (a dict of plain
Python floats, lists and dicts; ``None`` where a metric is undefined, e.g. no weight). All keep
``rows`` (int) and ``weight_sum`` (float). Weights mean what scikit-learn's ``sample_weight``
means: every metric is a weighted average over examples, and each is tested against the
scikit-learn function it is named after.

``pred_kind`` (classifiers) is ``"logits"`` or ``"probs"``. With logits, probabilities are the
sigmoid / softmax of them and log-losses come straight from the logits (log-sigmoid,
log-softmax: no overflow for any finite logit); a prediction is positive when the logit is > 0.
With probs, the log-loss clips the probability of the true class into ``[eps, 1 - eps]``,
``eps = np.finfo(np.float64).eps``, as ``sklearn.metrics.log_loss`` (1.9) does, rows are not
renormalised (scikit-learn >= 1.5 only warns when they do not sum to 1) and a prediction is
positive when ``p > 0.5``.

Design note: the state is float64 sums only, so it pickles small (it travels between Dask
workers) and merges by addition: a merge is exact for counts and, for means, as exact as the
sum. Two things cannot be plain sums: the spread of the targets behind :math:`R^2` is kept per
batch by a shifted two-pass mean and :math:`M_2` and combined with Chan et al.'s parallel
formula (``sum y^2 - W mean^2`` would cancel every digit when ``|mean| >> std``), and ROC AUC is
the :class:`~.auc.RankAUC` accumulator (exact under a row limit, binned with a bound beyond).
Speed: every update makes a few passes over the batch with NumPy ufuncs, writing into reused
buffers, and histograms grow by ``np.add.at`` in place (``np.bincount`` allocates a fresh array
per batch, which costs more than the counting for a large histogram); no Python loop over rows.
Weighted sums and row sums use ``np.einsum`` (several times faster than ``sum(axis=1)`` on narrow
rows) rather than BLAS: BLAS threads would oversubscribe the cores of a Dask worker that already
runs one task per core.
"""

from __future__ import annotations

import os

import numpy as np

from .auc import RankAUC, key_lower_value, order_key

__all__ = ["BinaryMetrics", "MulticlassMetrics", "MultilabelMetrics", "RegressionMetrics"]

_PRED_KINDS = ("logits", "probs")
_EPS = np.finfo(np.float64).eps
# log is monotone, so clip(log p, log eps, log(1 - eps)) == log(clip(p, eps, 1 - eps)), sklearn's rule
_LOG_EPS = float(np.log(_EPS))
_LOG_1M_EPS = float(np.log(1.0 - _EPS))
# softmax without the max shift when every row's max logit is within this: exp cannot overflow,
# the largest term is >= e^-64, and log(sum) carries an absolute error <= ~70 ulp(1)
_UNSHIFTED_SOFTMAX = 64.0
_CONFUSION_MAX_CLASSES = 1000
_RESIDUAL_BITS = 16
_RESIDUAL_BINS = 50
_RESIDUAL_RANGE = (0.005, 0.995)
_AUC_BUDGET_LOG2 = 22  # multi-label: K histograms of 2**bins_log2 bins x 16 bytes <= 2**26 bytes = 64 MB
_AUC_MIN_BINS_LOG2 = 8


# -- helpers -------------------------------------------------------------------------------------

def _kind(pred_kind) -> str:
    if pred_kind not in _PRED_KINDS:
        raise ValueError(f"pred_kind: expected 'logits' or 'probs', got {pred_kind!r}")
    return pred_kind


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _shape(name: str, array: np.ndarray, shape: tuple) -> None:
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")


_NO_WEIGHT = np.zeros(0)


def _compiled():
    """:mod:`losskit.fused.metrics` (the compiled update steps), or None where numba is missing or
    ``LOSSKIT_EVAL_KERNELS=0`` asks for the NumPy steps (the tests compare the two)."""
    if os.environ.get("LOSSKIT_EVAL_KERNELS", "1") == "0":
        return None
    try:
        from ..fused import metrics
    except ImportError:
        return None
    return metrics


def _floats(pred) -> np.ndarray:
    """``pred`` as a NumPy float32 or float64 array (float32 kept: the compiled steps widen each value)."""
    pred = np.asarray(pred)
    return pred if pred.dtype in (np.float32, np.float64) else pred.astype(np.float64)


def _weights(w, n: int, compiled: bool = False) -> np.ndarray | None:
    """``w`` as float64 ``[n]`` (float32 kept for the compiled steps, which widen each value)."""
    if w is None:
        return None
    w = np.asarray(w)
    if not (compiled and w.dtype == np.float32):
        w = w.astype(np.float64, copy=False)
    _shape("w", w, (n,))
    return w


def _wsum(values: np.ndarray, w: np.ndarray | None) -> float:
    """``sum_i w_i v_i`` (``sum_i v_i`` when ``w`` is None) as a Python float."""
    if w is None:
        return float(np.count_nonzero(values)) if values.dtype == bool else float(np.sum(values))
    return float(np.einsum("i,i->", w, values))


def _wcolsum(values: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``sum_i w_i v_ik`` per column ``k`` of ``values [n, K]``, float64 ``[K]``."""
    if w is None:
        return values.sum(axis=0, dtype=np.float64)
    return np.einsum("i,ij->j", w, values)


def _row_count(mask: np.ndarray) -> np.ndarray:
    """Number of True per row of a bool ``[n, K]``: for ``K < 256`` a uint8 matrix-vector product (NumPy's
    own integer loop), several times faster than ``mask.sum(axis=1)`` on narrow rows."""
    k = mask.shape[1]
    if k < 256:
        return mask.view(np.uint8) @ np.ones(k, dtype=np.uint8)
    return mask.sum(axis=1, dtype=np.int32)


def _wsum_masked(values: np.ndarray, mask: np.ndarray, w: np.ndarray | None) -> float:
    """``sum_i w_i v_i [mask_i]`` in one pass, no temporary (``values`` finite where ``mask`` holds)."""
    if w is None:
        return float(np.einsum("i,i->", values, mask))
    return float(np.einsum("i,i,i->", w, values, mask))


def _as_bool(y: np.ndarray) -> np.ndarray:
    return y if y.dtype == bool else y != 0


class _Scratch:
    """Work buffers reused from batch to batch, by name, grown to the batch size on demand.

    Fresh multi-megabyte temporaries cost page faults on every batch (measured: about a third of a
    binary update); these are reused instead. Not part of the state: a copy or pickle is empty.
    """

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=np.float64) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or len(buffer) < n:
            buffer = self._buffers[name] = np.empty(n, dtype=dtype)
        return buffer[:n]

    def row_starts(self, n: int, k: int) -> np.ndarray:
        """``[0, k, 2k, ...]``, ``n`` of them: the flat index of each row of a C-contiguous ``[n, k]``."""
        name = f"row starts {k}"
        starts = self._buffers.get(name)
        if starts is None or len(starts) < n:
            starts = self._buffers[name] = np.arange(n, dtype=np.intp) * k
        return starts[:n]

    def __reduce__(self):
        return (_Scratch, ())


def _mean(total: float, weight: float) -> float | None:
    return total / weight if weight > 0 else None


def _same(self, other, *names: str) -> None:
    if type(other) is not type(self):
        raise TypeError(f"{type(self).__name__}.merge: expected a {type(self).__name__}, got {type(other).__name__}")
    for name in names:
        if getattr(self, name) != getattr(other, name):
            raise ValueError(f"{type(self).__name__}.merge: {name} differs: {getattr(self, name)!r} vs "
                             f"{getattr(other, name)!r}")


def _logit(probs: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)``: a monotone ranking score for ROC AUC, ``-inf`` at 0 and ``+inf`` at 1."""
    with np.errstate(divide="ignore"):
        score = np.log(probs)
        score -= np.log1p(-probs)  # log1p(-p): no cancellation for small p
    return score


# -- calibration -----------------------------------------------------------------------------------

class _Calibration:
    r"""Reliability bins: ``n_bins`` equal-width bins of [0, 1] on a confidence, with the observed outcome.

    Bin ``b`` is ``[edges[b], edges[b+1])``, ``b = min(floor(p * n_bins), n_bins - 1)``, with
    ``edges[b]`` the float64 nearest ``b / n_bins`` at which that product steps (``b / n_bins`` itself
    or an ulp from it, see ``_floor_edges``): a confidence exactly on an inner edge goes to the upper
    bin, as ``torch.bucketize(confidence, linspace(0, 1, n_bins + 1), right=True) - 1`` in
    torchmetrics' ``_binning_bucketize``; a confidence of exactly 1.0 goes to the last bin
    ``[edges[-2], 1]`` (torchmetrics counts it in a hidden extra bin, torchmetrics#3510).
    ``ECE = sum_b (W_b / W) |conf_b - freq_b| = sum_b |S_b - O_b| / W`` with ``S_b``, ``O_b``
    the weighted sums of confidence and outcome in the bin, as torchmetrics'
    ``BinaryCalibrationError(n_bins, norm="l1")`` with sample weights.
    """

    def __init__(self, n_bins: int):
        self.n_bins = _count("n_bins", n_bins, 1)
        self.edges = _floor_edges(self.n_bins)
        self.weight = np.zeros((self.n_bins, 2))  # [bin, outcome]: one scatter-add gives W_b and O_b
        self.confidence = np.zeros(self.n_bins)  # sum w * confidence per bin

    def update(self, confidence: np.ndarray, outcome: np.ndarray, w: np.ndarray | None, scratch: _Scratch) -> None:
        """Add ``confidence [n]`` in [0, 1] with ``outcome [n]`` bool."""
        n = len(confidence)
        work = np.multiply(confidence, self.n_bins, out=scratch.get("calibration", n))
        index = scratch.get("calibration index", n, np.intp)
        np.copyto(index, work, casting="unsafe")  # confidence >= 0: truncation is floor
        np.minimum(index, self.n_bins - 1, out=index)  # 1.0 goes to the last bin
        split = np.multiply(index, 2, out=scratch.get("calibration split", n, np.intp))
        split += outcome
        # np.add.at: faster than np.bincount for a few bins, and nothing to allocate
        np.add.at(self.weight.reshape(-1), split, 1.0 if w is None else w)
        np.add.at(self.confidence, index, confidence if w is None else np.multiply(confidence, w, out=work))

    def merge(self, other: _Calibration) -> None:
        if other.n_bins != self.n_bins:
            raise ValueError(f"n_bins differs: {self.n_bins} vs {other.n_bins}")
        self.weight += other.weight
        self.confidence += other.confidence

    def result(self) -> tuple[float | None, list[dict]]:
        weight, outcome, confidence = self.weight.sum(axis=1), self.weight[:, 1], self.confidence
        total = float(weight.sum())
        ece = float(np.abs(confidence - outcome).sum()) / total if total > 0 else None
        bins = []
        for b in range(self.n_bins):
            w_b = float(weight[b])
            bins.append({"lower": float(self.edges[b]), "upper": float(self.edges[b + 1]), "weight": w_b,
                         "confidence": float(confidence[b]) / w_b if w_b > 0 else None,
                         "frequency": float(outcome[b]) / w_b if w_b > 0 else None})
        return ece, bins


def _floor_edges(n_bins: int) -> np.ndarray:
    """The float64 edges at which ``floor(p * n_bins)`` (rounded product) steps: ``edges[b]`` is the least
    ``p`` with ``floor(p * n_bins) >= b``. Each is ``b / n_bins`` or within an ulp of it; binning by the
    product is then exactly binning by these edges, with no search and no correction pass."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for b in range(1, n_bins):
        edge = edges[b]
        while np.floor(edge * n_bins) >= b:
            edge = np.nextafter(edge, -np.inf)
        while np.floor(edge * n_bins) < b:
            edge = np.nextafter(edge, np.inf)
        edges[b] = edge
    return edges


# -- binary --------------------------------------------------------------------------------------------

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
        self._scratch = _Scratch()

    def update(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        pred = _floats(pred)
        n = len(pred)
        _shape("pred", pred, (n,))
        _shape("y", y, (n,))
        kernels = _compiled()
        w = _weights(w, n, kernels is not None)
        if kernels is not None:
            self._update_compiled(kernels, pred, np.asarray(y), w)
            return
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
            np.clip(log_p, _LOG_EPS, _LOG_1M_EPS, out=log_p)
            np.clip(log_q, _LOG_EPS, _LOG_1M_EPS, out=log_q)
            log_loss = -_wsum_masked(log_p, truth, w) - _wsum_masked(log_q, ~truth, w)
            work = log_p
        residual = np.subtract(p, truth, out=work)
        residual *= residual
        batch_weight = float(n) if w is None else float(np.sum(w))
        self._brier += _wsum(residual, w)
        self._log_loss += log_loss
        self._correct += batch_weight - _wsum(wrong, w)
        self._calibration.update(p, truth, w, scratch)
        self._auc.update(score, truth, w)
        self.rows += n
        self.weight_sum += batch_weight

    def _update_compiled(self, kernels, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        """The same update in one compiled sweep (:func:`losskit.fused.metrics.binary_update`)."""
        sums = np.zeros(4)
        auc, calibration = self._auc, self._calibration
        kernels.binary_update(pred, y, _NO_WEIGHT if w is None else w, self.pred_kind == "logits", _LOG_EPS,
                              _LOG_1M_EPS, auc.histogram, 32 - auc.bins_log2, calibration.weight.reshape(-1),
                              calibration.confidence, sums)
        self._log_loss += float(sums[0])
        self._brier += float(sums[1])
        self._correct += float(sums[2])
        n = len(pred)
        auc.add_counted(n, float(sums[3]), lambda: (pred if self.pred_kind == "logits" else _logit(pred), y != 0, w))
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
        return self

    def result(self) -> dict:
        total = self.weight_sum
        ece, bins = self._calibration.result()
        auc = self._auc.result()
        return {"accuracy": _mean(self._correct, total), "roc_auc": auc["roc_auc"],
                "log_loss": _mean(self._log_loss, total), "brier": _mean(self._brier, total), "ece": ece,
                "auc": auc, "reliability": bins}


# -- multi-class -------------------------------------------------------------------------------------

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

    def __init__(self, n_classes: int, pred_kind: str, *, top_k: int = 5, n_bins: int = 15):
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
        kernels = _compiled()
        w = _weights(w, n, kernels is not None)
        y = np.asarray(y)
        y = y if kernels is not None and y.dtype.kind in "iu" else y.astype(np.intp)
        log_loss_is_loss = isinstance(example_loss, str) and example_loss == "log_loss"
        if example_loss is not None and not log_loss_is_loss:
            example_loss = np.asarray(example_loss, dtype=np.float64)
            _shape("example_loss", example_loss, (n,))
        if kernels is not None:
            self._update_compiled(kernels, pred, y, w, example_loss)
            return
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
            np.clip(loss, _LOG_EPS, _LOG_1M_EPS, out=loss)
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
        self.weight_sum += float(n) if w is None else float(np.sum(w))

    def _update_compiled(self, kernels, pred, y, w, example_loss) -> None:
        """The same update in one compiled sweep (:func:`losskit.fused.metrics.multiclass_update`)."""
        sums = np.zeros(4)
        calibration = self._calibration
        empty = np.zeros(0)
        with_confusion = self._confusion is not None
        log_loss_is_loss = isinstance(example_loss, str)
        columns = pred.T if pred.flags.f_contiguous else np.ascontiguousarray(pred.T)  # [K, n], C order
        kernels.multiclass_update(columns, y, _NO_WEIGHT if w is None else w,
                                  empty if example_loss is None or log_loss_is_loss else example_loss,
                                  log_loss_is_loss, self.pred_kind == "logits",
                                  _LOG_EPS, _LOG_1M_EPS, self.top_k, calibration.weight.reshape(-1),
                                  calibration.confidence, self._count, self._class_loss,
                                  self._confusion if with_confusion else np.zeros((0, 0)),
                                  empty if with_confusion else self._support, empty if with_confusion else self._hits,
                                  empty if with_confusion else self._predicted, sums)
        self._log_loss += float(sums[0])
        self._correct += float(sums[1])
        if self.n_classes > self.top_k:
            self._top_k += float(sums[2])
        if example_loss is not None:
            self._loss_rows += len(pred)
        self.rows += len(pred)
        self.weight_sum += float(sums[3])

    def merge(self, other: MulticlassMetrics) -> MulticlassMetrics:
        _same(self, other, "n_classes", "pred_kind", "top_k")
        self._calibration.merge(other._calibration)
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


# -- multi-label -------------------------------------------------------------------------------------

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
        self.weight_sum += float(n) if w is None else float(np.sum(w))

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
        out = {"exact_match": exact_match, "accuracy": exact_match,
               "hamming_loss": _mean(self._wrong, total * k),
               "roc_auc": float(np.mean([a["roc_auc"] for a in defined])) if defined else None,
               "auc": {"method": methods.pop() if len(methods) == 1 else "mixed",
                       "bound": float(np.mean([a["bound"] for a in defined])) if defined else 0.0}}
        undefined = [label for label, a in enumerate(aucs) if a["roc_auc"] is None]
        if undefined:
            out["roc_auc_undefined"] = undefined
        out["per_label"] = [
            {"label": label, "positives": float(self._positives[label]),
             "loss": _mean(float(self._loss[label]), total) if self._loss_rows == self.rows else None,
             "accuracy": _mean(float(self._correct[label]), total),
             "roc_auc": a["roc_auc"], "auc_method": a["method"], "auc_bound": a["bound"]}
            for label, a in enumerate(aucs)]
        return out


def _auc_bins_log2(n_labels: int) -> int:
    """The largest ``bins_log2`` (<= 20, >= 8) with ``n_labels`` histograms of ``2**bins_log2 x 16`` bytes <= 64 MB."""
    need = int(np.ceil(np.log2(n_labels)))
    return min(20, max(_AUC_MIN_BINS_LOG2, _AUC_BUDGET_LOG2 - need))


# -- regression ----------------------------------------------------------------------------------------

class RegressionMetrics:
    r"""Regression metrics of ``m`` outputs per example, streaming and mergeable.

    ``update(pred [n, m], y [n, m], w [n] or None)`` (``[n]`` accepted when ``m == 1``).
    ``result()`` keys, each the uniform average over outputs, as scikit-learn's defaults
    (``multioutput="uniform_average"``, ``sample_weight=w``):

    * ``mse`` = ``mean_squared_error``, ``mae`` = ``mean_absolute_error``;
    * ``r2`` = ``r2_score`` (``force_finite=True``): :math:`1 - SS_{res} / SS_{tot}` per output;
      an output whose target is constant (:math:`SS_{tot} = 0`) scores 1.0 if predicted perfectly
      and 0.0 otherwise; None below 2 rows (sklearn returns NaN there);
    * ``per_output`` (only when ``m > 1``): ``[{output, mse, mae, r2}]``;
    * ``residuals``: a histogram of ``pred - y`` (all outputs pooled) for a figure: ``edges``
      (51) and ``weights`` (50 equal-width bins between the 0.5% and 99.5% weighted quantiles),
      ``below`` and ``above`` (the weight outside), ``note``.

    :math:`SS_{tot}` streams as a weighted mean and :math:`M_2 = \sum w (y - \bar y)^2` per output:
    per batch two passes about the first row the accumulator saw (so a constant output gives
    exactly 0, and the mean of targets near 1e6 keeps its low digits), with the compensation term
    of the corrected two-pass algorithm; batches and merges combine with Chan et al.'s formula.
    The residual histogram keeps ``2**16`` bins of the float32 bit pattern (relative resolution
    ~0.8%, any range, mergeable by addition) and is re-binned in ``result()``, assuming weight
    spread evenly inside each fine bin.
    """

    def __init__(self, n_outputs: int):
        self.n_outputs = _count("n_outputs", n_outputs, 1)
        m = self.n_outputs
        self.rows = 0
        self.weight_sum = 0.0
        self._squared = np.zeros(m)
        self._absolute = np.zeros(m)
        # the weighted mean of y is kept as shift + offset, shift = the first weighted batch's first row:
        # means near 1e6 would lose their low digits in Chan's delta = mean_b - mean_a otherwise
        self._shift: np.ndarray | None = None
        self._offset = np.zeros(m)
        self._m2 = np.zeros(m)
        self._residuals = np.zeros(1 << _RESIDUAL_BITS)

    def update(self, pred: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        m = self.n_outputs
        pred = np.asarray(pred, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n = len(pred)
        if m == 1 and pred.ndim == 1:
            pred = pred[:, None]
        if m == 1 and y.ndim == 1:
            y = y[:, None]
        _shape("pred", pred, (n, m))
        _shape("y", y, (n, m))
        w = _weights(w, n)
        batch_weight = float(n) if w is None else float(np.sum(w))
        residual = pred - y
        self._absolute += _wcolsum(np.abs(residual), w)
        key = order_key(residual, _RESIDUAL_BITS).reshape(-1)
        np.add.at(self._residuals, key, 1.0 if w is None else (w if m == 1 else np.repeat(w, m)))
        residual *= residual
        self._squared += _wcolsum(residual, w)
        if batch_weight > 0:
            if self._shift is None:
                self._shift = y[0].copy()
            offset, m2 = _mean_m2(y, w, batch_weight, self._shift)
            self._offset, self._m2 = _chan(self.weight_sum, self._offset, self._m2, batch_weight, offset, m2)
        self.rows += n
        self.weight_sum += batch_weight

    def merge(self, other: RegressionMetrics) -> RegressionMetrics:
        _same(self, other, "n_outputs")
        if other.weight_sum > 0:
            if self._shift is None:
                self._shift = other._shift.copy()
            offset = (other._shift - self._shift) + other._offset  # the other's mean in this frame
            self._offset, self._m2 = _chan(self.weight_sum, self._offset, self._m2, other.weight_sum, offset,
                                           other._m2)
        self.rows += other.rows
        self.weight_sum += other.weight_sum
        self._squared += other._squared
        self._absolute += other._absolute
        self._residuals += other._residuals
        return self

    def result(self) -> dict:
        total = self.weight_sum
        if total > 0:
            mse, mae = self._squared / total, self._absolute / total
        else:
            mse = mae = None
        if self.rows >= 2 and total > 0:
            # sklearn's force_finite rule: a zero SS_tot gives 1.0 for a perfect fit, 0.0 otherwise
            perfect = self._squared == 0
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(self._m2 != 0, 1.0 - self._squared / self._m2, 0.0)
            r2 = np.where(perfect, 1.0, r2)
        else:
            r2 = None
        out = {"mse": None if mse is None else float(np.mean(mse)),
               "mae": None if mae is None else float(np.mean(mae)),
               "r2": None if r2 is None else float(np.mean(r2))}
        if self.n_outputs > 1:
            out["per_output"] = [{"output": j, "mse": None if mse is None else float(mse[j]),
                                  "mae": None if mae is None else float(mae[j]),
                                  "r2": None if r2 is None else float(r2[j])} for j in range(self.n_outputs)]
        out["residuals"] = _rebin_residuals(self._residuals)
        return out


def _mean_m2(y: np.ndarray, w: np.ndarray | None, weight: float, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ``mean - shift`` and ``M2 = sum_i w_i (y_i - mean)^2`` per column of ``y [n, m]`` (``weight > 0``).

    ``shift`` is a value of the data (the first row seen), so ``y - shift`` is exact for nearby values and a
    constant column is exactly 0 from there on (M2 exactly 0, as ``r2_score``'s constant-target rule needs).
    """
    d = y - shift
    offset = _wcolsum(d, w) / weight
    d -= offset
    correction = _wcolsum(d, w)  # ~0; what rounding left in the first pass's mean
    d *= d
    m2 = _wcolsum(d, w)
    m2 -= correction * correction / weight  # the corrected two-pass algorithm (Chan, Golub & LeVeque 1983)
    np.maximum(m2, 0.0, out=m2)
    return offset + correction / weight, m2


def _chan(w_a: float, mean_a: np.ndarray, m2_a: np.ndarray, w_b: float, mean_b: np.ndarray,
          m2_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Chan et al.'s parallel combination of two weighted ``(W, mean, M2)``:
    :math:`M_2 = M_{2a} + M_{2b} + \delta^2 W_a W_b / W`, with no cancellation between large sums."""
    if w_a <= 0:
        return mean_b.copy(), m2_b.copy()
    total = w_a + w_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (w_b / total)
    m2 = m2_a + m2_b + delta * delta * (w_a * w_b / total)
    return mean, m2


def _rebin_residuals(fine: np.ndarray) -> dict:
    """Equal-width bins between the 0.5% and 99.5% weighted quantiles of the fine float32-key histogram."""
    total = float(fine.sum())
    empty = {"edges": [], "weights": [], "below": 0.0, "above": 0.0, "note": "no weight"}
    if total <= 0:
        return empty
    bins = len(fine)
    # fine bin b spans [lower[b], lower[b + 1]); NaN bit patterns (beyond +-inf) become +-inf,
    # then +-inf is clipped to the float32 range so that every span is finite
    lower = np.append(key_lower_value(np.arange(bins), _RESIDUAL_BITS), np.inf)
    lower[: bins // 2] = np.where(np.isnan(lower[: bins // 2]), -np.inf, lower[: bins // 2])
    lower[bins // 2:] = np.where(np.isnan(lower[bins // 2:]), np.inf, lower[bins // 2:])
    big = float(np.finfo(np.float32).max)
    np.clip(lower, -big, big, out=lower)
    cumulative = np.concatenate(([0.0], np.cumsum(fine)))

    def quantile(q: float) -> float:
        target = q * total
        b = int(np.searchsorted(cumulative[1:], target, side="left"))
        b = min(b, bins - 1)
        share = (target - cumulative[b]) / fine[b] if fine[b] > 0 else 0.0
        return float(lower[b] + min(max(share, 0.0), 1.0) * (lower[b + 1] - lower[b]))

    low, high = quantile(_RESIDUAL_RANGE[0]), quantile(_RESIDUAL_RANGE[1])
    if not high > low:
        low, high = low - 0.5, low + 0.5
    edges = np.linspace(low, high, _RESIDUAL_BINS + 1)
    # weight below each edge, spreading each fine bin's weight evenly over its span
    below_edge = np.interp(edges, lower, cumulative)
    weights = np.diff(below_edge)
    below, above = float(below_edge[0]), float(total - below_edge[-1])
    note = (f"between the {_RESIDUAL_RANGE[0]:.1%} and {_RESIDUAL_RANGE[1]:.1%} weighted quantiles; "
            f"weight outside: {below / total:.2%} below, {above / total:.2%} above")
    return {"edges": edges.tolist(), "weights": weights.tolist(), "below": below, "above": above, "note": note}
