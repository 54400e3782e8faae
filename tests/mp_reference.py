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
    row = [mpmath.mpf(v) for v in row]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    return lse - row[label]


def softmax_ce_grad(row, label):
    row = [mpmath.mpf(v) for v in row]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in row))
    return [mpmath.exp(v - lse) - (1 if k == label else 0) for k, v in enumerate(row)]
