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
import numpy as np
from numba import prange

from .kernels import INLINE, OPTIONS, SUM_CHUNK, stored_term_sums
from .vmath import row_max, vexp


@numba.njit(**INLINE)
def _chunk_sums(row, buf, shifts, top, t, start, count, with_entropy, in_place):
    """Over ``row[start:start + count]``: ``exp((z - top) t)`` written into ``buf[:count]`` (which may be that
    part of the row itself: ``in_place``), then from the stored terms, each in a loop of its own that only
    reads: the sum of the terms below 1 (a term at the max is exactly 1), the count of those at 1, and with
    ``with_entropy`` the sum of ``e (z - top) t`` (0 for an underflowed term, not 0 * -inf), whose shifted
    logits ``shifts`` holds. One loop of three or four sums beside the exp was not vectorised (about twice
    the time, BENCHMARKS.md)."""
    zero = row.dtype.type(0)
    if with_entropy:  # loop-invariant: LLVM takes the branch out of the loop
        for step in range(count):
            shifts[step] = (row[start + step] - top) * t  # not z * t - max(z) * t: that overflows first
        for step in range(count):
            buf[step] = vexp(shifts[step])
    elif in_place:  # buf is that part of the row: one array read and written, or LLVM's run-time check of two
        for step in range(count):  # arrays' overlap fails and the loop runs scalar (2.4x the kernel's time)
            buf[step] = vexp((buf[step] - top) * t)
    else:
        for step in range(count):
            buf[step] = vexp((row[start + step] - top) * t)
    below, ties = stored_term_sums(buf, 0, count)
    moment = zero
    if with_entropy:
        for step in range(count):
            e = buf[step]
            moment += zero if e == zero else e * shifts[step]
    return below, ties, moment


@numba.njit(**OPTIONS)
def token_stats_rows(z, labels, inv_temperature, logp, maxima, log_norm, rest, entropy, correct, with_entropy,
                     store_exp, flags):
    """Per row of ``z [n, V]`` with ``labels [n]`` (int64, a valid class; the caller zeroes the
    ignored rows' outputs): ``logp``, the max of ``z``, the log-normaliser (``lse = maxima / T +
    log_norm``) and ``rest = 1 - p(label)`` (float64 [n]);
    ``entropy`` (float64 [n], when ``with_entropy``) and ``correct`` (uint8 [n]: the label is an
    argmax, ties counting as correct). With ``store_exp``, ``z`` receives ``exp((z - max) / T)``, which
    :func:`token_grad_rows` then scales (one exp per logit in all, as the softmax CE kernel). A row's
    sums by chunks of :data:`~losskit.fused.kernels.SUM_CHUNK` terms (:func:`_chunk_sums`), the chunks'
    sums added in float64."""
    n, k = z.shape
    t = z.dtype.type(inv_temperature)
    full = max(0, k - k % SUM_CHUNK)  # max: see SUM_CHUNK
    for i in prange(n):
        row = z[i]
        y = labels[i]
        top = row_max(row)
        if not math.isfinite(top):
            flags[i] = 1
            continue
        z_y = row[y]  # read before the row is overwritten
        e_y = float(vexp((z_y - top) * t))  # the label's term, as the sums' loop takes it
        scratch = np.empty(0 if store_exp else SUM_CHUNK, z.dtype)
        shifts = np.empty(SUM_CHUNK if with_entropy else 0, z.dtype)
        # the terms below the max: the normaliser is log1p(below + ties - 1), so a sure token keeps its tiny
        # log-prob (log(1 + 1e-26) would round it to 0)
        below, ties, moment = 0.0, 0.0, 0.0
        for chunk in range(full // SUM_CHUNK):  # not a range with a step: see SUM_CHUNK
            start = chunk * SUM_CHUNK
            b, c, m = _chunk_sums(row, row[start:start + SUM_CHUNK] if store_exp else scratch, shifts, top, t,
                                  start, SUM_CHUNK, with_entropy, store_exp)
            below, ties, moment = below + float(b), ties + float(c), moment + float(m)
        b, c, m = _chunk_sums(row, row[full:] if store_exp else scratch, shifts, top, t, full, k - full,
                              with_entropy, store_exp)
        below, ties, moment = below + float(b), ties + float(c), moment + float(m)
        s_y = (float(z_y) - float(top)) * inv_temperature
        total64 = below + ties
        if not (math.isfinite(total64) and math.isfinite(moment)):
            flags[i] = 1
            continue
        norm = math.log1p(below + (ties - 1.0))
        logp[i] = s_y - norm
        maxima[i] = top
        log_norm[i] = norm
        # the other classes' terms: the label's own taken out of the sum it is in (exact where the label holds
        # the max: its term is 1, one of the ties)
        rest[i] = (below - e_y + ties if e_y < 1.0 else below + (ties - 1.0)) / total64
        correct[i] = 1 if z_y >= top else 0
        if with_entropy:
            entropy[i] = norm - moment / total64


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
