r"""Streaming, mergeable ROC AUC: exact while the rows fit under a limit, binned (with a bound) beyond.

ROC AUC is the weighted Mann-Whitney statistic: the probability that a random positive scores
above a random negative, a tie counting one half,

.. math::
    \mathrm{AUC} = \frac{1}{PN} \sum_{i: y_i=1} \sum_{j: y_j=0} w_i w_j
        \left([s_i > s_j] + \tfrac12 [s_i = s_j]\right),

with :math:`P`, :math:`N` the positive and negative weight sums. With the scores sorted and
grouped into runs of equal score :math:`g` (positive weight :math:`P_g`, negative :math:`N_g`),
it is :math:`\sum_g P_g (N_{<g} + N_g / 2) / (PN)`: one sort and one cumulative sum.

Design note: an exact AUC needs every score, which a stream over 50M rows cannot keep, and a
rank statistic cannot be merged from per-batch summaries. So :class:`RankAUC` keeps two things:
the raw ``(score, label, weight)`` rows while the total number of rows seen (over batches and
merges) is at most ``exact_limit``, and always a fixed histogram over the scores' float32 bit
patterns. The histogram merges by addition; computing the same formula with the bins as the
groups treats every pair inside one bin as a tie, which moves the result by at most
:math:`\tfrac12 \sum_b P_b N_b / (PN)`, reported as ``bound``. Bins on the float32 bit pattern
(rather than equal-width bins of a chosen range) need no range known in advance, have constant
*relative* resolution (``bins_log2 = 20`` keeps 11 mantissa bits: scores within about 0.05%
of each other share a bin) and keep ``±inf``. Alternatives rejected: t-digest style sketches
(no hard error bound, merges depend on order) and reservoir samples (random error).
"""

from __future__ import annotations

import numpy as np

__all__ = ["RankAUC", "order_key", "key_lower_value", "ap_from_groups"]

_SIGN = np.uint32(0x80000000)


def order_key(values: np.ndarray, bits: int) -> np.ndarray:
    """The top ``bits`` bits of an order-preserving unsigned key of ``values`` taken as float32.

    ``values`` of any shape, any real dtype, ``±inf`` allowed (NaN is not); returns uint32 of the
    same shape in ``[0, 2**bits)``. ``a <= b`` implies ``key(a) <= key(b)``; equal values share a
    key (``-0.0`` and ``+0.0`` included), and values that round to the same float32 and agree in
    the kept bits share one too.

    >>> order_key(np.array([-np.inf, -1.0, 0.0, 1e-30, 1.0, np.inf]), 8).tolist()
    [0, 64, 128, 141, 191, 255]
    """
    with np.errstate(over="ignore"):  # beyond the float32 range: +-inf, still in order
        f = np.asarray(values).astype(np.float32)  # a fresh array: every step below is in place on it
    f += np.float32(0.0)  # -0.0 + 0.0 = +0.0: the two zeros compare equal, so they must share a key
    key = f.view(np.uint32)
    mask = key >> 31
    np.negative(mask, out=mask)  # 0xFFFFFFFF for negative floats, 0 otherwise
    mask |= _SIGN
    # negative: flip every bit (a larger magnitude gives a smaller key); non-negative: set the sign bit
    key ^= mask
    key >>= np.uint32(32 - bits)
    return key


def key_lower_value(keys: np.ndarray, bits: int) -> np.ndarray:
    """The smallest float32 (as float64) whose :func:`order_key` is ``keys``: the inverse of the map.

    Keys whose range holds only NaN bit patterns give NaN.
    """
    full = np.asarray(keys, dtype=np.uint32) << np.uint32(32 - bits)
    negative = full < _SIGN
    pattern = np.where(negative, ~full, full ^ _SIGN).astype(np.uint32)
    with np.errstate(invalid="ignore"):  # signalling-NaN patterns raise the invalid flag when widened
        return pattern.view(np.float32).astype(np.float64)


class RankAUC:
    """Weighted ROC AUC of a score against 0/1 labels, streaming and mergeable.

    ``update(score, y, w)`` takes scores ``[n]`` (any monotone ranking score: logits, or
    probabilities, ``±inf`` allowed), labels ``[n]`` in {0, 1} and weights ``[n]`` (``None``: all 1).
    ``merge(other)`` adds another accumulator built with the same arguments. ``result()`` is
    ``{"roc_auc", "method", "bound"}`` (and ``"reason"`` when ``roc_auc`` is None):

    * ``method == "exact"`` while the total rows seen is ``<= exact_limit``: the weighted
      Mann-Whitney statistic with half credit for ties, equal to
      ``sklearn.metrics.roc_auc_score(y, score, sample_weight=w)``; ``bound`` is 0.0;
    * ``method == "binned"`` beyond it: the same formula on ``2**bins_log2`` bins of the scores'
      float32 bit pattern, pairs in one bin counted as ties; ``|binned - exact| <= bound``.

    The same groups give ``average_precision`` (:func:`ap_from_groups`, = ``average_precision_score``
    when exact) and ``ap_bound``, the bound of its binning error.

    Which one depends only on the total row count, never on how rows were split into batches
    or merged. ``roc_auc`` is None when the positive or the negative weight is 0. Memory: the
    histogram is ``2**bins_log2 * 16`` bytes (16 MB at 20); the exact rows 17 bytes each.

    >>> auc = RankAUC(bins_log2=12)
    >>> auc.update(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), None)
    >>> auc.result()["roc_auc"], auc.result()["method"], auc.result()["bound"]
    (0.75, 'exact', 0.0)
    >>> round(auc.result()["average_precision"], 6)  # sklearn's average_precision_score: 0.833333
    0.833333
    """

    def __init__(self, exact_limit: int = 10_000_000, bins_log2: int = 20):
        if isinstance(exact_limit, bool) or not isinstance(exact_limit, int | np.integer) or exact_limit < 0:
            raise ValueError(f"exact_limit: expected an integer >= 0, got {exact_limit!r}")
        if isinstance(bins_log2, bool) or not isinstance(bins_log2, int | np.integer) or not 1 <= bins_log2 <= 26:
            raise ValueError(f"bins_log2: expected an integer in [1, 26], got {bins_log2!r}")
        self.exact_limit = int(exact_limit)
        self.bins_log2 = int(bins_log2)
        self.rows = 0
        # [bin, 0] negative weight, [bin, 1] positive weight: one scatter-add fills both
        self._hist = np.zeros((1 << self.bins_log2, 2))
        self._exact = True
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._weights: list[np.ndarray | None] = []

    def update(self, score: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> None:
        """Add one batch: ``score [n]`` float, ``y [n]`` 0/1 integers or bools, ``w [n]`` >= 0 or None."""
        n = len(score)
        key = order_key(score, self.bins_log2)
        key <<= np.uint32(1)
        key |= y if y.dtype == bool else (y != 0)  # the label is the key's last bit
        # np.add.at straight into the histogram: np.bincount would allocate, fault in and add a fresh
        # 16 MB array per batch, measured 3x slower
        np.add.at(self._hist.reshape(-1), key, 1.0 if w is None else w)
        self.add_counted(n, lambda: (score, y, w))

    def __getstate__(self) -> dict:
        # a histogram travels between Dask workers as its filled bins: scores fill a few percent of
        # the 2**20 bins (each binade of the scores has 2**11 of them), so 16 MB shrink to about 1 MB
        state = dict(self.__dict__)
        flat = self._hist.reshape(-1)
        filled = np.flatnonzero(flat)
        if filled.size < flat.size // 3:
            state["_hist"] = (self._hist.shape, filled.astype(np.uint32), flat[filled])
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["_hist"], tuple):
            shape, filled, values = state["_hist"]
            hist = np.zeros(shape)
            hist.reshape(-1)[filled] = values
            state["_hist"] = hist
        self.__dict__.update(state)

    @property
    def histogram(self) -> np.ndarray:
        """The histogram as one flat array, ``key * 2 + label``: what a compiled update adds to in place."""
        return self._hist.reshape(-1)

    def add_counted(self, n: int, rows) -> None:
        """Count a batch whose histogram entries are added already (by :meth:`update`, or by a compiled
        kernel); ``rows()`` gives its ``(score, y, w)``, called only while the exact rows are still kept."""
        self.rows += n
        if self._exact:
            if self.rows > self.exact_limit:
                self._drop_exact()
            else:
                score, y, w = rows()
                # copies: the caller may reuse its buffers for the next batch
                self._scores.append(np.array(score, dtype=np.float64))
                self._labels.append(np.array(y, dtype=np.uint8))
                self._weights.append(None if w is None else np.array(w, dtype=np.float64))

    def merge(self, other: RankAUC) -> RankAUC:
        """Add ``other``'s rows (built with the same ``exact_limit`` and ``bins_log2``); returns self."""
        if (other.exact_limit, other.bins_log2) != (self.exact_limit, self.bins_log2):
            raise ValueError(f"RankAUC.merge: expected exact_limit={self.exact_limit}, bins_log2={self.bins_log2}, "
                             f"got {other.exact_limit}, {other.bins_log2}")
        self._hist += other._hist
        self.rows += other.rows
        if self._exact and other._exact and self.rows <= self.exact_limit:
            # the other's arrays are never written to, so sharing them is safe
            self._scores += other._scores
            self._labels += other._labels
            self._weights += other._weights
        else:
            self._drop_exact()
        return self

    def _drop_exact(self) -> None:
        self._exact = False
        self._scores, self._labels, self._weights = [], [], []

    def result(self) -> dict:
        """``{"roc_auc": float | None, "method": "exact" | "binned", "bound": float}`` (+ ``"reason"``)."""
        if self._exact:
            method = "exact"
            neg, pos = self._exact_groups()
        else:
            method = "binned"
            neg, pos = self._hist[:, 0], self._hist[:, 1]
        auc, bound, reason = auc_from_groups(pos, neg)
        ap, ap_bound = ap_from_groups(pos, neg)
        out = {"roc_auc": auc, "method": method, "bound": 0.0 if method == "exact" else bound,
               "average_precision": ap, "ap_bound": 0.0 if method == "exact" else ap_bound}
        if reason:
            out["reason"] = reason
        return out

    def _exact_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Negative and positive weight per run of equal scores, in ascending score order."""
        if not self.rows:
            return np.zeros(0), np.zeros(0)
        score = np.concatenate(self._scores)
        label = np.concatenate(self._labels)
        order = np.argsort(score)
        score = score[order]
        label = label[order]
        if all(w is None for w in self._weights):
            weight = None
        else:
            parts = zip(self._scores, self._weights, strict=True)
            weight = np.concatenate([np.ones(len(s)) if w is None else w for s, w in parts])
            weight = weight[order]
        starts = np.flatnonzero(np.concatenate(([True], score[1:] != score[:-1])))
        pos_w = label.astype(np.float64) if weight is None else weight * label
        neg_w = (1.0 - label) if weight is None else weight - pos_w  # exact: pos_w is 0 or w
        return np.add.reduceat(neg_w, starts), np.add.reduceat(pos_w, starts)


def auc_from_groups(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float, str | None]:
    r"""``(auc, bound, reason)`` from positive and negative weights of score groups in ascending order.

    ``auc`` :math:`= \sum_g P_g (N_{<g} + N_g/2) / (PN)` (ties within a group count one half);
    ``bound`` :math:`= \tfrac12 \sum_g P_g N_g / (PN)`, the most that resolving the ties inside
    the groups could move it. ``auc`` is None, with a ``reason``, when ``P`` or ``N`` is 0.
    """
    p_total = float(np.sum(pos))
    n_total = float(np.sum(neg))
    if p_total <= 0.0 or n_total <= 0.0:
        present = "no rows" if p_total <= 0.0 and n_total <= 0.0 else (
            "only negatives (label 0)" if p_total <= 0.0 else "only positives (label 1)")
        return None, 0.0, f"ROC AUC needs both classes with positive weight; got {present}"
    neg_below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))  # negative weight strictly below each group
    tie = float(np.einsum("i,i->", pos, neg))
    area = float(np.einsum("i,i->", pos, neg_below)) + 0.5 * tie
    scale = p_total * n_total
    return area / scale, 0.5 * tie / scale, None


def ap_from_groups(pos: np.ndarray, neg: np.ndarray) -> tuple[float | None, float]:
    r"""``(average_precision, bound)`` from positive and negative weights of score groups in ascending order.

    Taking the groups from the highest score down, with :math:`TP_g`, :math:`FP_g` the positive and
    negative weight at or above group :math:`g`,

    .. math:: \mathrm{AP} = \sum_g \frac{P_g}{P} \, \frac{TP_g}{TP_g + FP_g},

    the step-wise sum of ``sklearn.metrics.average_precision_score`` (one threshold per distinct
    score, weighted). ``bound``: were the rows of a group (a bin) in any order, each positive's
    precision would lie between :math:`TP_{>g} / (TP_{>g} + FP_{>g} + N_g)` and
    :math:`(TP_{>g} + P_g) / (TP_{>g} + FP_{>g} + P_g)`; the bound sums :math:`P_g / P` times the
    farther of the two from the group's value. None (and 0) when there is no positive weight.
    """
    p_total = float(np.sum(pos))
    if p_total <= 0.0:
        return None, 0.0
    pos_desc, neg_desc = pos[::-1], neg[::-1]
    tp = np.cumsum(pos_desc)
    fp = np.cumsum(neg_desc)
    keep = pos_desc > 0
    precision = tp[keep] / (tp[keep] + fp[keep])
    share = pos_desc[keep] / p_total
    # a sum of shares of 1 at precisions <= 1: at most 1, but their rounding gave 1.0000000000000002 (all
    # positive, found in review; scikit-learn's is 1.0)
    ap = min(float(np.einsum("i,i->", share, precision)), 1.0)
    tp_above, fp_above = tp[keep] - pos_desc[keep], fp[keep] - neg_desc[keep]
    with np.errstate(invalid="ignore", divide="ignore"):
        high = (tp_above + pos_desc[keep]) / (tp_above + fp_above + pos_desc[keep])
        low = np.where(tp_above > 0, tp_above / (tp_above + fp_above + neg_desc[keep]), 0.0)
    spread = np.maximum(high - precision, precision - low)
    return ap, float(np.einsum("i,i->", share, spread))
