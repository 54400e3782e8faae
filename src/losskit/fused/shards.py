"""Compiled CPU kernels of the vocab-parallel cross-entropy (:mod:`losskit.torch.distributed`): one rank's
share of the row statistics and of the gradient, over its own columns of the logits ``z [n, V_local]``.

* :func:`shard_maxima`: each row's max (NaN where the row holds a NaN, -inf for a rank of no column);
* :func:`shard_sums`, given the group's row max ``m`` (finite: the caller takes a row max of +-inf or NaN
  elsewhere): the sum of ``exp(z - m)`` over the logits below ``m``, the count of those at it (the
  normaliser is ``log1p(below + ties - 1)``, exact for a sure row), the shifted label logit ``z_y - m`` where
  the label's column is here and, with smoothing, the row's sum of ``z - m``. With ``store`` the row
  receives ``exp(z - m)`` (the linear form's chunk of logits, read no more);
* :func:`shard_grad` (from the logits) and :func:`shard_grad_stored` (over the stored exps): ``d loss / d z``
  on the rank's columns from the all-reduced statistics.

One pass over the logits each (the torch-native chain takes three to five, and an ``[n, V_local]``
temporary in the forward). Sums as :mod:`losskit.fused.kernels`: in the row's dtype within chunks of
:data:`~losskit.fused.kernels.SUM_CHUNK` terms, the chunks' sums in float64; every loop that sums only reads,
and every loop that writes sums nothing.
"""

from __future__ import annotations

import math

import numba
from numba import prange

from .kernels import INLINE, OPTIONS, SUM_CHUNK, stored_term_sums
from .vmath import row_max, vexp


@numba.njit(**OPTIONS)
def shard_maxima(z, maxima):
    """``maxima[i]`` = the max of ``z[i]`` (NaN where the row holds a NaN; -inf for an empty row)."""
    for i in prange(z.shape[0]):
        maxima[i] = row_max(z[i])


@numba.njit(**INLINE)
def _exp_sums(row, m, start, count):
    """Over ``row[start:start + count]``: the sum of ``exp(z - m)`` less 1 for each logit at ``m`` (whose exp is
    exactly 1: the sum of the terms below the max; NaN for a NaN logit), and the count of the logits at ``m``,
    each in a loop of its own that only reads. One loop taking both sums beside the exp was not vectorised
    (3.7x the time, BENCHMARKS.md)."""
    zero, one = row.dtype.type(0), row.dtype.type(1)
    below = zero
    for step in range(count):
        d = row[start + step] - m
        below += vexp(d) - (one if d >= zero else zero)
    ties = zero
    for step in range(count):
        ties += one if row[start + step] >= m else zero
    return below, ties


@numba.njit(**INLINE)
def _stored_sums(row, m, start, count):
    """``exp(z - m)`` over ``row[start:start + count]`` written in place (a loop that writes), then the sums of
    :func:`_exp_sums` from the stored terms (:func:`~losskit.fused.kernels.stored_term_sums`)."""
    for step in range(count):
        row[start + step] = vexp(row[start + step] - m)
    return stored_term_sums(row, start, count)


@numba.njit(**INLINE)
def _sums(row, m, start, count, store):
    """:func:`_stored_sums` where ``store``, else :func:`_exp_sums`."""
    return _stored_sums(row, m, start, count) if store else _exp_sums(row, m, start, count)


@numba.njit(**INLINE)
def _shifted_sum(row, m, start, count):
    zero = row.dtype.type(0)
    total = zero
    for step in range(count):
        total += row[start + step] - m
    return total


@numba.njit(**OPTIONS)
def shard_sums(z, maxima, labels, smoothing, store, stats):
    """Per row of ``z [n, V_local]`` and the group's finite row max ``maxima[i]`` (in ``z``'s dtype):
    ``stats[0, i]`` the sum of ``exp(z - m)`` below ``m``, ``stats[1, i]`` the count of logits at ``m``,
    ``stats[2, i]`` ``z[i, labels[i]] - m`` (0 where ``labels[i] < 0``: the label's column is on another
    rank, or the row is ignored) and, when ``smoothing``, ``stats[3, i]`` the sum of ``z - m``. A NaN logit
    makes its row's sum NaN (``vexp`` of NaN is NaN; the group's max may have dropped it). With ``store``,
    ``z[i]`` becomes ``exp(z[i] - m)``."""
    n, k = z.shape
    full = max(0, k - k % SUM_CHUNK)
    for i in prange(n):
        row = z[i]
        m = maxima[i]
        y = labels[i]
        stats[2, i] = row[y] - m if y >= 0 else 0.0
        shifted = 0.0
        if smoothing:
            for chunk in range(full // SUM_CHUNK):
                shifted += _shifted_sum(row, m, chunk * SUM_CHUNK, SUM_CHUNK)
            shifted += _shifted_sum(row, m, full, k - full)
        stats[3, i] = shifted
        below = 0.0
        ties = 0.0
        for chunk in range(full // SUM_CHUNK):
            b, t = _sums(row, m, chunk * SUM_CHUNK, SUM_CHUNK, store)
            below += b
            ties += t
        b, t = _sums(row, m, full, k - full, store)
        stats[0, i] = below + b
        stats[1, i] = ties + t


@numba.njit(**INLINE)
def _grad_factors(dtype, i, log_norm, scaled, growth, smoothing, n_vocab, picked):
    """Row ``i``'s ``(factor, offset, label's entry)`` of :func:`shard_grad`, the factor in ``dtype``."""
    c = scaled[i]
    g = growth[i]
    factor = dtype(math.exp(-log_norm[i]) * c * (1.0 + g))
    offset = dtype(smoothing / n_vocab * c)
    below = math.expm1(picked[i] - log_norm[i])
    at_label = dtype((below * (1.0 + g) + g + smoothing * (1.0 - 1.0 / n_vocab)) * c)
    return factor, offset, at_label


@numba.njit(**INLINE)
def _gradient_row(out, row, m, i, zero, log_norm, scaled, growth, smoothing, n_vocab, labels, picked, stored):
    """Row ``i`` of :func:`shard_grad` into ``out``, from the logits ``row`` (max ``m``), or over the exps ``out``
    holds when ``stored`` (``row`` then unread)."""
    dtype = out.dtype.type
    if zero[i]:
        for j in range(out.shape[0]):
            out[j] = dtype(0)
        return
    factor, offset, at_label = _grad_factors(dtype, i, log_norm, scaled, growth, smoothing, n_vocab, picked)
    if stored:
        for j in range(out.shape[0]):
            out[j] = factor * out[j] - offset
    else:
        for j in range(out.shape[0]):
            out[j] = factor * vexp(row[j] - m) - offset
    if labels[i] >= 0:
        out[labels[i]] = at_label


@numba.njit(**OPTIONS)
def shard_grad(z, maxima, log_norm, scaled, zero, growth, smoothing, n_vocab, labels, picked, grad):
    """``grad[i] = c_i ((1 + growth_i) softmax_i - a / V)`` on the rank's columns, ``softmax = exp(z - m -
    log_norm)`` from the shifted logits (``lse = m + log_norm`` rounds to the max's precision), and at the
    label's column (``labels[i] >= 0``) ``c_i ((p_y - 1) (1 + growth_i) + growth_i + a (1 - 1 / V))`` with
    ``p_y - 1 = expm1(picked_i - log_norm_i)`` (exact where ``p_y`` rounds to 1). ``c = scaled`` (the row's
    reduction scale times the upstream value); a row where ``zero[i]`` (its scale is 0: ignored, or weight 0)
    is 0, whatever its logits and the upstream value. Row arrays float64 but ``maxima`` (``z``'s dtype);
    ``grad`` apart from ``z`` (:func:`shard_grad_stored` writes over the exps)."""
    for i in prange(z.shape[0]):
        _gradient_row(grad[i], z[i], maxima[i], i, zero, log_norm, scaled, growth, smoothing, n_vocab, labels,
                      picked, False)


@numba.njit(**OPTIONS)
def shard_grad_stored(exps, log_norm, scaled, zero, growth, smoothing, n_vocab, labels, picked):
    """:func:`shard_grad` in place over ``exps`` = ``exp(z - m)`` (:func:`shard_sums` with ``store``): one array,
    read and written (a serial twin is compiled ``noalias``: the gradient may not be another argument over the
    same memory)."""
    for i in prange(exps.shape[0]):
        _gradient_row(exps[i], exps[i], exps.dtype.type(0), i, zero, log_norm, scaled, growth, smoothing, n_vocab,
                      labels, picked, True)
