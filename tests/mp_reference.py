"""50-digit mpmath references for the losses, written from the formulas in docs/losses.md.

Each takes plain Python floats (the already-rounded inputs) and returns mpmath numbers, so
the comparison measures only losskit's own rounding.
"""

from __future__ import annotations

import mpmath

mpmath.mp.dps = 50
LOG_FLOOR = -100


def softplus(z):
    """log(1 + e^z), exact for any z."""
    return mpmath.log1p(mpmath.exp(mpmath.mpf(z)))


def sigmoid(z):
    return 1 / (1 + mpmath.exp(-mpmath.mpf(z)))


def bce_logits(z, y, pos_weight=1.0):
    # -log sigma(z) = softplus(-z); -log(1 - sigma(z)) = softplus(z)
    y = mpmath.mpf(y)
    return pos_weight * y * softplus(-z) + (1 - y) * softplus(z)


def bce_logits_grad(z, y, pos_weight=1.0):
    y = mpmath.mpf(y)
    return (1 - y) * sigmoid(z) - pos_weight * y * sigmoid(-z)


def floored_log(p):
    p = mpmath.mpf(p)
    return mpmath.mpf(LOG_FLOOR) if p == 0 else max(mpmath.log(p), LOG_FLOOR)


def floored_log1m(p):
    """max(log(1 - p), -100) through log1p: 1 - 1e-300 is 1 even at 50 digits."""
    p = mpmath.mpf(p)
    return mpmath.mpf(LOG_FLOOR) if p == 1 else max(mpmath.log1p(-p), LOG_FLOOR)


def bce_probs(p, y):
    y = mpmath.mpf(y)
    return -(y * floored_log(p) + (1 - y) * floored_log1m(p))


def softmax_ce(row, label):
    # logsumexp(z) - z_y = log1p(sum_{k != y} e^(z_k - z_y)): no 50-digit cancellation when tiny
    row = [mpmath.mpf(v) for v in row]
    return mpmath.log1p(mpmath.fsum(mpmath.exp(v - row[label]) for k, v in enumerate(row) if k != label))


def softmax_ce_grad(row, label):
    row = [mpmath.mpf(v) for v in row]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    p = [mpmath.exp(v - lse) for v in row]
    # p_y - 1 = -sum_{k != y} p_k, which stays exact when p_y is within 1e-50 of 1
    return [-mpmath.fsum(p[j] for j in range(len(p)) if j != k) if k == label else p[k]
            for k in range(len(p))]
