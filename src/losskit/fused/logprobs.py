"""Compiled CPU kernels of the token log-prob sweep (see :mod:`losskit.losses.logprobs`).

Two kernels per chunk of logits ``z [n, V]``, in the chunk's dtype (float32 stays float32 in the
SIMD loops, with :func:`~losskit.fused.vmath.vexp`), sums of a row across SIMD lanes and rows'
results in float64, as :mod:`losskit.fused.kernels`:

* :func:`token_stats_rows`: per row, ``s = z / temperature``, its max, ``S = sum exp(s - max)``
  and (when asked) ``sum exp(s - max) (s - max)`` for the entropy; writes ``log p(label)``, the
  log-normaliser ``lse``, ``1 - p(label)`` summed from the other classes (exact where
  ``p(label)`` rounds to 1), the entropy and whether the label is an argmax;
* :func:`token_grad_rows`: the chunk buffer becomes ``coef_i (onehot(label) - softmax(s_i)) / T``,
  in place: ``d loss / d z`` when ``coef = d loss / d log p(label)``.

A row with a non-finite logit gets ``flags[i] = 1`` and the caller answers that chunk on the
array-API path. A row whose ``coef`` is 0 (an ignored token) is written as zeros.
"""

from __future__ import annotations

import math

import numba
from numba import prange

from .kernels import OPTIONS
from .vmath import vexp


@numba.njit(**OPTIONS)
def token_stats_rows(z, labels, inv_temperature, logp, row_max, log_norm, rest, entropy, correct, with_entropy,
                     flags):
    """Per row of ``z [n, V]`` with ``labels [n]`` (int64, a valid class; the caller zeroes the
    ignored rows' outputs): ``logp``, the max of ``z / T``, the log-normaliser below it (``lse =
    row_max + log_norm``) and ``rest = 1 - p(label)`` (float64 [n]);
    ``entropy`` (float64 [n], when ``with_entropy``) and ``correct`` (uint8 [n]: the label is an
    argmax, ties counting as correct)."""
    n, k = z.shape
    zero, one = z.dtype.type(0), z.dtype.type(1)
    t = z.dtype.type(inv_temperature)
    for i in prange(n):
        row = z[i]
        y = labels[i]
        top = row[0]
        for j in range(k):
            top = max(top, row[j])
        m = top * t  # T > 0: the max of z / T; an argmax is one of z (z_y * t - m may be an FMA)
        if not math.isfinite(m):
            flags[i] = 1
            continue
        below = zero  # the terms below the max: the normaliser is log1p(below + ties - 1), so a sure
        ties = zero  # token keeps its tiny log-prob (log(1 + 1e-26) would round it to 0)
        others = zero
        moment = zero
        for j in range(k):
            d = row[j] * t - m
            e = vexp(d)
            below += e if d < zero else zero
            ties += one if d >= zero else zero
            others += zero if j == y else e
            if with_entropy:
                moment += e * d
        s_y = float(row[y] * t) - float(m)
        total64 = float(below) + float(ties)
        if not (math.isfinite(total64) and math.isfinite(float(moment))):
            flags[i] = 1
            continue
        norm = math.log1p(float(below) + (float(ties) - 1.0))
        logp[i] = s_y - norm
        row_max[i] = m
        log_norm[i] = norm
        rest[i] = float(others) / total64
        correct[i] = 1 if row[y] >= top else 0
        if with_entropy:
            entropy[i] = norm - float(moment) / total64


@numba.njit(**OPTIONS)
def token_grad_rows(z, labels, inv_temperature, row_max, log_norm, rest, coef):
    """In place: ``z[i] = coef_i / T (onehot(labels_i) - exp(z_i / T - row_max_i - log_norm_i))``,
    the label's entry ``coef_i / T * rest_i`` (the outputs of :func:`token_stats_rows`). Written as
    ``exp(z / T - max) / S`` as the forward summed it (``z / T - max`` is exact near the max, where
    the probabilities are large)."""
    n, k = z.shape
    zero = z.dtype.type(0)
    t = z.dtype.type(inv_temperature)
    for i in prange(n):
        row = z[i]
        c = coef[i]
        if c == 0.0:
            for j in range(k):
                row[j] = zero
            continue
        m = z.dtype.type(row_max[i])
        scale = z.dtype.type(-c * inv_temperature * math.exp(-log_norm[i]))  # -c / (T S)
        for j in range(k):
            row[j] = scale * vexp(row[j] * t - m)
        row[labels[i]] = z.dtype.type(c * inv_temperature * rest[i])
