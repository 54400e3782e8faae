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


#: rows per block of the per-row sweeps: SIMD lanes over a block, then its scatters
BLOCK = 512


@numba.njit(**OPTIONS)
def multiclass_confidence(columns, y, w, from_logits, shift, top, hit, cells, confidence, hist):
    """Per row of ``columns [K, n]`` (a column-order ``[n, K]`` batch transposed; logits or
    probabilities): the top-label confidence ``top [n]`` and whether the argmax is ``y`` (``hit [n]``,
    uint8); and each class's reliability bins of ``p_c`` against ``[y == c]``: ``cells
    [K, n_bins, 2]`` (weight by outcome) and ``confidence [K, n_bins]`` (weighted ``p_c``), the bins of
    ``losskit eval``'s ECE (an inner edge goes up, 1.0 to the last bin); and ``hist [2**bits, 3]``
    (``shift = 32 - bits``) the equal-mass ECE's histogram over the top confidence's logit
    (:class:`~losskit.evaluation.adaptive.AdaptiveCalibration`): from logits that logit is
    ``-log(sum_{j != top} e^{z_j - max})``, with no cancellation near a confidence of 1. A block of
    rows at a time, class by class: each inner loop reads one class's contiguous scores."""
    k, n = columns.shape
    n_bins = confidence.shape[1]
    weighted = w.shape[0] > 0
    best = np.empty(BLOCK)
    arg = np.empty(BLOCK, dtype=np.intp)
    total = np.empty(BLOCK)
    others = np.empty(BLOCK)
    p = np.empty(BLOCK)
    keep = k <= 256  # keep each block's exp(z - max) for the per-class pass (k x 512 floats) rather than redo it
    kept = np.empty((k if keep else 1, BLOCK))
    lanes = np.zeros((4, k, n_bins, 4))  # [copy, class, bin]: weight of outcome 0, of outcome 1, weighted p
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        first = columns[0, start:start + m]
        for r in range(m):
            best[r] = np.float64(first[r])
            arg[r] = 0
            total[r] = 0.0
            others[r] = 0.0
        for j in range(1, k):
            scores = columns[j, start:start + m]
            for r in range(m):
                v = np.float64(scores[r])
                better = v > best[r]  # the first maximum, as argmax
                best[r] = v if better else best[r]
                arg[r] = j if better else arg[r]
        if from_logits:
            for j in range(k):
                scores = columns[j, start:start + m]
                row = kept[j if keep else 0]
                for r in range(m):
                    e = vexp(np.float64(scores[r]) - best[r])  # <= 0: no overflow
                    row[r] = e
                    total[r] += e
                    others[r] += 0.0 if j == arg[r] else e
        for r in range(m):
            i = start + r
            conf = 1.0 / total[r] if from_logits else best[r]
            top[i] = conf
            hit[i] = 1 if arg[r] == y[i] else 0
            if from_logits:
                score = -math.log(others[r]) if others[r] > 0.0 else math.inf
            else:
                score = (math.log(conf) if conf > 0.0 else -math.inf) - (math.log1p(-conf) if conf < 1.0 else -math.inf)
            bits = np.float32(np.float32(score) + np.float32(0.0)).view(np.uint32)  # as auc.order_key
            bits ^= np.uint32(0xFFFFFFFF) if bits >> np.uint32(31) else np.uint32(0x80000000)
            key = np.intp(bits >> np.uint32(shift))
            wi = np.float64(w[i]) if weighted else 1.0
            hist[key, 0] += wi
            hist[key, 1] += wi if arg[r] == y[i] else 0.0
            hist[key, 2] += wi * conf
        for j in range(k):
            scores = columns[j, start:start + m]
            if from_logits and keep:
                row = kept[j]
                for r in range(m):
                    p[r] = row[r] / total[r]
            elif from_logits:
                for r in range(m):
                    p[r] = vexp(np.float64(scores[r]) - best[r]) / total[r]
            else:
                for r in range(m):
                    p[r] = np.float64(scores[r])
            for r in range(m):
                wi = np.float64(w[start + r]) if weighted else 1.0
                b = min(int(p[r] * n_bins), n_bins - 1)
                # four copies of the bins, each bin's weights and confidence in one cache line: most p_c
                # fall in a few bins, and adds to one copy would chain (measured 1.7x faster than one copy)
                lane = r & 3
                lanes[lane, j, b, 1 if y[start + r] == j else 0] += wi
                lanes[lane, j, b, 2] += wi * p[r]
    for lane in range(4):
        for j in range(k):
            for b in range(n_bins):
                cells[j, b, 0] += lanes[lane, j, b, 0]
                cells[j, b, 1] += lanes[lane, j, b, 1]
                confidence[j, b] += lanes[lane, j, b, 2]
