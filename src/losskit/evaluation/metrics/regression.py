"""Regression metrics (MSE, MAE, R^2, residuals) of one or more outputs, streaming and mergeable."""

from __future__ import annotations

import numpy as np

from ..auc import key_lower_value, order_key
from ._common import _count, _same, _shape, _total_weight, _wcolsum, _weights

_RESIDUAL_BITS = 16
_RESIDUAL_BINS = 50
_RESIDUAL_RANGE = (0.005, 0.995)

__all__ = ["RegressionMetrics"]


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
        batch_weight = _total_weight(w, n)
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
