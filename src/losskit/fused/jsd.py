"""Compiled generalised JSD per row (GKD; :class:`~losskit.JSDivergence`), for the fused linear JSD.

A leaf, as the kernels of :mod:`losskit.fused.kernels` (their flags convention and their options):
it receives the student's and the teacher's logits of a chunk of rows and the reduction's
per-row ``scale`` (0 for an ignored row), writes ``scale * l`` per row (float64) and overwrites the
student's buffer with ``scale * d l / d z`` in place; the teacher's buffer is its scratch. A row
with a non-finite logit (or a loss that is not finite) gets ``flags[i] = 1``: the caller then
answers the whole call on the array-API path (:func:`~losskit.losses.distribution.generalized_jsd_terms`),
which gives the exact limits.
"""

from __future__ import annotations

import math

import numba
from numba import prange

from .kernels import OPTIONS
from .vmath import vexp, vlog1p_unit

__all__ = ["jsd_rows"]


@numba.njit(**OPTIONS)
def jsd_rows(student, teacher, scale, beta, temperature, scaled_loss, flags):
    r"""Generalised JSD of ``softmax(student / T)`` from ``softmax(teacher / T)``, rows of ``[R, V]``.

    ``beta = 0``: :math:`\sum q (t - s)`, gradient :math:`(p - q) / T`. ``beta = 1``:
    :math:`K = \sum p (s - t)`. Otherwise :math:`\beta \sum q (t - m) + (1 - \beta) K` with
    :math:`K = \sum p (s - m)`, :math:`m = \log(\beta q + (1 - \beta) p)`. In both,
    :math:`d l / d z_j = \frac{c}{T} p_j (d_j - K)` (:math:`d = s - t` or :math:`s - m`,
    :math:`c = 1` or :math:`1 - \beta`). ``s, t`` are the log-softmaxes of the tempered rows.

    Four passes over a row: temper in place with the maxima (and a poison sum: NaN when a logit is
    not finite); the two normalisers; the per-class terms (``d log m`` by
    ``max(a, b) + log1p(exp(-|a - b|))`` on ``a = s + log(1 - beta)``, ``b = t + log beta``: no log
    of an underflowed mixture), with ``p_j d_j`` into the student's buffer and ``p_j`` into the
    teacher's; the gradient. The branch on ``beta`` is outside the loops, so each stays vectorised.
    """
    n, k = student.shape
    dtype = student.dtype.type
    zero = dtype(0)
    inv_t = dtype(1.0 / temperature)
    mixture = 0.0 < beta < 1.0
    log_rest = dtype(math.log1p(-beta)) if mixture else zero  # log(1 - beta), weight of the student in m
    log_beta = dtype(math.log(beta)) if mixture else zero
    coef = 1.0 - beta if mixture else 1.0
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
        for j in range(k):
            a = x[j] * inv_t
            b = y[j] * inv_t
            x[j] = a
            y[j] = b
            mx = max(mx, a)
            my = max(my, b)
            poison += a * zero + b * zero  # NaN for +-inf or NaN
        if poison != zero:
            flags[i] = 1
            continue
        sum_s = zero
        sum_t = zero
        for j in range(k):
            sum_s += vexp(x[j] - mx)
            sum_t += vexp(y[j] - my)
        log_ss = dtype(math.log(float(sum_s)))
        log_st = dtype(math.log(float(sum_t)))
        kl_p = zero  # sum p d
        kl_q = zero  # sum q (t - s) or sum q (t - m)
        if beta == 0.0:
            for j in range(k):
                s = (x[j] - mx) - log_ss
                t = (y[j] - my) - log_st
                p = vexp(s)
                q = vexp(t)
                kl_q += q * (t - s)
                x[j] = p - q
            loss = float(kl_q)
        elif beta == 1.0:
            for j in range(k):
                s = (x[j] - mx) - log_ss
                t = (y[j] - my) - log_st
                p = vexp(s)
                pd = p * (s - t)
                kl_p += pd
                x[j] = pd
                y[j] = p
            loss = float(kl_p)
        else:
            for j in range(k):
                s = (x[j] - mx) - log_ss
                t = (y[j] - my) - log_st
                p = vexp(s)
                q = vexp(t)
                a = s + log_rest
                b = t + log_beta
                m = max(a, b) + vlog1p_unit(vexp(-abs(a - b)))  # log((1 - beta) p + beta q)
                pd = p * (s - m)
                kl_p += pd
                kl_q += q * (t - m)
                x[j] = pd
                y[j] = p
            loss = beta * float(kl_q) + (1.0 - beta) * float(kl_p)
        if not math.isfinite(loss):
            flags[i] = 1
            continue
        scaled_loss[i] = c * loss
        factor = dtype(c * coef / temperature)
        if beta == 0.0:
            for j in range(k):
                x[j] = factor * x[j]
        else:
            centre = kl_p
            for j in range(k):
                x[j] = factor * (x[j] - y[j] * centre)
