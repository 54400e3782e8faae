"""Compiled generalised JSD per row (GKD; :class:`~losskit.JSDivergence`), for the fused linear JSD.

A leaf, as the kernels of :mod:`losskit.fused.kernels` (their flags convention and their options):
it receives the student's and the teacher's logits of a chunk of rows and the reduction's
per-row ``scale`` (0 for an ignored row), writes ``scale * l`` per row (float64) and overwrites the
student's buffer with ``scale * d l / d z`` in place; the teacher's buffer and ``scratch`` are its
scratch. A row with a non-finite logit (or a loss that is not finite) gets ``flags[i] = 1``: the
caller then answers the whole call on the array-API path (:func:`~losskit.losses.distribution.generalized_jsd_terms`),
which gives the exact limits.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .kernels import INLINE, OPTIONS, SUM_CHUNK
from .vmath import vexp, vlog1p_unit

__all__ = ["jsd_rows", "jsd_scratch"]


def jsd_scratch(rows: int, width: int, beta: float, dtype):
    """The ``scratch`` :func:`jsd_rows` takes: a chunk's row of the mixture's terms per row."""
    return np.empty((rows, min(width, SUM_CHUNK) if 0.0 < beta < 1.0 else 0), dtype)


@numba.njit(**INLINE)
def _exp_sums(x, y, mx, my, anchored, start, count):
    """The two normalisers' sums over ``count`` classes from ``start``, in the rows' dtype, and when
    ``anchored`` (beta = 1) the sum and count of the teacher's logits where the student's is at its
    max (the branch outside the loops: the other loop keeps two sums)."""
    zero, one = x.dtype.type(0), x.dtype.type(1)
    sum_s = zero
    sum_t = zero
    y_top = zero
    n_top = zero
    if anchored:
        for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
            j = start + step
            sum_s += vexp(x[j] - mx)
            sum_t += vexp(y[j] - my)
            y_top += y[j] if x[j] == mx else zero
            n_top += one if x[j] == mx else zero
    else:
        for step in range(count):
            j = start + step
            sum_s += vexp(x[j] - mx)
            sum_t += vexp(y[j] - my)
    return float(sum_s), float(sum_t), float(y_top), float(n_top)


@numba.njit(**INLINE)
def _terms(x, y, w, mx, my, log_ss, log_st, gap, anchor, offset, beta, start, count):
    r"""The per-class terms over ``count`` classes from ``start`` (the branch on ``beta`` is outside
    each loop, so each stays vectorised): ``(sum p d, sum q (t - s) or sum q (t - m))`` in the rows'
    dtype, with ``p - q`` (``beta = 0``) or ``d`` into ``x`` and ``p`` into ``y``. A loop that only
    writes forms each class's values (the terms of the second sum into ``y`` for ``beta = 0``, into
    the scratch ``w`` for the mixture), then a loop that only reads adds them (see the design note of
    :mod:`losskit.fused.kernels`).

    ``d`` is formed from the tempered logits' difference, never from two log-softmaxes (each off by
    about ``|s| eps``, which ``d_j - K`` in the gradient would keep): ``s - t = (x - y) - gap`` with
    ``gap`` the difference of the two rows' log-normalisers; for ``beta = 1`` less its value at the
    student's max (``anchor`` is the teacher's logit there), ``(x - max x) - (y - anchor)``, 0 at the
    class that holds most of ``p``. For the mixture, with
    :math:`r = s - t + \log\frac{1 - \beta}{\beta} = (x - y) - \mathrm{offset}`,
    :math:`s - m = -\log(1 - \beta) - \mathrm{softplus}(-r)` and
    :math:`t - m = -\log\beta - \mathrm{softplus}(r)` (no log of an underflowed mixture); ``x`` and
    the sums take them without the constants (which :math:`\sum p = \sum q = 1` adds back in the
    loss, and which :math:`d_j - K` cancels): where one side dominates the softplus is tiny, and exact."""
    zero = x.dtype.type(0)
    kl_p = zero
    kl_q = zero
    if beta == 0.0:
        for step in range(count):
            j = start + step
            xj, yj = x[j], y[j]
            p = vexp((xj - mx) - log_ss)
            q = vexp((yj - my) - log_st)
            y[j] = q * (gap - (xj - yj))  # q (t - s)
            x[j] = p - q
        for step in range(count):
            kl_q += y[start + step]
    elif beta == 1.0:
        for step in range(count):
            j = start + step
            xj, yj = x[j], y[j]
            x[j] = (xj - mx) - (yj - anchor)  # s - t less its value at the student's max
            y[j] = vexp((xj - mx) - log_ss)
        for step in range(count):
            j = start + step
            kl_p += y[j] * x[j]
    else:
        for step in range(count):
            j = start + step
            xj, yj = x[j], y[j]
            p = vexp((xj - mx) - log_ss)
            q = vexp((yj - my) - log_st)
            r = (xj - yj) - offset  # log((1 - beta) p) - log(beta q)
            soft = vlog1p_unit(vexp(-abs(r)))  # softplus(+-r) = max(+-r, 0) + soft
            w[step] = q * -(max(r, zero) + soft)  # q (t - m + log(beta))
            x[j] = -(max(-r, zero) + soft)  # d = s - m + log(1 - beta): small where p dominates, and exact
            y[j] = p
        for step in range(count):
            j = start + step
            kl_p += y[j] * x[j]
            kl_q += w[step]
    return float(kl_p), float(kl_q)


@numba.njit(**OPTIONS)
def jsd_rows(student, teacher, scratch, scale, beta, temperature, scaled_loss, flags):
    r"""Generalised JSD of ``softmax(student / T)`` from ``softmax(teacher / T)``, rows of ``[R, V]``.

    ``beta = 0``: :math:`\sum q (t - s)`, gradient :math:`(p - q) / T`. ``beta = 1``:
    :math:`K = \sum p (s - t)`. Otherwise :math:`\beta \sum q (t - m) + (1 - \beta) K` with
    :math:`K = \sum p (s - m)`, :math:`m = \log(\beta q + (1 - \beta) p)`. In both,
    :math:`d l / d z_j = \frac{c}{T} p_j (d_j - K)` (:math:`d = s - t` or :math:`s - m`,
    :math:`c = 1` or :math:`1 - \beta`). ``s, t`` are the log-softmaxes of the tempered rows.

    ``scratch [R, min(V, SUM_CHUNK)]`` holds a chunk's mixture terms (``[R, 0]`` for ``beta`` 0 or 1).
    Four passes over a row: temper in place with the maxima (and a poison sum: NaN when a logit is
    not finite; and how far apart the two rows are: rows the same give the exact 0, loss and
    gradient, which the rounding of the dropped constants below would miss by an ulp); the two
    normalisers; the per-class terms (:func:`_terms`: ``d`` from the tempered
    logits' difference), with ``d_j`` into the student's buffer and ``p_j`` into the teacher's; the
    gradient. The row sums run in chunks of :data:`~losskit.fused.kernels.SUM_CHUNK` classes added
    in float64, as the other kernels'.
    """
    n, k = student.shape
    dtype = student.dtype.type
    zero = dtype(0)
    inv_t = dtype(1.0 / temperature)
    mixture = 0.0 < beta < 1.0
    log_odds = math.log1p(-beta) - math.log(beta) if mixture else 0.0  # log((1 - beta) / beta)
    coef = 1.0 - beta if mixture else 1.0
    anchored = beta == 1.0  # d is taken less its value at the student's max
    for i in prange(n):
        x, y = student[i], teacher[i]
        c = scale[i]
        if c == 0 or k == 0:  # an ignored row: no loss, no gradient, whatever its logits
            for j in range(k):
                x[j] = zero
            scaled_loss[i] = 0.0
            continue
        mx = x[0] * inv_t
        my = y[0] * inv_t
        poison = zero
        apart = zero
        for j in range(k):
            a = x[j] * inv_t
            b = y[j] * inv_t
            x[j] = a
            y[j] = b
            mx = max(mx, a)
            my = max(my, b)
            poison += a * zero + b * zero  # NaN for +-inf or NaN
            apart = max(apart, abs(a - b))  # a max and a NaN test: the same whatever the order
        if poison != zero:
            flags[i] = 1
            continue
        if apart == zero:  # p = q: JSD 0 and at its minimum
            for j in range(k):
                x[j] = zero
            scaled_loss[i] = 0.0
            continue
        full = k - k % SUM_CHUNK
        sum_s, sum_t, y_top, n_top = 0.0, 0.0, 0.0, 0.0
        for start in range(0, full, SUM_CHUNK):
            part_s, part_t, part_y, part_n = _exp_sums(x, y, mx, my, anchored, start, SUM_CHUNK)
            sum_s, sum_t, y_top, n_top = sum_s + part_s, sum_t + part_t, y_top + part_y, n_top + part_n
        part_s, part_t, part_y, part_n = _exp_sums(x, y, mx, my, anchored, full, k - full)
        sum_s, sum_t, y_top, n_top = sum_s + part_s, sum_t + part_t, y_top + part_y, n_top + part_n
        y_top = y_top / n_top if anchored else 0.0  # the teacher's (mean) logit at the student's max
        log_ss64, log_st64 = math.log(sum_s), math.log(sum_t)
        log_ss, log_st = dtype(log_ss64), dtype(log_st64)
        gap64 = (float(mx) + log_ss64) - (float(my) + log_st64)
        gap = dtype(gap64)  # s - t = (x - y) - gap, rounded once
        offset = dtype(gap64 - log_odds)  # r = log((1 - beta) p) - log(beta q) = (x - y) - offset
        anchor = dtype(y_top)
        # s - t at the student's max (with the anchor as rounded): s = -log_ss there, t = (anchor - my) - log_st;
        # not (mx - anchor) - gap, which cancels two numbers of the logits' size
        d_top = (float(my) - float(anchor) + log_st64) - log_ss64
        kl_p, kl_q = 0.0, 0.0  # sum p d; sum q (t - s) or sum q (t - m)
        for start in range(0, full, SUM_CHUNK):
            part_p, part_q = _terms(x, y, scratch[i], mx, my, log_ss, log_st, gap, anchor, offset, beta, start,
                                    SUM_CHUNK)
            kl_p, kl_q = kl_p + part_p, kl_q + part_q
        part_p, part_q = _terms(x, y, scratch[i], mx, my, log_ss, log_st, gap, anchor, offset, beta, full,
                                k - full)
        kl_p, kl_q = kl_p + part_p, kl_q + part_q
        if mixture:  # the constants dropped from d and t - m, as sum p = sum q = 1
            loss = beta * (kl_q - math.log(beta)) + (1.0 - beta) * (kl_p - math.log1p(-beta))
        else:  # beta = 1: d less d_top, which sum p = 1 adds back
            loss = kl_q if beta == 0.0 else kl_p + d_top
        if not math.isfinite(loss):
            flags[i] = 1
            continue
        scaled_loss[i] = c * loss
        factor = dtype(c * coef / temperature)
        if beta == 0.0:
            for j in range(k):
                x[j] = factor * x[j]
        else:
            centre = dtype(kl_p)  # K, less the constant each d is less (log(1 - beta) or d_top): d - K the same
            for j in range(k):
                x[j] = factor * (y[j] * (x[j] - centre))  # p (d - K), d - K without a product's rounding
