"""Small statistics on host (NumPy) arrays that losses and GBDT objectives share."""

from __future__ import annotations

import numpy as np

__all__ = ["weighted_quantile"]


def weighted_quantile(label, q: float, weight=None) -> float:
    """The smallest ``label`` whose cumulative weight reaches ``q`` of the total: a minimiser of the
    weighted pinball loss ``sum w_i rho_q(y_i - c)`` (its subdifferential there contains 0)."""
    if label.size == 0:
        return 0.0
    if weight is None or np.all(weight == np.ravel(weight)[0]):  # equal weights: by selection, not a sort
        return float(np.quantile(label, q, method="inverted_cdf"))
    order = np.argsort(label, kind="stable")
    cum = np.cumsum(np.ones(label.size) if weight is None else np.broadcast_to(weight, label.shape)[order])
    return float(label[order][min(int(np.sum(cum < q * cum[-1])), label.size - 1)])
