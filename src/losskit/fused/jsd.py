r"""Compiled generalised JSD per row (GKD; :class:`~losskit.JSDivergence`), for the fused linear JSD.

A leaf, as the kernels of :mod:`losskit.fused.kernels` (their flags convention and their options),
that imports nothing of the losses: :func:`jsd_kernel` makes the kernel from the formula functions
its caller passes (:func:`losskit.losses._compiled.jsd_kernel`). The kernel receives the student's
and the teacher's logits of a chunk of rows (copies: both are written) and the reduction's per-row
``scale`` (0 for an ignored row), writes ``scale * l`` per row (float64) and overwrites the
student's buffer with ``scale * d l / d z`` in place. A row with a non-finite logit (or a loss that
is not finite) gets ``flags[i] = 1``: the caller then answers the whole call on the array-API path
(:func:`~losskit.losses.distribution.generalized_jsd_terms`), which gives the exact limits.

The value is the sum of terms >= 0 of :func:`~losskit.losses.distribution.centred_jsd`, so that a
small divergence keeps its relative precision (the difference of two log-softmaxes kept only theirs:
18 to 410 eps on the precision grid).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from .kernels import INLINE, SUM_CHUNK, row_sweep
from .rows import _normaliser
from .vmath import row_max, vexp, vexpm1, vlog1p

__all__ = ["jsd_kernel", "jsd_scratch"]

#: :data:`losskit.losses.distribution._LOG_RATIO_FAR`: beyond it the mixture is the one side
LOG_RATIO_FAR = 80.0


def jsd_scratch(rows: int, width: int, dtype):
    """The ``scratch`` the kernel takes: a chunk's six rows of terms per row."""
    return np.empty((rows, 6, min(width, SUM_CHUNK)), dtype)


@numba.njit(**INLINE)
def _chunk_sum(terms, count):
    """The sum of a chunk's ``count`` terms in their dtype, as float: a loop that only reads, of a constant
    trip count for a whole chunk (see :mod:`losskit.fused.kernels`' design note: the kernel's loops that
    write sum nothing)."""
    total = terms.dtype.type(0)
    if count == SUM_CHUNK:
        for step in range(SUM_CHUNK):
            total += terms[step]
    else:
        for step in range(count):
            total += terms[step]
    return float(total)


@functools.cache
def jsd_kernel(expm1, moment, gap, salt: int, cacheable: bool):
    r"""The generalised JSD's compiled rows, made with the formula functions ``expm1``
    (``scaled_expm1``), ``moment`` (``scaled_exp_moment``) and ``gap`` (``logit_gap``), registered with
    :func:`~losskit.fused.formula.register_helpers`; ``salt`` keys the disk cache on their source::

        kernel(xp, student, teacher, scratch, scale, beta, temperature, scaled_loss, flags)

    ``student, teacher [R, V]`` (both overwritten: the student's with the scaled gradient), ``scratch``
    from :func:`jsd_scratch`. Per row,
    with ``r = log q - log p`` (:func:`~losskit.losses.distribution.centred_jsd`): ``beta = 0`` sums
    ``p psi(r)``, gradient ``-p expm1(r) / T`` (at the rows' shared max ``(1 - q) - (1 - p)`` from the
    other classes' terms); ``beta = 1`` sums ``q psi(-r)``; otherwise ``beta sum m psi(log q/m) + (1 -
    beta) sum m psi(log p/m)``; gradient ``(c / T) p_j (d_j - K)``, ``K = sum p d``, with ``d = log p/m``
    (``-r`` for beta = 1) less a constant that keeps ``d_j - K`` from cancelling (its value at the
    student's max for beta = 1, ``-log(1 - beta)`` in a far mixture row; ``K`` the near mixture row's
    ``sum m psi(log p/m)``), and for the class holding more than half of ``p`` the sum ``sum_k p_k (d_j -
    d_k)``. As :func:`~losskit.losses.distribution.centred_jsd`, which names each piece.

    Passes: the maxima (and a poison sum: NaN for a non-finite logit, flagged); the two normalisers
    and the teacher's sum of ``e^dt d``, ``d = gap(t, z, max t, max z) / T``, whose mean ``c`` gives the
    forward KL's first form ``c - log(S_t / S_s)``; where that is below 1, ``w = log1p(sum p expm1(d -
    c))`` (``p e^u`` from the teacher's ``exp`` times a row factor) and ``r = (d - c) - w``, elsewhere
    ``r = d - log(S_t / S_s)``; the value's terms (``p`` into the student's buffer and ``d`` into the
    teacher's, or the gradient itself for ``beta = 0``); the gradient. Sums run in chunks of
    :data:`~losskit.fused.kernels.SUM_CHUNK` classes in the rows' dtype, added in float64."""

    def row(xp, x, y, w, s, beta, temperature):
        k = x.shape[0]
        dtype = x.dtype.type
        zero, one = dtype(0), dtype(1)
        inv_t = dtype(1.0 / temperature)
        mixture = 0.0 < beta < 1.0
        weight_q, weight_p = dtype(beta), dtype(1.0 - beta)  # the mixture's weights
        log_weight_q = dtype(math.log(beta)) if mixture else zero
        log_weight_p = dtype(math.log1p(-beta)) if mixture else zero
        far = dtype(LOG_RATIO_FAR)
        log_odds = dtype(math.log(beta) - math.log1p(-beta)) if mixture else zero
        # below these log1p's argument, the softplus forms of log p/m and log q/m (_log_ratio_to_mixture)
        low_p = dtype(math.log1p(-beta) / (1.0 - math.log1p(-beta))) if mixture else zero
        low_q = dtype(math.log(beta) / (1.0 - math.log(beta))) if mixture else zero
        coef = (1.0 - beta if mixture else 1.0) / temperature
        if s == 0 or k == 0:  # an ignored row: no loss, no gradient, whatever its logits
            for j in range(k):
                x[j] = zero
            return 0.0, False
        mx = row_max(x)
        my = row_max(y)
        poison = zero
        for j in range(k):
            poison += x[j] * zero + y[j] * zero  # NaN for +-inf or NaN
        if poison != zero:
            return 0.0, True
        # each pass's loop writes a chunk's terms into w alone, and a loop of _chunk_sum adds them: a loop
        # that wrote both w and the row ran several times slower (no vectorised body), so the values the
        # row keeps (the gradient, or p and d) are copied there by a loop of their own
        # each normaliser as 1 + rest, rest = the terms below the max plus the other maxima (rows._normaliser:
        # 1 + 1e-8 - 1 would lose 1e-8's last digits, which the shared max's gradient needs)
        gaps, below_s, ties_s, below_t, ties_t = 0.0, 0.0, 0.0, 0.0, 0.0
        for chunk in range((k + SUM_CHUNK - 1) // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
            start = chunk * SUM_CHUNK
            count = min(SUM_CHUNK, k - start)
            for step in range(count):
                j = start + step
                es = vexp((x[j] - mx) * inv_t)
                et = vexp((y[j] - my) * inv_t)
                w[0, step] = es if es < one else zero
                w[1, step] = zero if es < one else one
                w[2, step] = et if et < one else zero
                w[3, step] = zero if et < one else one
                w[4, step] = et * (gap(xp, y[j], x[j], my, mx) * inv_t)
            below_s += _chunk_sum(w[0], count)
            ties_s += _chunk_sum(w[1], count)
            below_t += _chunk_sum(w[2], count)
            ties_t += _chunk_sum(w[3], count)
            gaps += _chunk_sum(w[4], count)
        rest_s, sum_s, log_s = _normaliser(below_s, ties_s)
        rest_t, sum_t, log_t = _normaliser(below_t, ties_t)
        centre = gaps / sum_t  # the teacher's mean of d
        log_ratio = log_t - log_s
        inv_s, inv_q = dtype(1.0 / sum_s), dtype(1.0 / sum_t)
        near = centre - log_ratio < 1.0
        if near:  # the forward KL below 1: w = log sum p e^u from u = d - c itself
            first = dtype(centre)
            exp_shift = dtype(math.exp(min(-float(first), 60.0)) / sum_s)  # p e^u = e^dt (e^-c / S_s)
            total = 0.0
            for chunk in range((k + SUM_CHUNK - 1) // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
                start = chunk * SUM_CHUNK
                count = min(SUM_CHUNK, k - start)
                for step in range(count):
                    j = start + step
                    u = gap(xp, y[j], x[j], my, mx) * inv_t - first
                    w[0, step] = expm1(xp, u, vexp((x[j] - mx) * inv_t) * inv_s,
                                       vexp((y[j] - my) * inv_t) * exp_shift)
                total += _chunk_sum(w[0], count)
            second = dtype(math.log1p(total))
        else:
            first, second = dtype(log_ratio), zero
        # beta = 1: the gradient's d = log p/q less a constant, ((z - max z) - (t - t_top)) / T
        # (anchored_log_ratio), 0 at a sole max
        anchor = zero
        if beta == 1.0:
            anchor_sum, ties = 0.0, 0.0
            for j in range(k):
                if x[j] == mx:
                    anchor_sum += float(y[j])
                    ties += 1.0
            anchor = dtype(anchor_sum / ties)  # the teacher's mean logit over the student's maxima
        # beta > 0: the class holding more than half of p (S_s < 2: the student's max, alone)
        top = -1
        top_d = zero
        if beta > 0.0 and sum_s < 2.0:
            for j in range(k):
                if x[j] == mx:
                    top = j
                    break
            r = (gap(xp, y[top], x[top], my, mx) * inv_t - first) - second
            if beta == 1.0:
                top_d = -gap(xp, y[top], x[top], anchor, mx) * inv_t
            else:
                sp = xp.softplus(r + log_odds)
                a = weight_q * vexpm1(min(r, far))
                top_d = -sp if not near else -(r + log_weight_q) if r > far else \
                    (-sp - log_weight_p) if a < low_p else -vlog1p(a)
        kl_p, kl_q, top_gap, far_k = 0.0, 0.0, 0.0, 0.0  # far_k: sum p d of the gradient's shifted d
        scaled_grad = dtype(-s / temperature)
        shared_grad = dtype(s / temperature * (rest_t / sum_t - rest_s / sum_s))
        # taken where it rounds less than -p expm1(r), whose r is off by an ulp of first and second
        shared = rest_s / sum_s + rest_t / sum_t < (abs(float(first)) + abs(float(second))) / sum_s
        for chunk in range((k + SUM_CHUNK - 1) // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
            start = chunk * SUM_CHUNK
            count = min(SUM_CHUNK, k - start)
            if beta == 0.0:
                for step in range(count):
                    j = start + step
                    es = vexp((x[j] - mx) * inv_t)
                    et = vexp((y[j] - my) * inv_t)
                    p, q = es * inv_s, et * inv_q
                    r = (gap(xp, y[j], x[j], my, mx) * inv_t - first) - second
                    w[0, step] = moment(xp, r, p, q)
                    # (p - q) / T, scaled; at the rows' shared max (1 - q) - (1 - p) where that rounds less
                    w[3, step] = shared_grad if (shared and es >= one and et >= one) else \
                        scaled_grad * expm1(xp, r, p, q)
                for step in range(count):
                    x[start + step] = w[3, step]
                kl_q += _chunk_sum(w[0], count)
                continue
            if beta == 1.0:
                for step in range(count):
                    j = start + step
                    p = vexp((x[j] - mx) * inv_t) * inv_s
                    q = vexp((y[j] - my) * inv_t) * inv_q
                    dg = gap(xp, y[j], x[j], my, mx) * inv_t
                    w[0, step] = moment(xp, -((dg - first) - second), q, p)  # q psi(log p/q)
                    d = -gap(xp, y[j], x[j], anchor, mx) * inv_t  # log p/q less a constant
                    w[2, step] = zero if j == top else p * (top_d - d)
                    w[3, step] = p
                    w[4, step] = d
                    w[5, step] = p * d
            else:
                for step in range(count):
                    j = start + step
                    p = vexp((x[j] - mx) * inv_t) * inv_s
                    q = vexp((y[j] - my) * inv_t) * inv_q
                    r = (gap(xp, y[j], x[j], my, mx) * inv_t - first) - second
                    mix = weight_p * p + weight_q * q
                    # log p/m and log q/m as _log_ratio_to_mixture: log1p's form, its softplus form where that
                    # rounds less, beyond `far` the one side; sp, sq: -log((1 - beta) p/m), -log(beta q/m)
                    sp = xp.softplus(r + log_odds)
                    sq = xp.softplus(-r - log_odds)
                    a = weight_q * vexpm1(min(r, far))
                    b = weight_p * vexpm1(min(-r, far))
                    d = -(r + log_weight_q) if r > far else (-sp - log_weight_p) if a < low_p else -vlog1p(a)
                    to_q = (r - log_weight_p) if -r > far else (-sq - log_weight_q) if b < low_q else -vlog1p(b)
                    w[0, step] = moment(xp, d, mix, p)
                    w[1, step] = moment(xp, to_q, mix, q)
                    if not near:  # the gradient's d less log(1 - beta) (mixture_log_ratio)
                        d = -sp
                    w[2, step] = zero if j == top else p * (top_d - d)
                    w[3, step] = p
                    w[4, step] = d
                    w[5, step] = p * d
                kl_q += _chunk_sum(w[1], count)
            far_k += _chunk_sum(w[5], count)
            for step in range(count):  # p and d kept for the gradient
                x[start + step] = w[3, step]
                y[start + step] = w[4, step]
            kl_p += _chunk_sum(w[0], count)
            top_gap += _chunk_sum(w[2], count)
        loss = kl_q if beta == 0.0 else kl_p if beta == 1.0 else beta * kl_q + (1.0 - beta) * kl_p
        if not (math.isfinite(loss) and math.isfinite(top_gap) and math.isfinite(far_k)):
            return 0.0, True
        scaled = s * loss
        if beta > 0.0:
            factor = dtype(s * coef)
            centre_k = dtype(kl_p if near and beta < 1.0 else far_k)  # K (of the gradient's d)
            top_p = x[top] if top >= 0 else zero
            for j in range(k):
                x[j] = factor * (x[j] * (y[j] - centre_k))  # p (d - K)
            if top >= 0:
                x[top] = factor * (top_p * dtype(top_gap))
        return scaled, False

    return row_sweep(row, salt, cacheable)
