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
from .vmath import row_max, vexp


@numba.njit(**OPTIONS)
def token_stats_rows(z, labels, inv_temperature, logp, maxima, log_norm, rest, entropy, correct, with_entropy,
                     store_exp, flags):
    """Per row of ``z [n, V]`` with ``labels [n]`` (int64, a valid class; the caller zeroes the
    ignored rows' outputs): ``logp``, the max of ``z``, the log-normaliser (``lse = maxima / T +
    log_norm``) and ``rest = 1 - p(label)`` (float64 [n]);
    ``entropy`` (float64 [n], when ``with_entropy``) and ``correct`` (uint8 [n]: the label is an
    argmax, ties counting as correct). With ``store_exp``, ``z`` receives ``exp((z - max) / T)``, which
    :func:`token_grad_rows` then scales (one exp per logit in all, as the softmax CE kernel)."""
    n, k = z.shape
    zero, one = z.dtype.type(0), z.dtype.type(1)
    t = z.dtype.type(inv_temperature)
    for i in prange(n):
        row = z[i]
        y = labels[i]
        top = row_max(row)
        if not math.isfinite(top):
            flags[i] = 1
            continue
        z_y = row[y]  # read before the row is overwritten
        below = zero  # the terms below the max: the normaliser is log1p(below + ties - 1), so a sure
        ties = zero  # token keeps its tiny log-prob (log(1 + 1e-26) would round it to 0)
        others = zero
        moment = zero
        for j in range(k):
            d = (row[j] - top) * t  # not z * t - max(z) * t: that overflows first
            e = vexp(d)
            below += e if d < zero else zero
            ties += one if d >= zero else zero
            others += zero if j == y else e
            if with_entropy:
                moment += zero if e == zero else e * d  # (an underflowed term is 0, not 0 * -inf)
            if store_exp:
                row[j] = e
        s_y = (float(z_y) - float(top)) * inv_temperature
        total64 = float(below) + float(ties)
        if not (math.isfinite(total64) and math.isfinite(float(moment))):
            flags[i] = 1
            continue
        norm = math.log1p(float(below) + (float(ties) - 1.0))
        logp[i] = s_y - norm
        maxima[i] = top
        log_norm[i] = norm
        rest[i] = float(others) / total64
        correct[i] = 1 if z_y >= top else 0
        if with_entropy:
            entropy[i] = norm - float(moment) / total64


@numba.njit(**OPTIONS)
def token_grad_rows(z, labels, inv_temperature, maxima, log_norm, rest, coef, stored):
    """In place: ``z[i] = coef_i / T (onehot(labels_i) - exp((z_i - maxima_i) / T - log_norm_i))``,
    the label's entry ``coef_i / T * rest_i`` (the outputs of :func:`token_stats_rows`). Written as
    ``exp((z - max) / T) / S`` as the forward summed it (``z - max`` is exact near the max, where
    the probabilities are large). With ``stored``, ``z`` already holds ``exp((z - max) / T)``."""
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
        m = z.dtype.type(maxima[i])
        scale = z.dtype.type(-c * inv_temperature * math.exp(-log_norm[i]))  # -c / (T S)
        if stored:
            for j in range(k):
                row[j] = scale * row[j]
        else:
            for j in range(k):
                row[j] = scale * vexp((row[j] - m) * t)
        row[labels[i]] = z.dtype.type(c * inv_temperature * rest[i])
