r"""Compiled class-axis kernels: KL divergence, distillation, softmax focal, Poly-1, Crammer-Singer.

Each is a softmax row sweep (or, for Crammer-Singer, a max sweep) plus the loss's own per-row
term, a leaf as the kernels of :mod:`losskit.fused.kernels` (their flags convention, their
options and their precision rules). Arguments common to the softmax kernels: logits ``z [N, K]``;
``labels [N]`` int64 (0 for an ignored row) or an empty array when the target is dense; ``dense
[N, K]`` (probabilities in the logits' dtype, or the teacher's logits) or an empty ``[0, K]``;
``scale [N]`` the reduction's per-row scale (0 for an ignored or weight-0 row, whose loss and
gradient are written 0); ``smoothing`` ``a``, the smoothed target being
:math:`y' = (1 - a) y + a / K`. Outputs ``scaled_loss [N]`` (float64, ``scale * l``) and ``grad
[N, K]`` (``scale * dl/dz``); a kernel that needs no row of scratch without a gradient receives
one scratch row ``[1, K]`` then, and writes nothing there. ``grad`` never aliases ``z`` or
``dense``: the caller copies the logits when it writes the gradient in place (``out=x``), and never
passes a buffer it writes as another argument (the serial twins are compiled ``noalias``).

Precision as the array-API path: the normaliser is ``log1p`` of the terms below the row max (a
sure row's tiny loss is kept), the missing probability of a class is ``(total - e_k) / total``
(``rest / total`` at the max: no ``1 - p`` cancels), and the label's gradient is formed from
those. A row with a logit of +inf (or a loss that is not finite) is flagged, and the reference
gives the exact limit. Every row sum runs in chunks of :data:`~losskit.fused.kernels.SUM_CHUNK` classes
(in the row's dtype within a chunk, float64 across chunks), so a float32 row of a vocabulary's width
keeps float32's precision (docs/losses.md); focal's per-class sums run in float64 throughout (its loop
is float64-wide already, for ``vpow``), as a near one-hot target's one large term would otherwise
round each float32 addition to its own ulp.

Design note: the dense-target kernels fold the target's sums into the exp pass (one read of the
target there, one in the gradient pass) instead of a separate pass per sum. A label row of Poly-1
(any smoothing) or focal (no smoothing) touches only its label's term, so its gradient is one scaled
copy of the softmax, as softmax CE's: those rows run softmax CE's kernels
(:func:`~losskit.fused.kernels.softmax_ce_rows` with Poly-1's ``epsilon`` or focal's ``alpha``, and their
blocked forms for short rows), not this module's.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange

from .kernels import INLINE, OPTIONS, SUM_CHUNK, _unweighted, row_sweep, store_exp
from .vmath import row_max, row_max_but, vexp, vlog, vlog1p, vpow

__all__ = ["kl_dense_rows", "kl_dense_short_rows", "distillation_kernel", "focal_rows", "focal_scratch", "poly_rows",
           "crammer_singer_rows"]


def focal_scratch(rows: int, width: int, dtype):
    """The ``scratch`` :func:`focal_rows` takes: a chunk's row of the loss's terms per row."""
    return np.empty((rows, min(width, SUM_CHUNK)), dtype)


@numba.njit(**INLINE)
def _flagged_max(row, flags, i):
    """The row's max; a max that is not finite (a +inf logit, or every logit -inf) flags the row."""
    m = row_max(row)
    if not math.isfinite(m):
        flags[i] = 1
    return m


@numba.njit(**INLINE)
def _target_sums(row, target, out, m, keep, low, entropy, start, count):
    """:func:`_target_exp_pass` over ``count`` terms from ``start``: the exps into ``out`` (a loop that
    only writes), then the sums in the row's dtype (a loop that only reads, ``out`` still in L1)."""
    store_exp(row, out, m, start, count)
    return _stored_target_sums(row, target, out, m, keep, low, entropy, start, count)


@numba.njit(**INLINE)
def _stored_target_sums(row, target, out, m, keep, low, entropy, start, count):
    """The sums of :func:`_target_sums` from the exps already in ``out`` (a loop that only reads)."""
    zero, one = row.dtype.type(0), row.dtype.type(1)
    below = zero
    ties = zero
    total_y = zero
    y_shifted = zero
    y_exp = zero
    y_log_y = zero
    for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
        j = start + step
        d = row[j] - m
        e = out[j]
        y = keep * target[j] + low
        below += e if d < zero else zero
        ties += one if d >= zero else zero
        total_y += y
        y_shifted += y * d if y != zero else zero
        y_exp += y * e
        if entropy:  # loop-invariant: LLVM takes the branch out of the loop (as fast as two inlined copies,
            # measured, and a third less to compile)
            y_log_y += y * vlog(y) if y > zero else zero  # 0 log 0 = 0
    return below, ties, total_y, y_shifted, y_exp, y_log_y


@numba.njit(**INLINE)
def _target_exp_pass(row, target, out, m, keep, low, entropy):
    """``exp(row - m)`` into ``out`` and, in float64, the sums of the softmax (the terms below the max
    and the ties with it, as :func:`~losskit.fused.kernels.softmax_ce_rows`) and of the smoothed target
    ``y' = keep * target + low``: ``sum y'``, ``sum y' (z - m)`` (0 where ``y'`` is 0, even for a
    logit of -inf), ``sum y' exp(z - m)`` and, when ``entropy``, ``sum y' log y'`` (else 0); in
    chunks of :data:`SUM_CHUNK` added in float64."""
    k = row.shape[0]
    full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
    below, ties, total_y, y_shifted, y_exp, y_log_y = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
        start = chunk * SUM_CHUNK
        b, t, ty, ys, ye, yl = _target_sums(row, target, out, m, keep, low, entropy, start, SUM_CHUNK)
        below, ties, total_y = below + float(b), ties + float(t), total_y + float(ty)
        y_shifted, y_exp, y_log_y = y_shifted + float(ys), y_exp + float(ye), y_log_y + float(yl)
    b, t, ty, ys, ye, yl = _target_sums(row, target, out, m, keep, low, entropy, full, k - full)  # the rest
    return (below + float(b), ties + float(t), total_y + float(ty), y_shifted + float(ys),
            y_exp + float(ye), y_log_y + float(yl))


@numba.njit(**INLINE)
def _probability_sums(target, start, count):
    """The sum of ``count`` probabilities from ``start`` and the count of those outside [0, 1] (NaN
    included), in the row's dtype: a loop that only reads."""
    zero, one = target.dtype.type(0), target.dtype.type(1)
    total = zero
    outside = zero
    for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
        t = target[start + step]
        total += t
        outside += zero if (t >= zero) & (t <= one) else one
    return total, outside


@numba.njit(**INLINE)
def _probabilities_off(target, tolerance):
    """Whether a row of probability targets fails the plan's checks, which the callers of
    :func:`kl_dense_rows`, :func:`poly_rows` and :func:`focal_rows` leave to them: a value outside
    [0, 1] or a sum off 1 by more than ``tolerance`` (``losskit._checks.row_sum_tolerance``); summed in
    chunks of :data:`SUM_CHUNK` added in float64."""
    k = target.shape[0]
    full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
    total, outside = 0.0, 0.0
    for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
        start = chunk * SUM_CHUNK
        t, o = _probability_sums(target, start, SUM_CHUNK)
        total, outside = total + float(t), outside + float(o)
    t, o = _probability_sums(target, full, k - full)
    total, outside = total + float(t), outside + float(o)
    return outside != 0.0 or not abs(total - 1.0) <= tolerance


@numba.njit(**INLINE)
def _normaliser(below, ties):
    """``(rest, total, log_norm)`` in float64: the softmax's sum is ``total = 1 + rest`` (the leading
    1 is the row max's own term) and its log ``log1p(rest)``, exact for a sure row."""
    rest = float(below) + (float(ties) - 1.0)
    return rest, 1.0 + rest, math.log1p(rest)


@numba.njit(**OPTIONS)
def kl_dense_rows(z, dense, scale, smoothing, entropy, tolerance, scaled_loss, grad, flags):
    r"""KL divergence of probability targets: :math:`l = \sum y' \log y' + \log\sum e^{z} \sum y'
    - \sum y' z`, gradient :math:`p \sum y' - y'`; without ``entropy``, the cross-entropy
    :math:`-\sum y' \log \mathrm{softmax}(z)` (the same without its first term: softmax CE of
    probability targets). ``grad`` is full ``[N, K]`` (scratch without a gradient). A row whose target
    fails the plan's checks (values in [0, 1], a sum within ``tolerance`` of 1), weighted or not, is
    flagged: the callers leave those checks to it. Two passes after the max: ``exp`` into ``grad`` with
    the target's sums (its :math:`\sum y' \log y'` among them when ``entropy``, 0 where
    :math:`y' = 0`); the gradient."""
    n, k = z.shape
    dtype = z.dtype.type
    one = dtype(1)
    keep, low = dtype(1.0 - smoothing), dtype(smoothing / k)
    for i in prange(n):
        s = scale[i]
        g = grad[i]
        if _probabilities_off(dense[i], tolerance):
            flags[i] = 1
            continue
        if _unweighted(s, g, True, scaled_loss, i):
            continue
        row, target = z[i], dense[i]
        m = _flagged_max(row, flags, i)
        if not math.isfinite(m):
            continue
        below, ties, total_y, y_shifted, _, neg_entropy = _target_exp_pass(row, target, g, m, keep, low, entropy)
        # (entropy False: softmax CE of probability targets, neg_entropy 0)
        rest, total, log_norm = _normaliser(below, ties)
        loss = neg_entropy + total_y * log_norm - y_shifted
        if not math.isfinite(loss):  # a class ruled out (-inf) that the target gives mass
            flags[i] = 1
            continue
        scaled_loss[i] = s * loss
        scaled_t, sw = dtype(s * total_y / total), dtype(s)
        t_y, q_max = dtype(total_y), dtype(rest / total)  # 1 - p at the row max, from the other terms
        for j in range(k):
            y = keep * target[j] + low
            e = g[j]
            # at the max p T - y = (T - y) - q T: exact for a sure row's one-hot target
            g[j] = e * scaled_t - sw * y if e < one else sw * ((t_y - y) - q_max * t_y)


#: rows of at most this many classes take :func:`kl_dense_short_rows` (a row's sums are one chunk either
#: way): 1.5-1.7x :func:`kl_dense_rows` at 4 to 32 classes, 1.15x at 48, none from 64 (``python -m
#: benchmarks.short_rows --dense``, BENCHMARKS.md)
SHORT_ROW = 48
#: the logits of one block of :func:`kl_dense_short_rows` (whole rows; their exps held at once)
SHORT_BLOCK = 8192


@numba.njit(**OPTIONS)
def kl_dense_short_rows(z, dense, scale, smoothing, entropy, tolerance, scaled_loss, grad, flags):
    """:func:`kl_dense_rows` for rows of at most :data:`SHORT_ROW` classes, with the same arguments and
    the same bits, a block of whole rows (about :data:`SHORT_BLOCK` logits) at a time: each row's max and
    ``z - max`` written into the gradient's rows; their exps in one flat loop over the block (full SIMD
    width, whatever K: a row's own loop of K exps ran mostly in LLVM's scalar remainder, and at K = 21
    to 100 the kernel was slower than torch eager); then each row's sums from its stored exps, the
    rows' ``log1p`` normalisers flat over the block, and each row's loss and gradient as
    :func:`kl_dense_rows` forms them."""
    n, k = z.shape
    dtype = z.dtype.type
    one = dtype(1)
    keep, low = dtype(1.0 - smoothing), dtype(smoothing / k)
    block = max(1, SHORT_BLOCK // max(k, 1))
    for b in prange((n + block - 1) // block):
        lo = b * block
        hi = min(n, lo + block)
        maxima = np.empty(hi - lo, z.dtype)
        for i in range(lo, hi):
            row, g = z[i], grad[i]
            m = row_max(row)
            maxima[i - lo] = m
            for j in range(k):
                g[j] = row[j] - m
        exps = grad[lo:hi].reshape((hi - lo) * k)  # the block's rows are contiguous (grad is [N, K], C order)
        for p in range(exps.shape[0]):  # the one loop that takes the exps: a long trip count
            exps[p] = vexp(exps[p])
        # each row's sums (float64), then the rows' log1p normalisers flat over the block (vectorised: a
        # math.log1p per row cost as much as a short row's own exps), then each row's loss and gradient
        rest, total_y, y_shifted, neg_entropy = (np.zeros(hi - lo), np.zeros(hi - lo), np.zeros(hi - lo),
                                                 np.zeros(hi - lo))
        done = np.zeros(hi - lo, np.bool_)  # flagged or weight 0 (flags is only written, as kl_dense_rows does)
        for i in range(lo, hi):
            r, g = i - lo, grad[i]
            done[r] = True
            if _probabilities_off(dense[i], tolerance):
                flags[i] = 1
                continue
            if _unweighted(scale[i], g, True, scaled_loss, i):
                continue
            if not math.isfinite(maxima[r]):  # a +inf or all -inf row: the reference gives the limit
                flags[i] = 1
                continue
            done[r] = False
            below, ties, t_sum, shifted_sum, _, y_log_y = _stored_target_sums(z[i], dense[i], g, maxima[r], keep,
                                                                              low, entropy, 0, k)
            rest[r] = float(below) + (float(ties) - 1.0)  # the max itself is one of the ties
            total_y[r], y_shifted[r], neg_entropy[r] = float(t_sum), float(shifted_sum), float(y_log_y)
        log_norm = np.empty(hi - lo)
        for r in range(hi - lo):
            log_norm[r] = vlog1p(rest[r])
        for i in range(lo, hi):
            r, s, g = i - lo, scale[i], grad[i]
            if done[r]:
                continue
            loss = neg_entropy[r] + total_y[r] * log_norm[r] - y_shifted[r]
            if not math.isfinite(loss):  # a class ruled out (-inf) that the target gives mass
                flags[i] = 1
                continue
            scaled_loss[i] = s * loss
            total = 1.0 + rest[r]
            scaled_t, sw = dtype(s * total_y[r] / total), dtype(s)
            t_y, q_max = dtype(total_y[r]), dtype(rest[r] / total)  # 1 - p at the row max, from the other terms
            target = dense[i]
            for j in range(k):
                y = keep * target[j] + low
                e = g[j]
                # at the max p T - y = (T - y) - q T: exact for a sure row's one-hot target
                g[j] = e * scaled_t - sw * y if e < one else sw * ((t_y - y) - q_max * t_y)


@numba.njit(**INLINE)
def _pair_sums(row, t, g, student, mz, mt, inv_t, start, count):
    """Distillation's normalisers over ``count`` classes from ``start``, in the row's dtype: the
    student's and the teacher's terms below their max and ties with it. The teacher's tempered
    ``exp`` goes into ``g`` and the student's into ``student`` first (loops that only write; the KL
    terms and the gradient read them again), then the sums (a loop that only reads), with the
    teacher's sum of ``e^dt (dt - ds)``."""
    for step in range(count):
        j = start + step
        g[j] = vexp((t[j] - mt) * inv_t)
    for step in range(count):
        j = start + step
        student[j] = vexp((row[j] - mz) * inv_t)
    zero, one = row.dtype.type(0), row.dtype.type(1)
    below_s = zero
    ties_s = zero
    below_t = zero
    ties_t = zero
    gaps = zero
    for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
        j = start + step
        ds = (row[j] - mz) * inv_t
        dt = (t[j] - mt) * inv_t
        es = student[j]
        et = g[j]
        below_s += es if ds < zero else zero
        ties_s += one if ds >= zero else zero
        below_t += et if dt < zero else zero
        ties_t += one if dt >= zero else zero
        gaps += et * (dt - ds)
    return float(below_s), float(ties_s), float(below_t), float(ties_t), float(gaps)


@functools.cache
def distillation_kernel(expm1, moment, finish, gap, exact_below: float, salt: int, cacheable: bool):
    r"""Distillation's compiled rows, made with the formula functions of its near rows' value (this leaf
    module imports nothing of the losses: the caller passes them, registered with
    :func:`~losskit.fused.formula.register_helpers`, and the source ``salt`` that keys the disk cache):
    ``expm1`` (``scaled_expm1``), ``moment`` (``scaled_exp_moment``), ``finish`` (``centred_kl``), ``gap``
    (``logit_gap``), and ``exact_below`` (``_shared.EXACT_GRADIENT_BELOW``)::

        kernel(xp, z, teacher, grad, scale, temperature, with_grad, scaled_loss, flags)

    :math:`T^2 \sum q (\log q - \log p)`, :math:`p = \mathrm{softmax}(z / T)`, :math:`q =
    \mathrm{softmax}(t / T)`; gradient :math:`T (p - q)`. Passes: the two maxima (and a poison sum: NaN
    for a logit of +-inf, flagged); the teacher's terms into ``grad``, the two normalisers (below and
    ties, as softmax CE's) and the teacher's sum of ``e^dt (dt - ds)``, whose mean ``c`` gives the
    first form of the value, ``c + log(S_s / S_t)``; for a near row, the value's centred sum; the
    gradient. Each ``exp`` is taken once: the teacher's kept in ``grad``, the student's in a row of
    scratch (taken again in the centred sum and the gradient, they made the call 1.10-1.14x slower at
    4096 x 32000 float32: ``python -m benchmarks.distillation_rows``, BENCHMARKS.md). ``grad`` is full
    ``[N, K]`` (scratch without a gradient), so that the sums are taken by the same loops either way.

    The value's sum: where the first form is below 1, the centred sum of
    :func:`losskit.losses.distribution.centred_distillation_kl`, ``b = sum p psi(u)`` with ``u = gap(t,
    z, max t, max z) / T - c`` (``p e^u`` from the teacher's stored ``exp``: a product, not an ``exp``),
    and the value ``finish(w, b)``, ``w = log1p(sum p expm1(u))``. Elsewhere the first form itself, whose
    two normalisers cancel only where the value is small (a per-class pass of ``q (dt - ds + log(S_s /
    S_t))`` was no closer: 0.2-1.9 eps of float32 without it on benchmarks/accuracy.py's long rows)."""

    def row_terms(xp, row, t, g, s, temperature, with_grad):
        k = row.shape[0]
        dtype = row.dtype.type
        zero = dtype(0)
        inv_t = dtype(1.0 / temperature)
        if s == 0:  # a row of weight 0 costs 0; its gradient row zeroed
            for j in range(k):
                g[j] = zero
            return 0.0, False
        mz = row_max(row)
        mt = row_max(t)
        poison = zero
        for j in range(k):
            poison += row[j] * zero + t[j] * zero
        if poison != zero:
            return 0.0, True
        full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
        student = np.empty(k, row.dtype)  # the student's exps, taken once (the sums, the centred sum, the gradient)
        below_s, ties_s, below_t, ties_t, gaps = 0.0, 0.0, 0.0, 0.0, 0.0
        for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
            start = chunk * SUM_CHUNK
            bs, ts, bt, tt, gs = _pair_sums(row, t, g, student, mz, mt, inv_t, start, SUM_CHUNK)
            below_s, ties_s, below_t, ties_t = below_s + bs, ties_s + ts, below_t + bt, ties_t + tt
            gaps += gs
        bs, ts, bt, tt, gs = _pair_sums(row, t, g, student, mz, mt, inv_t, full, k - full)  # the rest
        below_s, ties_s, below_t, ties_t = below_s + bs, ties_s + ts, below_t + bt, ties_t + tt
        gaps += gs
        rest_s, total_s, log_ns = _normaliser(below_s, ties_s)
        rest_t, total_t, log_nt = _normaliser(below_t, ties_t)
        centre = gaps / total_t  # the teacher's mean of dt - ds
        first_form = centre + (log_ns - log_nt)
        if first_form < 1.0:  # KL below 1: the centred sum
            c, inv_s = dtype(centre), dtype(1.0 / total_s)
            exp_shift = dtype(math.exp(-float(c) - log_ns))  # p e^u = e^dt e^(-c - log S_s), u's own c
            a_sum, b_sum = 0.0, 0.0
            for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
                start = chunk * SUM_CHUNK
                a, b = zero, zero
                for step in range(SUM_CHUNK):  # a constant trip count: vectorised
                    j = start + step
                    u = gap(xp, t[j], row[j], mt, mz) * inv_t - c
                    p = student[j] * inv_s
                    pe = g[j] * exp_shift
                    a += expm1(xp, u, p, pe)
                    b += moment(xp, u, p, pe)
                a_sum += float(a)
                b_sum += float(b)
            a, b = zero, zero
            for j in range(full, k):  # the rest
                u = gap(xp, t[j], row[j], mt, mz) * inv_t - c
                p = student[j] * inv_s
                pe = g[j] * exp_shift
                a += expm1(xp, u, p, pe)
                b += moment(xp, u, p, pe)
            a_sum += float(a)
            b_sum += float(b)
            # w = log sum p e^u from the same u as b (the value moves with w's error squared: from the
            # normalisers' logs, rounded apart, it cost 100 eps at KL = 1e-9)
            w = math.log1p(a_sum)
            loss = temperature * temperature * float(finish(xp, dtype(w), dtype(b_sum)))
        else:
            loss = temperature * temperature * first_form
        if not math.isfinite(loss):
            return 0.0, True
        if with_grad and first_form < exact_below:
            # a row near its teacher: p - q = -p expm1(u - w), exact relative to the entry (the rounded
            # probabilities' difference kept eps T / |z - t| of it); u - w with c and w rounded together
            c_w = dtype(float(c) + w)
            shift_w = dtype(float(exp_shift) * math.exp(-w))
            minus_st = dtype(-s * temperature)
            for j in range(k):
                u = gap(xp, t[j], row[j], mt, mz) * inv_t - c_w
                g[j] = minus_st * expm1(xp, u, student[j] * inv_s, g[j] * shift_w)
        elif with_grad:
            # where both rows have their max, p - q = (1 - q) - (1 - p), each from the other terms
            scaled_gap = dtype(s * temperature * (rest_t / total_t - rest_s / total_s))
            scaled_p = dtype(s * temperature / total_s)
            scaled_q = dtype(s * temperature / total_t)
            for j in range(k):
                ds = (row[j] - mz) * inv_t
                dt = (t[j] - mt) * inv_t
                g[j] = student[j] * scaled_p - g[j] * scaled_q if (ds < zero or dt < zero) else scaled_gap
        return s * loss, False

    return row_sweep(row_terms, salt, cacheable)  # grad is never z: it holds the teacher's terms while z is read


@numba.njit(**INLINE)
def _poly_terms(target, g, keep, low, inv_total, total_f, rest_f, t_y, p_big, eps, sw, start, count):
    """The sum of ``y' (1 - p)`` over ``count`` classes from ``start`` (``g`` holds ``exp(z - m)``
    there), in the row's dtype, by a loop that only reads; then Poly-1's gradient there, by a loop
    that only writes."""
    one = g.dtype.type(1)
    missing = g.dtype.type(0)
    for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
        j = start + step
        e = g[j]
        y = keep * target[j] + low
        q = (total_f - e) * inv_total if e < one else rest_f * inv_total  # 1 - p, no cancellation
        missing += y * q
    for step in range(count):
        j = start + step
        p = g[j] * inv_total
        y = keep * target[j] + low
        g[j] = sw * (p * t_y - y - eps * p * (y - p_big))
    return missing


@numba.njit(**OPTIONS)
def poly_rows(z, dense, scale, smoothing, epsilon, tolerance, scaled_loss, grad, with_grad, flags):
    r"""Poly-1 of probability targets: softmax CE plus :math:`\epsilon (1 - P)`, :math:`P = \sum y' p`;
    gradient :math:`p \sum y' - y' - \epsilon\, p (y' - P)`. (Labels take softmax CE's kernels:
    :func:`~losskit.fused.kernels.poly_short_rows`, :func:`~losskit.fused.kernels.softmax_ce_rows`.)

    The exp pass with the target's sums, then one pass for :math:`\sum y' (1 - p_k)` and the gradient;
    ``grad`` is full ``[N, K]``, scratch without a gradient. A row that fails the plan's checks (values
    in [0, 1], a sum within ``tolerance`` of 1), weighted or not, is flagged, as :func:`kl_dense_rows`
    does."""
    n, k = z.shape
    dtype = z.dtype.type
    a = smoothing
    keep, low = dtype(1.0 - a), dtype(a / k)
    for i in prange(n):
        s = scale[i]
        g = grad[i]
        target = dense[i]
        if _probabilities_off(target, tolerance):
            flags[i] = 1
            continue
        if _unweighted(s, g, with_grad, scaled_loss, i):
            continue
        row = z[i]
        m = _flagged_max(row, flags, i)
        if not math.isfinite(m):
            continue
        below, ties, total_y, y_shifted, y_exp, _ = _target_exp_pass(row, target, g, m, keep, low, False)
        rest, total, log_norm = _normaliser(below, ties)
        big_p = y_exp / total
        inv_total = dtype(1.0 / total)
        total_f, rest_f = dtype(total), dtype(rest)
        t_y, p_big = dtype(total_y), dtype(big_p)
        eps = dtype(epsilon)
        sw = dtype(s)
        full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
        missing = 0.0
        for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
            start = chunk * SUM_CHUNK
            missing += float(_poly_terms(target, g, keep, low, inv_total, total_f, rest_f, t_y, p_big, eps, sw,
                                         start, SUM_CHUNK))
        missing += float(_poly_terms(target, g, keep, low, inv_total, total_f, rest_f, t_y, p_big, eps, sw,
                                     full, k - full))
        loss = total_y * log_norm - y_shifted + epsilon * (missing + (1.0 - total_y))
        if not math.isfinite(loss):
            flags[i] = 1
            continue
        scaled_loss[i] = s * loss
        # at the row max, p T - y = (T - y) - q T and y - P = (y - T) + sum y' (1 - p): no
        # difference of two numbers near 1 when the row is sure (a fourth, cheap pass)
        q_max, p_max, missing_f = dtype(rest / total), dtype(1.0 / total), dtype(missing)
        for j in range(k):
            if row[j] == m:
                y = keep * target[j] + low
                g[j] = sw * (((t_y - y) - q_max * t_y) - eps * p_max * ((y - t_y) + missing_f))


@numba.njit(**INLINE)
def _exp_into(row, out, m):
    """``exp(row - m)`` into ``out`` and the row's sums of the terms below the max and of the ties with
    it, in float64: per chunk of :data:`SUM_CHUNK`, a loop that only writes, then one that only reads."""
    k = row.shape[0]
    full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
    below, ties = 0.0, 0.0
    for chunk in range((k + SUM_CHUNK - 1) // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
        start = chunk * SUM_CHUNK
        count = SUM_CHUNK if start < full else k - full
        store_exp(row, out, m, start, count)
        zero, one = row.dtype.type(0), row.dtype.type(1)
        b = zero
        t = zero
        for step in range(count):
            j = start + step
            d = row[j] - m
            b += out[j] if d < zero else zero
            t += one if d >= zero else zero
        below, ties = below + float(b), ties + float(t)
    return below, ties


@numba.njit(**INLINE)
def _focal_terms(row, m, dense, i, by_label, y, alpha, g, w, keep, low, high, inv_total, total_f, rest_f,
                 log_norm_f, g_f, start, count):
    r"""Softmax focal's per-class terms over ``count`` classes from ``start`` (``g`` holds ``exp(z - m)``
    there): by a loop that only writes, ``u`` into ``g`` and :math:`c (1 - p)^\gamma \log p` into the
    chunk's scratch ``w``; then by a loop that only reads, the sums of those, and of ``u`` at the row
    max."""
    zero, one = row.dtype.type(0), row.dtype.type(1)
    for step in range(count):
        j = start + step
        e = g[j]
        c = alpha[j] * ((high if j == y else low) if by_label else keep * dense[i, j] + low)  # alpha y'
        p = e * inv_total
        lp = (row[j] - m) - log_norm_f
        q = (total_f - e) * inv_total if e < one else rest_f * inv_total  # 1 - p, no cancellation
        mod = vpow(q, g_f)
        w[step] = zero if c == zero else c * mod * lp  # 0 * log 0 = 0
        rho = lp / q if q > zero else -one
        p_rho = zero if p == zero else p * rho
        g[j] = c * mod * (g_f * p_rho - one)
    # in float64: a dominant term (a sure label's) would round each float32 addition at its own ulp;
    # the loop is already as wide as float64 (vpow computes in it), so the wider sums cost nothing
    loss_sum = 0.0
    total_u = 0.0
    ties_u = 0.0  # the part of sum u at the row max (p_max U - u_max would cancel for a sure row)
    for step in range(count):  # SUM_CHUNK, a constant: fully vectorised
        j = start + step
        u = g[j]
        loss_sum += float(w[step])
        total_u += float(u)
        ties_u += 0.0 if row[j] < m else float(u)  # at the max: where the gradient pass takes its other branch
    return loss_sum, total_u, ties_u


@numba.njit(**INLINE)
def _focal_row_sums(row, m, dense, i, by_label, y, alpha, g, w, keep, low, high, inv_total, total_f, rest_f,
                    log_norm_f, g_f):
    """:func:`_focal_terms` over the row in chunks of :data:`SUM_CHUNK`, their sums added in float64.
    :func:`focal_rows` inlines it twice, once with ``g_f`` a literal 2: ``vpow``'s cases then fold to
    ``q * q``, where a run-time gamma computes ``exp(gamma log q)`` for every class."""
    k = row.shape[0]
    full = max(0, k - k % SUM_CHUNK)  # max: see kernels.SUM_CHUNK
    loss_sum, total_u, ties_u = 0.0, 0.0, 0.0
    for chunk in range(full // SUM_CHUNK):  # not a range with a step: see kernels.SUM_CHUNK
        start = chunk * SUM_CHUNK
        ls, tu, xu = _focal_terms(row, m, dense, i, by_label, y, alpha, g, w, keep, low, high, inv_total, total_f,
                                  rest_f, log_norm_f, g_f, start, SUM_CHUNK)
        loss_sum, total_u, ties_u = loss_sum + ls, total_u + tu, ties_u + xu
    ls, tu, xu = _focal_terms(row, m, dense, i, by_label, y, alpha, g, w, keep, low, high, inv_total, total_f, rest_f,
                              log_norm_f, g_f, full, k - full)
    return loss_sum + ls, total_u + tu, ties_u + xu


@numba.njit(**OPTIONS)
def focal_rows(z, labels, dense, alpha, scale, smoothing, gamma, tolerance, scaled_loss, grad, scratch, with_grad,
               flags):
    r"""Softmax focal loss :math:`-\sum_k c_k (1 - p_k)^\gamma \log p_k`, :math:`c = \alpha y'`; gradient
    :math:`u - p \sum u`, :math:`u_k = c_k (1 - p_k)^\gamma (\gamma p_k \rho_k - 1)`,
    :math:`\rho = \log p / (1 - p)` (-1 in the limit :math:`p \to 1`). ``alpha [K]``.

    Dense targets, or labels with smoothing (labels without take softmax CE's kernels and the label's
    term alone: :func:`~losskit.fused.kernels.focal_short_rows`,
    :func:`~losskit.fused.kernels.softmax_ce_rows`); ``grad`` full ``[N, K]``, scratch without a
    gradient: the max; ``exp`` into ``grad`` with the softmax's sums; per chunk, ``u`` into ``grad`` and
    the loss's terms into ``scratch [N, min(K, SUM_CHUNK)]``, then their sums (:func:`_focal_terms`); the
    gradient, the softmax taken again. A row of dense targets that fails the plan's checks (values in
    [0, 1], a sum within ``tolerance`` of 1), weighted or not, is flagged."""
    n, k = z.shape
    dtype = z.dtype.type
    zero = dtype(0)
    a = smoothing
    by_label = dense.shape[0] == 0
    keep, low, high = dtype(1.0 - a), dtype(a / k), dtype(1.0 - a + a / k)
    g_f = dtype(gamma)
    for i in prange(n):
        s = scale[i]
        g = grad[i]
        if not by_label and _probabilities_off(dense[i], tolerance):
            flags[i] = 1
            continue
        if _unweighted(s, g, with_grad, scaled_loss, i):
            continue
        row = z[i]
        m = _flagged_max(row, flags, i)
        if not math.isfinite(m):
            continue
        y = labels[i] if by_label else 0
        if y < 0 or y >= k:
            flags[i] = 1
            continue
        below, ties = _exp_into(row, g, m)
        rest, total, log_norm = _normaliser(below, ties)
        inv_total = dtype(1.0 / total)
        total_f, rest_f = dtype(total), dtype(rest)
        log_norm_f = dtype(log_norm)
        if gamma == 2.0:  # the common gamma as a literal: (1 - p)^2 folds to a product (see _focal_row_sums)
            loss_sum, total_u, ties_u = _focal_row_sums(row, m, dense, i, by_label, y, alpha, g, scratch[i], keep, low,
                                                        high, inv_total, total_f, rest_f, log_norm_f, dtype(2.0))
        else:
            loss_sum, total_u, ties_u = _focal_row_sums(row, m, dense, i, by_label, y, alpha, g, scratch[i], keep, low,
                                                        high, inv_total, total_f, rest_f, log_norm_f, g_f)
        loss = -loss_sum
        if not math.isfinite(loss) or not math.isfinite(total_u):
            flags[i] = 1
            continue
        scaled_loss[i] = s * loss
        if with_grad:
            sw, scaled_u = dtype(s), dtype(s * total_u / total)
            below_u, ties_f = dtype(total_u - ties_u), dtype(ties_u)
            q_max, p_max = dtype(rest / total), dtype(1.0 / total)
            for j in range(k):
                d = row[j] - m
                u = g[j]
                # at the max: u - p U = u q - p (U - u), with U - u from the other terms
                g[j] = sw * u - vexp(d) * scaled_u if d < zero else sw * (u * q_max - p_max * (below_u + (ties_f - u)))


@numba.njit(**OPTIONS)
def crammer_singer_rows(z, labels, scale, scaled_loss, grad, with_grad, flags):
    r"""Crammer-Singer :math:`\max_k (z_k + 1 - [k = y]) - z_y`, in the logits' dtype as the
    reference; gradient :math:`e_{k^*} - e_y` with :math:`k^*` the first maximiser. Passes: the
    max of the shifted scores (an integer max over the other logits' bits, :func:`row_max_but`); the
    first index that reaches it (a min over indices); the gradient row (zeros and two entries). A row
    whose loss is not finite is flagged."""
    n, k = z.shape
    dtype = z.dtype.type
    zero, one = dtype(0), dtype(1)
    for i in prange(n):
        s = scale[i]
        g = grad[i if with_grad else i - i]
        if _unweighted(s, g, with_grad, scaled_loss, i):
            continue
        row = z[i]
        y = labels[i]
        if y < 0 or y >= k:
            flags[i] = 1
            continue
        z_y = row[y]
        m = row_max_but(row, y) + one  # the other shifted scores' max: rounding a + 1 keeps the order
        m = z_y if z_y > m else m  # (not max(): a NaN m, from a NaN logit, must stay NaN and flag the row)
        loss = float(m - z_y)
        top = k
        for j in range(k):  # the first maximiser as a min over indices: SIMD code, where a search stops
            top = min(top, j if (row[j] + one if j != y else z_y) == m else k)  # scalar at the first hit
        if top == k or not math.isfinite(loss):
            flags[i] = 1
            continue
        scaled_loss[i] = s * loss
        if with_grad:
            for j in range(k):
                g[j] = zero
            sw = dtype(s)
            g[top] += sw
            g[y] -= sw
