r"""Streaming, mergeable adaptive (equal-mass) expected calibration error, exact under a row limit.

Equal-mass bins need the ranks of the confidences, which per-batch sums cannot merge. As
:class:`~.auc.RankAUC` does for ROC AUC, :class:`AdaptiveCalibration` keeps the rows
``(confidence, outcome, weight)`` while their total count is at most ``exact_limit``, and always a
fine histogram over the confidence's logit (``log c - log(1 - c)``: its float32 bit pattern, as
:func:`~.auc.order_key` makes it; fine near 0 and near 1, where confidences crowd).

Definition (exact): sort the rows by confidence and lay their weights end to end on ``[0, W)``;
bin ``b`` is the stretch ``[b W / B, (b + 1) W / B)`` (``B = 15``), so each bin holds a ``1/B``
share of the weight. A run of rows of equal confidence (one row or many) is spread evenly over its
stretch: a bin takes the share of the run's outcome and confidence sums that its stretch overlaps,
so rows the confidence cannot order are never ordered by their outcome (a constant, calibrated
model scores 0). ``ECE_adaptive = sum_b |S_b - O_b| / W`` with ``S_b``, ``O_b`` the bin's weighted
sums of confidence and outcome (Nixon et al. 2019, "Measuring calibration in deep learning", with
weights; for ``n`` rows of weight 1 and ``n`` a multiple of ``B`` with distinct confidences, their
``n / B`` rows a bin). Binned beyond the limit: the same with the histogram's bins as the runs; the
rows of a histogram bin that straddles a bin edge are spread evenly where the exact definition
orders them, which moves the ECE by at most ``2 W_g / W``, and ``bound`` sums that over the
straddling bins.
"""

from __future__ import annotations

import numpy as np

from .auc import order_key

__all__ = ["AdaptiveCalibration"]

#: a batch of fewer than ``1 / SCATTER_BELOW`` rows per histogram bin scatters into its bins (``np.add.at``);
#: a larger one adds a ``np.bincount`` per column (``python -m benchmarks.adaptive_update``: the scatter 3-35x
#: faster up to 200,000 rows in 2**20 bins; at 1,000,000 one run or the other faster, by up to 1.3x)
SCATTER_BELOW = 2


class AdaptiveCalibration:
    """``update(confidence [n] in [0, 1], outcome [n] bool, w [n] or None)``, ``merge``, ``result()`` =
    ``{"ece_adaptive", "method": "exact" | "binned", "bound"}``."""

    def __init__(self, exact_limit: int = 1_000_000, n_bins: int = 15, bins_log2: int = 20):
        self.exact_limit, self.n_bins, self.bins_log2 = int(exact_limit), int(n_bins), int(bins_log2)
        self.rows = 0
        self._hist = np.zeros((1 << self.bins_log2, 3))  # per key: weight, outcome weight, weight x confidence
        self._exact = True
        self._rows: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []

    def update(self, confidence, outcome, w=None, score=None) -> None:
        """Add a batch; ``score``: the confidence's logit when the caller has it (binary logits)."""
        confidence = np.asarray(confidence, dtype=np.float64)
        outcome = np.asarray(outcome, dtype=bool)
        if score is None:
            with np.errstate(divide="ignore"):
                score = np.log(confidence) - np.log1p(-confidence)  # the logit: -inf at 0, +inf at 1
        key = order_key(score, self.bins_log2)
        weight = np.ones(len(confidence)) if w is None else np.asarray(w, dtype=np.float64)
        columns = (weight, weight * outcome, weight * confidence)
        size = 1 << self.bins_log2
        if len(key) * SCATTER_BELOW < size:
            # a batch small beside the histogram (24 MB at 2**20 keys) adds into the bins it falls in: a
            # bincount writes a fresh array of every bin per column and adds it to the whole histogram, the
            # first touch of 48 MB (the demo's 180-row calibration split: 0.06-0.43 s, a scatter 0.3 ms)
            flat, first = self._hist.reshape(-1), key.astype(np.intp) * 3  # the key is uint32
            for column, values in enumerate(columns):
                np.add.at(flat, first + column, values)
        else:
            for column, values in enumerate(columns):
                self._hist[:, column] += np.bincount(key, weights=values, minlength=size)
        self.add_counted(len(confidence), lambda: (confidence, outcome, w))

    @property
    def histogram(self) -> np.ndarray:
        """``[2**bins_log2, 3]``: what a compiled update adds to in place."""
        return self._hist

    def keeps(self, n: int) -> bool:
        """Whether :meth:`add_counted` of a batch of ``n`` rows now will ask for its rows."""
        return self._exact and self.rows + n <= self.exact_limit

    def add_counted(self, n: int, rows) -> None:
        """Count a batch whose histogram entries are added already; ``rows()`` gives its
        ``(confidence, outcome, w)``, called only while the exact rows are kept."""
        self.rows += n
        if self._exact:
            if self.rows > self.exact_limit:
                self._exact, self._rows = False, []
            else:
                confidence, outcome, w = rows()
                self._rows.append((np.array(confidence, dtype=np.float64), np.array(outcome, dtype=bool),
                                   None if w is None else np.array(w, dtype=np.float64)))

    def merge(self, other: AdaptiveCalibration) -> AdaptiveCalibration:
        self._hist += other._hist
        self.rows += other.rows
        if self._exact and other._exact and self.rows <= self.exact_limit:
            self._rows += other._rows
        else:
            self._exact, self._rows = False, []
        return self

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)  # the histogram travels as its filled bins (a few percent of them)
        filled = np.flatnonzero(self._hist[:, 0])
        state["_hist"] = (self._hist.shape, filled, self._hist[filled])
        return state

    def __setstate__(self, state: dict) -> None:
        shape, filled, values = state["_hist"]
        hist = np.zeros(shape)
        hist[filled] = values
        state["_hist"] = hist
        self.__dict__.update(state)

    def result(self) -> dict:
        if self._exact:
            if not self._rows:
                return {"ece_adaptive": None, "method": "exact", "bound": 0.0}
            confidence = np.concatenate([r[0] for r in self._rows])
            outcome = np.concatenate([r[1] for r in self._rows])
            weight = np.concatenate([np.ones(len(r[0])) if r[2] is None else r[2] for r in self._rows])
            rows = np.stack([weight, weight * outcome, weight * confidence], axis=1)
            ece, _ = _binned(_runs(confidence, rows), self.n_bins)
            return {"ece_adaptive": ece, "method": "exact", "bound": 0.0}
        rows = self._hist[self._hist[:, 0] > 0]
        ece, bound = _binned(rows, self.n_bins)
        return {"ece_adaptive": ece, "method": "binned", "bound": bound}


def _binned(rows: np.ndarray, n_bins: int) -> tuple[float | None, float]:
    """ECE of ``rows [m, 3]`` (weight, outcome weight, weighted confidence of a run of equal
    confidence, in confidence order) in ``n_bins`` stretches of equal weight, each run spread evenly
    over its own stretch, and the bound of the runs that straddle a bin edge."""
    rows = rows[rows[:, 0] > 0]
    if not len(rows):
        return None, 0.0
    end = np.cumsum(rows, axis=0)  # where each run's stretch ends, and its sums up to there
    total = float(end[-1, 0])
    edges = total * np.arange(n_bins + 1) / n_bins
    edges[-1] = total
    at = np.vstack([np.zeros((1, 3)), end])
    # the sums are linear along a run's stretch: read at the bin edges, they split each run evenly
    outcome = np.diff(np.interp(edges, at[:, 0], at[:, 1]))
    confidence = np.diff(np.interp(edges, at[:, 0], at[:, 2]))
    ece = float(np.abs(confidence - outcome).sum()) / total
    start = at[:-1, 0]
    after = np.minimum(np.searchsorted(edges, start, side="right"), n_bins)  # the first edge past a start
    straddles = (after < n_bins) & (edges[after] < end[:, 0])
    return ece, float(2 * rows[straddles, 0].sum()) / total


def _runs(confidence: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows [n, 3]`` summed over runs of equal confidence, in confidence order."""
    if not len(rows):
        return rows
    order = np.argsort(confidence, kind="stable")
    confidence = confidence[order]
    starts = np.flatnonzero(np.concatenate(([True], confidence[1:] != confidence[:-1])))
    return np.add.reduceat(rows[order], starts, axis=0)


def from_rank(rank, n_bins: int = 15) -> dict:
    """The equal-mass ECE of ``p = sigmoid(score)`` against the label, read off a binary
    :class:`~.auc.RankAUC` (its kept rows, or its histogram over the logit): the ranks it keeps for
    ROC AUC are the ranks this needs, so a binary evaluation pays nothing more per batch. Binned, a
    histogram bin's rows count at the midpoint of its probabilities, which adds
    ``sum_g W_g (p_hi - p_lo) / (2 W)`` to the bound of the straddling bins."""
    from .auc import key_lower_value

    if rank._exact:
        if not rank.rows:
            return {"ece_adaptive": None, "method": "exact", "bound": 0.0}
        score = np.concatenate(rank._scores)
        label = np.concatenate(rank._labels).astype(bool)
        weight = np.concatenate([np.ones(len(s)) if w is None else w
                                 for s, w in zip(rank._scores, rank._weights, strict=True)])
        p = _sigmoid(score)
        ece, _ = _binned(_runs(p, np.stack([weight, weight * label, weight * p], axis=1)), n_bins)
        return {"ece_adaptive": ece, "method": "exact", "bound": 0.0}
    weight = rank._hist.sum(axis=1)
    filled = np.flatnonzero(weight > 0)
    if not filled.size:
        return {"ece_adaptive": None, "method": "binned", "bound": 0.0}
    with np.errstate(invalid="ignore"):
        low = np.nan_to_num(_sigmoid(key_lower_value(filled, rank.bins_log2)), nan=0.0)
        last = filled + 1 >= (1 << rank.bins_log2)
        high = np.where(last, 1.0, np.nan_to_num(
            _sigmoid(key_lower_value(np.minimum(filled + 1, (1 << rank.bins_log2) - 1), rank.bins_log2)), nan=1.0))
    mid = 0.5 * (low + high)
    w = weight[filled]
    ece, straddle = _binned(np.stack([w, rank._hist[filled, 1], w * mid], axis=1), n_bins)
    return {"ece_adaptive": ece, "method": "binned",
            "bound": straddle + float(np.sum(w * (high - low))) / (2 * float(w.sum()))}


def _sigmoid(score: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(score))
    q = e / (1.0 + e)  # sigmoid(-|z|): no cancellation
    return np.where(score >= 0, 1.0 - q, q)
