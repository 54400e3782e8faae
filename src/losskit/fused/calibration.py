r"""Compiled (numba) passes of temperature scaling: the weighted NLL of ``logits / T`` and its first
two derivatives in ``s = log T``, summed over one batch, with the reliability bins at that ``T``.

Each kernel reads a batch once and adds, in float64 whatever the input dtype, to ``sums``:
``[sum w l, sum w, sum w g, sum w h, sum w |g|]`` with ``l`` the example's NLL at
``u = beta z`` (``beta = 1 / T``), ``g = dl/ds`` and ``h = d^2 l / ds^2``:

* softmax (one row of K logits, target distribution ``y``, ``|y| = sum_k y_k``):
  ``l = |y| logsumexp(u) - <u, y>``, ``g = <u, y> - |y| <u, p>``, ``h = |y| Var_p(u) - g``;
* sigmoid (one logit, target ``y`` in [0, 1]): ``l = softplus(u) - y u``, ``g = u (y - p)``,
  ``h = u^2 p (1 - p) - g``.

The formulas are those of the array-API reference in :mod:`losskit.evaluation.calibration.objectives`,
which the tests hold equal to these. Design note: ``exp`` and ``log1p`` are the vectorisable ones of
:mod:`.vmath` in float64 (float32 would leave ``1e-7`` in the gradient, and the fit must reach
``1e-10``); the softmax row is shifted by its maximum, so ``Var_p(u)`` is computed from ``z - max``,
where the probability mass sits, without cancellation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import _diskcache  # noqa: F401 - numba's disk cache keyed on the whole package (see there)
from .vmath import vexp, vlog1p_unit

OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"reassoc", "contract"}}

__all__ = ["softmax_temperature", "sigmoid_temperature"]


@numba.njit(**OPTIONS)
def softmax_temperature(logits, labels, soft, w, beta, calibration, confidence, sums):
    """Add the softmax temperature sums of ``logits [n, K]`` (C order) at ``beta`` to ``sums [5]``.

    ``labels [n]`` integer classes, or empty with ``soft [n, K]`` class probabilities; ``w [n]``
    (empty: all 1). ``calibration [2 n_bins]`` / ``confidence [n_bins]`` (empty: skipped) get the
    top-label reliability bins of the calibrated probabilities, as ``losskit eval`` bins them."""
    n, k = logits.shape
    hard = labels.shape[0] > 0
    weighted = w.shape[0] > 0
    n_bins = confidence.shape[0]
    f = 0.0
    weight = 0.0
    grad = 0.0
    hess = 0.0
    scale = 0.0
    for i in range(n):
        row = logits[i]
        best = np.float64(row[0])
        top = 0
        for j in range(1, k):
            v = np.float64(row[j])
            if v > best:  # the first maximum, as argmax
                best = v
                top = j
        total = 0.0
        first = 0.0
        second = 0.0
        for j in range(k):
            d = np.float64(row[j]) - best  # <= 0: exp cannot overflow
            e = vexp(beta * d)
            total += e
            first += e * d
            second += e * (d * d)
        mean = first / total  # E_p[z - max]
        var = max(second / total - mean * mean, 0.0)  # Var_p(z): shifted by the max, no cancellation
        if hard:
            label = labels[i]
            mass = 1.0
            z_y = np.float64(row[label])
            hit = top == label
        else:
            mass = 0.0
            z_y = 0.0
            truth = 0
            for j in range(k):
                y = np.float64(soft[i, j])
                mass += y
                z_y += y * np.float64(row[j])
                if y > np.float64(soft[i, truth]):
                    truth = j
            hit = top == truth
        # logsumexp(u) = beta max + log(total), total in [1, K]
        loss = mass * (beta * best + math.log(total)) - beta * z_y
        g = beta * (z_y - mass * (best + mean))  # <u, y> - |y| <u, p>
        h = mass * beta * beta * var - g
        wi = np.float64(w[i]) if weighted else 1.0
        f += wi * loss
        weight += wi
        grad += wi * g
        hess += wi * h
        scale += wi * abs(g)
        if n_bins > 0:
            conf = 1.0 / total  # the top class's probability: its shifted exp is 1
            b = min(int(conf * n_bins), n_bins - 1)
            calibration[2 * b + (1 if hit else 0)] += wi
            confidence[b] += wi * conf
    sums[0] += f
    sums[1] += weight
    sums[2] += grad
    sums[3] += hess
    sums[4] += scale


@numba.njit(**OPTIONS)
def sigmoid_temperature(logits, target, w, betas, calibration, confidence, sums):
    """Add the sigmoid temperature sums of each column of ``logits [n, K]`` (any order; F order reads
    contiguously) at ``betas [K]`` to ``sums [K, 5]``; ``target [n, K]`` in [0, 1] (labels or
    probabilities), ``w [n]`` (empty: all 1). ``calibration`` / ``confidence`` (empty: skipped) get
    the reliability bins of column 0's calibrated probability against its label."""
    n, k = logits.shape
    weighted = w.shape[0] > 0
    n_bins = confidence.shape[0]
    for j in range(k):
        beta = betas[j]
        f = 0.0
        weight = 0.0
        grad = 0.0
        hess = 0.0
        scale = 0.0
        for i in range(n):
            u = beta * np.float64(logits[i, j])
            y = np.float64(target[i, j])
            e = vexp(-abs(u))  # in (0, 1]
            softplus = max(u, 0.0) + vlog1p_unit(e)  # log(1 + e^u) = max(u, 0) + log1p(e^-|u|)
            small = e / (1.0 + e)  # sigmoid(-|u|): the smaller of p and 1 - p, no cancellation
            p = 1.0 - small if u >= 0.0 else small
            q = small if u >= 0.0 else 1.0 - small
            g = u * (y * q - (1.0 - y) * p)  # y - p written without cancellation
            h = u * u * p * q - g
            wi = np.float64(w[i]) if weighted else 1.0
            f += wi * (softplus - y * u)
            weight += wi
            grad += wi * g
            hess += wi * h
            scale += wi * abs(g)
            if n_bins > 0 and j == 0:
                b = min(int(p * n_bins), n_bins - 1)
                calibration[2 * b + (1 if y > 0.5 else 0)] += wi
                confidence[b] += wi * p
        sums[j, 0] += f
        sums[j, 1] += weight
        sums[j, 2] += grad
        sums[j, 3] += hess
        sums[j, 4] += scale
