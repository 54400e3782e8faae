"""Compiled CPU kernels (numba) that compute a loss and its gradient in one sweep per row.

Imported only by :func:`losskit.fused.fast_path` on the first NumPy call that can use them, so
``import losskit`` never loads numba. Each kernel is ``parallel`` over rows and ``cache=True``:
the machine code is written next to this file (or numba's user cache) and reused by later
processes, so the CLI pays the compile once.

Design note: a kernel never raises. Anything it cannot handle exactly (a label out of range,
a target outside [0, 1], a non-finite logit) sets a flag for its row, and the dispatcher then
reruns the whole call on the array-API path, which raises the precise error or gives the exact
+-inf limits. So the fast path and the reference path agree on every input by construction,
and the kernels stay free of error handling.

Accuracy matches the array-API path: the softmax normaliser is ``log1p`` of the terms below the
row max, and the gradient at the label is ``a (1 - 1/K) - sum_{k != y} p_k``.
"""

from __future__ import annotations

import math

import numba
from numba import prange

OPTIONS = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**OPTIONS)
def softmax_ce_rows(z, labels, keep, scale, smoothing, loss, grad, flags):
    """Per row i: ``loss[i]`` (unweighted) and ``grad[i] = scale[i] * d loss_i / d z_i``.

    ``grad`` may be ``z`` itself: each entry is read before it is written.

    ``labels`` int64 in [0, K) where ``keep``; ``flags[i] = 1`` marks a row to redo on the
    array-API path (label out of range, non-finite logit).
    """
    n, k = z.shape
    a = smoothing
    for i in prange(n):
        row = z[i]
        y = labels[i]
        if keep[i] and (y < 0 or y >= k):
            flags[i] = 1
            continue
        if not keep[i]:
            y = 0
        m = row[0]
        total = 0.0
        for j in range(k):
            m = max(m, row[j])
            total += row[j]
        if not math.isfinite(m) or not math.isfinite(total):
            flags[i] = 1
            continue
        z_y = row[y]  # read before the row is overwritten (grad may alias z)
        below = 0.0  # sum of exp(z - m) over the entries below the max
        ties = -1.0
        rest = 0.0  # sum of exp(z - m) over the entries other than the label
        shifted_sum = 0.0  # sum of (z - m): the smoothing term without cancelling against m
        g = grad[i]
        for j in range(k):
            x = row[j]  # g may alias row: read the logit once, before writing its slot
            shifted_sum += x - m
            e = math.exp(x - m)
            g[j] = e
            if x < m:
                below += e
            else:
                ties += 1.0
            if j != y:
                rest += e
        log_norm = math.log1p(below + ties)
        # lse - (1 - a) z_y - (a/K) sum z, written in shifted logits: exact 0 for a sure row
        loss[i] = log_norm - (1.0 - a) * (z_y - m) - (a / k) * shifted_sum
        s = scale[i]
        inv = 1.0 / (1.0 + below + ties)
        for j in range(k):
            g[j] = s * (g[j] * inv - a / k)
        # at the label: p_y - 1 = -sum_{k != y} p_k, exact when p_y rounds to 1
        g[y] = s * (a * (1.0 - 1.0 / k) - rest * inv)


@numba.njit(**OPTIONS)
def bce_rows(z, y, pos_weight, scale, smoothing, loss, grad, flags):
    """Elementwise BCE-with-logits on ``[N, K]``: ``loss[i, j]`` unweighted, ``grad = scale * dl/dz``.

    ``pos_weight`` has length K (ones when not given); ``scale`` is ``[N, K]`` or ``[N, 1]``.
    """
    n, k = z.shape
    per_element = scale.shape[1] > 1
    for i in prange(n):
        for j in range(k):
            t = y[i, j]
            if not (t >= 0.0 and t <= 1.0) or not math.isfinite(z[i, j]):
                flags[i] = 1
                break
            t = (1.0 - smoothing) * t + smoothing / 2.0
            x = z[i, j]
            e = math.exp(-abs(x))
            soft = math.log1p(e)
            pos = pos_weight[j] * t
            neg = 1.0 - t
            # -log sigmoid(x) = max(-x, 0) + log1p(e); -log(1 - sigmoid(x)) = max(x, 0) + log1p(e)
            loss[i, j] = pos * (max(-x, 0.0) + soft) + neg * (max(x, 0.0) + soft)
            inv = 1.0 / (1.0 + e)
            s_pos = inv if x >= 0 else e * inv  # sigmoid(x)
            s_neg = e * inv if x >= 0 else inv  # sigmoid(-x)
            grad[i, j] = scale[i, j if per_element else 0] * (neg * s_pos - pos * s_neg)


@numba.njit(**OPTIONS)
def squared_error_rows(pred, target, scale, loss, grad, flags):
    """Per row: ``loss[i] = mean_j (pred - target)^2``, ``grad = scale[i] * 2 (pred - target) / K``."""
    n, k = pred.shape
    for i in prange(n):
        acc = 0.0
        factor = 2.0 * scale[i] / k
        for j in range(k):
            t = target[i, j]
            if t != t:  # NaN target: the array-API path says so
                flags[i] = 1
                break
            d = pred[i, j] - t
            acc += d * d
            grad[i, j] = factor * d
        loss[i] = acc / k
