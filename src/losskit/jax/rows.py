"""The row sweeps of ``losskit.jax``'s XLA formulation: softmax CE, Poly-1 and softmax focal (no
smoothing) with integer labels, KL divergence with probability targets, distillation, the
Crammer-Singer hinge. Each computes a row's value and its gradient from its row sums (the hinge:
its max and first maximiser, :func:`crammer_singer`), plus one elementwise pass for the gradient.
Softmax CE and Poly-1 take one plain sum, of the exps with the label's left out
(:func:`softmax_ce`); KL's sums that take an exp or a log are plain sums too
(:func:`kl_divergence`), YNNPACK computes them whole; the other sums are one variadic row reduction
(:func:`_row_sums`). The arithmetic is that of the compiled rows (:mod:`losskit.fused.kernels`,
:mod:`losskit.fused.rows`): the normaliser as ``log1p`` of the terms other than one at the row max,
the missing probability at the max from the other terms.

Design note: XLA's CPU backend writes every operand of a sum it hands to YNNPACK to memory, and
computes separate sums as separate passes; the reference's text (a log-softmax, then a second
``exp`` for the gradient, and KL's entropy as a third sum) costs four to six passes over the
``[N, K]`` logits and target, optax's three to four. A plain sum of an array that is written anyway
(softmax CE's exps, which the gradient pass reads) or of a few vectorised operations on the inputs
is YNNPACK's fastest pass; a variadic reduce is XLA's own loop, fused with the terms' producers (one
read of the logits and target for all of a row's sums) but calling exp and log one element at a
time, and 3-4x slower than a plain sum even without them. A row whose max is +-inf or NaN: softmax
CE and Poly-1 shift it as the reference does (:func:`shifted`) and give its exact limits themselves,
as the hinge's arithmetic, the reference's, does; KL, distillation and softmax focal never see one
(``lax.cond`` in :mod:`losskit.jax`: the reference's exact limits).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _array, _checks
from ..losses._shared import EXACT_GRADIENT_BELOW, centred_kl, centred_kl_terms, log_one_plus, logit_gap
from ..losses.focal import _alpha as _focal_alpha
from ..losses.formula import ArrayMath

#: the length of the blocks a row is summed in (see :func:`_row_sums`)
_BLOCK = 128


def _add(x, y):
    return tuple(u + v for u, v in zip(x, y, strict=True))


def _two_sum(a, b):
    """``a + b`` and its rounding error, exactly (Knuth's TwoSum: no condition on the magnitudes)."""
    s = a + b
    b_part = s - a
    return s, (a - (s - b_part)) + (b - b_part)


def _compensated_sums(terms):
    """Sums over the last axis, each carried with its rounding error (a TwoSum per addition, in any
    order XLA takes): the result is within an eps or so of the exact sum, whatever the length."""
    m = len(terms)

    def combine(x, y):
        pairs = [_two_sum(x[i], y[i]) for i in range(m)]
        return tuple(s for s, _ in pairs) + tuple(x[m + i] + y[m + i] + e for i, (_, e) in enumerate(pairs))

    operands = (*terms, *(jnp.zeros_like(t) for t in terms))
    sums = jax.lax.reduce(operands, tuple(jnp.zeros((), t.dtype) for t in operands), combine, (terms[0].ndim - 1,))
    return tuple(sums[i] + sums[m + i] for i in range(m))


@jax.custom_jvp
def _row_sums(*terms):
    """Sums over the last axis of several same-shaped terms in one variadic reduction: one pass that
    XLA fuses with the terms' producers (separate sums would each recompute them).

    XLA's CPU loop adds a row into a few vector lanes one term after another, so a float32 row of
    32000 came out 60-100 eps off (float64 reference; YNNPACK's ``jnp.sum``, 1 eps). The row is
    summed in blocks of at most :data:`_BLOCK` (zeros pad the last, fewer than one per block), and the
    blocks' sums added with their rounding errors (:func:`_compensated_sums`, on 1/128 of the data):
    0.7 eps there, at the plain loop's speed (measured at 512 x 32000 and 512 x 50257)."""
    k = terms[0].shape[-1]
    blocks = -(-k // _BLOCK)
    width = -(-k // blocks)
    pad = blocks * width - k
    if pad:
        terms = tuple(jnp.pad(t, [(0, 0)] * (t.ndim - 1) + [(0, pad)]) for t in terms)
    shaped = tuple(t.reshape((*t.shape[:-1], blocks, width)) for t in terms)
    partial = jax.lax.reduce(shaped, tuple(jnp.zeros((), t.dtype) for t in shaped), _add, (shaped[0].ndim - 1,))
    return _compensated_sums(partial)


@_row_sums.defjvp
def _row_sums_jvp(primals, tangents):
    # a sum is linear: its tangent is the sum of the tangents, written with jnp.sum so that reverse
    # mode (second derivatives through the forward rule) can transpose it
    return _row_sums(*primals), tuple(jnp.sum(t, axis=-1) for t in tangents)


#: the shift of the terms far below a row's max, by working dtype: a power of two, so that
#: d + shift is exact for every d <= -shift (a multiple of ulp(d), no larger than |d|), and small
#: enough that exp(d + shift) is normal where exp(d) would be subnormal (float32 below -87.3,
#: float64 below -708.4)
_FAR_SHIFT = {np.dtype(np.float32): 64.0, np.dtype(np.float64): 512.0}


def shifted(z, row_max):
    """``z - max`` per row, with the reference's limits where the max is +-inf
    (:func:`losskit.activations.shifted_logits_xp`): a +inf max leaves its +inf entries 0 and the rest
    -inf (they share all the mass), a -inf max all 0 (the uniform limit); a NaN max (a NaN in the row)
    makes the row NaN, so its loss and gradient are NaN. The sweep's own arithmetic on it then gives
    the reference's value and gradient in those rows, without a branch: selects in the passes that
    read the logits anyway."""
    m = row_max[..., None]
    infinite = jnp.asarray(jnp.inf, z.dtype)
    limit = jnp.where((m == infinite) & (z != infinite), -infinite, jnp.zeros((), z.dtype))
    return jnp.where(jnp.isinf(m), limit, z - m)


def softmax_ce(plan, maxima, epsilon=0.0):
    r"""Softmax CE of integer labels, value and gradient in one row sweep; with ``epsilon``, Poly-1
    (:class:`~losskit.PolyCrossEntropy`): the CE plus :math:`\epsilon (1 - \sum_k y'_k p_k)`.

    With integer labels :math:`y' = (1 - a)\,\mathrm{onehot}(y) + a / K`, so
    :math:`1 - \sum y' p = (1 - a)(1 - p_y) + a (1 - 1/K)` and the Poly term's gradient
    :math:`-\epsilon\, p_j (y'_j - P)` is :math:`-\epsilon (1 - a)\, p_j ([j = y] - p_y)`: both from
    ``1 - p_y``. The row's one sum is that of the terms other than the label's, ``R = sum_{k != y}
    e^(z_k - max)``: ``1 - p_y = R / (R + e_y)`` and ``log sum e^(z - max) = log1p(R - (1 - e_y))``,
    where ``1 - e_y`` is exactly 0 when the label is the max, so a sure row keeps its tiny loss.

    The exps with the label's left out are one array, written once (XLA puts it in the gradient's
    buffer), that a plain ``jnp.sum`` (YNNPACK: vectorised, nothing written) and the gradient pass
    read: optax's passes. A variadic row reduction of the terms below the max and of the ties (XLA's
    own loop) took 3-5x that sum's time, and a ``jnp.sum`` of select-free terms (a 0/1 step of
    products and a min) 2-4x it: YNNPACK runs each elementwise operation as a pass over a tile
    (issue 15, BENCHMARKS.md). The reference's text (a log-softmax and a second exp) ran at
    0.70-0.78x optax's speed."""
    (row_max,) = maxima
    labels = plan.target.labels
    z, a = plan.input, plan.smoothing
    k = z.shape[-1]
    d, others, rest, d_y, e_y = _label_terms(z, labels, row_max)
    # lse - z_y = log1p(R - (1 - e_y)) - (z_y - max): R alone where the label is the max. Elsewhere R
    # holds the max's 1 and the loss is at least -d_y, so the subtraction's eps is an eps of the loss
    loss = jnp.log1p(rest - (1 - e_y)) - (1 - a) * d_y
    if a:  # a (lse - mean z), with mean z - max from whichever sum is finite; a +inf row's first is
        # -inf (its other classes have probability 0), the loss +inf as the reference's: XLA's own loop
        sums = _row_sums(d, z / k)
        shifted_mean = jnp.where(jnp.isfinite(sums[0]) | (row_max == jnp.inf), sums[0] / k, sums[1] - row_max)
        loss = loss - a * shifted_mean
    total = rest + e_y
    missing = rest / total  # 1 - p_y from the other terms: exact when p_y rounds to 1
    # per class: p_k (times 1 + g p_y with Poly's g) and, at the label, p_y - 1 = -(1 - p_y)
    gain = 1.0
    if epsilon:
        g = epsilon * (1 - a)
        loss = loss + (g * missing + epsilon * a * (1 - 1 / k))
        gain = 1 + g * (e_y / total)
    grad = jnp.where(_one_hot(labels, z), a * (1 - 1 / k) - (missing * gain)[..., None],
                     others * (gain / total)[..., None] - a / k)
    return loss, grad


def softmax_focal(plan, maxima, loss):
    r"""Softmax focal loss of integer labels without smoothing, value and gradient in one row sweep
    (softmax CE's: :func:`softmax_ce`). With a one-hot target the loss is
    :math:`l = a_y q^\gamma \mathrm{CE}` with :math:`q = 1 - p_y` and :math:`\mathrm{CE} = -\log p_y`,
    and the gradient :math:`u (\mathrm{onehot} - p)` with
    :math:`u = -a_y q^\gamma (1 + \gamma p_y \mathrm{CE} / q)` (the reference's
    :math:`u_j - p_j \sum_k u_k`, whose ``u`` is 0 off the label). ``q = R / (R + e_y)`` from the
    terms other than the label's, exact when ``p_y`` rounds to 1, and ``CE / q -> 1`` there. The
    reference's text (a log-softmax, ``expm1``, a power and three row sums per class) ran at 0.17-0.26x
    JAX jit's speed (issue 15)."""
    (row_max,) = maxima
    labels = plan.target.labels
    z, gamma = plan.input, loss.gamma
    _, others, rest, d_y, e_y = _label_terms(z, labels, row_max)
    ce = jnp.log1p(rest - (1 - e_y)) - d_y  # -log p_y, as softmax CE's
    total = rest + e_y
    q = rest / total  # 1 - p_y from the other terms
    alpha = _focal_alpha(jnp, loss.alpha, z)  # checked as the reference checks it
    a_y = alpha if isinstance(alpha, float | int) else jnp.take(alpha, labels, mode="clip")
    mod = q ** gamma if gamma else jnp.ones_like(q)
    ratio = jnp.where(q > 0, ce / jnp.where(q > 0, q, jnp.ones_like(q)), jnp.ones_like(q))  # -> 1 as q -> 0
    # gamma p_y CE / q -> 0 where p_y = 0 (a label logit of -inf below a finite max: CE = +inf)
    focus = jnp.where(e_y > 0, gamma * (e_y / total) * ratio, jnp.zeros_like(ratio))
    u = -(a_y * mod) * (1 + focus)
    grad = jnp.where(_one_hot(labels, z), (u * q)[..., None], others * (-u / total)[..., None])
    return a_y * mod * ce, grad


def _label_terms(z, labels, row_max):
    """What the integer-label sweeps read of a row: ``d = z - max`` (:func:`shifted`), the exps with
    the label's set to 0, their sum ``R`` (the terms other than the label's), ``d_y`` and ``e^(d_y)``."""
    d = shifted(z, row_max)
    # the label's term set to 0 by a scatter into the exps' buffer (N writes, in place), not a select in
    # their pass (which cost that pass about 10%); labels are in range: an ignored one is 0, weighted 0
    others = jnp.exp(d).at[(*jnp.indices(labels.shape, sparse=True), labels)].set(jnp.zeros((), z.dtype))
    rest = _below_with_subnormals(z, row_max, jnp.sum(others, axis=-1))
    # the label's logit by a gather (N reads), not a masked sum over the row
    d_y = shifted(jnp.take_along_axis(z, labels[..., None], axis=-1, mode="clip"), row_max)[..., 0]
    e_y = jnp.exp(d_y)  # flushed to 0 only where 1 - e_y is 1 anyway
    return d, others, rest, d_y, e_y


def _one_hot(labels, z):
    # class indices fit int32. NumPy labels (an eager call on NumPy arrays) come as int64, which JAX without x64
    # lacks: an iota of their dtype, or comparing them with one, made JAX warn at every call
    if isinstance(labels, np.ndarray):
        labels = labels.astype(np.int32)
    return labels[..., None] == jax.lax.broadcasted_iota(jnp.int32, z.shape, z.ndim - 1)


def _below_with_subnormals(z, row_max, below):
    """A row's sum of the terms below its max, ``sum_{d_k < 0} e^(d_k)``, with the terms XLA flushed to
    zero put back in the rows where they can matter. ``below`` may be any sum that equals it in those
    rows (softmax CE's terms other than the label's: a row whose sum is that small has its label at
    its one max).

    XLA's CPU backend flushes subnormals to zero, so e^d of a term far below the max (float32:
    d < -87.3) is lost, and with it the whole loss of a sure row: [88, 0, 0] has loss
    2 e^-88 = 1.2e-38, a normal number made of two subnormal terms. When some row's terms below its
    max sum to so little that K such terms could matter, those rows are summed again, the far terms
    as e^(d + shift), exact in the argument, scaled back once per row. The common call pays one
    comparison per row (``lax.cond``: only the branch taken runs; it takes the logits, already in
    memory, rather than z - max, which XLA would then write out for every call)."""
    info = jnp.finfo(z.dtype)
    small = below < z.shape[-1] * float(info.tiny) / float(info.eps)
    shift = _FAR_SHIFT[np.dtype(z.dtype)]

    def resum():
        d = shifted(z, row_max)
        far = d <= -shift
        e = jnp.exp(jnp.where(far, d + shift, d))
        zero = jnp.zeros((), d.dtype)
        near, far_sum = _row_sums(jnp.where((d < 0) & ~far, e, zero), jnp.where(far, e, zero))
        return jnp.where(small, near + far_sum * jnp.asarray(np.exp(-shift), d.dtype), below)

    return jax.lax.cond(jnp.any(small), resum, lambda: below)


def kl_divergence(plan, maxima, loss, entropy=True):
    r"""KL divergence of probability targets (:func:`~losskit.fused.rows.kl_dense_rows`' arithmetic):
    :math:`l = \sum y' \log y' + \log\sum e^{z} \sum y' - \sum y' z`, gradient :math:`p \sum y' - y'`;
    without ``entropy`` (no first term) the softmax CE of probability targets.
    XLA's form of the loss's formula (not a second meaning: the options come from the plan and the
    loss's own ``_dense_target``): the reference's text costs five passes over ``[N, K]`` here, and
    was 0.56-0.61x optax's speed (BENCHMARKS.md, issue 15).

    :math:`\sum y' \log y' + T \log S - \sum y' (z - \max)` with ``S = sum e^(z - max)``. The two sums
    that take a transcendental function per class (``S`` and the target's entropy) are plain sums that
    XLA hands to YNNPACK whole (exp, log and the sum vectorised, nothing written); a variadic XLA
    reduction, whose loop calls exp and log one element at a time (6x slower, measured), keeps the
    two that take none. The gradient pass computes the exp again rather than read it from memory:
    a [N, K] buffer written and read back cost more than the exp (on CPU). A row sure of its class
    (``S`` below :data:`_SPREAD`) takes its terms below the max from a sum of their own
    (:func:`_rest_below_max`), row by row: its tiny loss survives (``[88, 0, 0]``: 1.2e-38), and a
    batch with a few such rows pays one more plain sum, not the whole batch a slower sweep."""
    (row_max,) = maxima
    z = plan.input
    y = loss._dense_target(jnp, z, plan.target.dense, None)  # the smoothed target y', the loss's own rule
    tiny = jnp.asarray(jnp.finfo(z.dtype).tiny, z.dtype)
    zero = jnp.zeros((), z.dtype)
    d = z - row_max[..., None]
    # a plain sum, which XLA hands to YNNPACK with the exp: one read of z, vectorised, nothing written.
    # z + (-max), not d: the same numbers, but not the expression the sums and the gradient below
    # take, which XLA would merge with it and then write out as a [N, K] operand of YNNPACK's sum
    normaliser = jnp.sum(jnp.exp(z + (-row_max)[..., None]), axis=-1)
    # 0 log 0 = 0 without a select (which YNNPACK does not take): y' = 0 reads log(tiny), finite;
    # max(y', -0.0) keeps a negative y' out of it as the reference's where does (-0.0, not 0: XLA
    # shares a broadcast 0 with the where below and then writes it out as a full [N, K] operand)
    neg_entropy = jnp.sum(jnp.maximum(y, jnp.asarray(-0.0, z.dtype)) * jnp.log(jnp.maximum(y, tiny)), axis=-1) \
        if entropy else zero
    # sum y' is plain arithmetic: a plain sum (YNNPACK, exact to an eps). sum y' d holds a select, which YNNPACK
    # does not take: the blocked variadic sum (XLA's own loop is 60-100 eps off on a row of 32000). One term
    # in it, not both: softmax CE of probabilities 491 -> 381 ms at 4096 x 32000 float32 (optax: 442)
    total_y = jnp.sum(y, axis=-1)
    (y_shifted,) = _row_sums(jnp.where(y != 0, y * d, zero))  # 0 where y' is 0, even for d = -inf
    sure, rest = _rest_below_max(z, row_max, normaliser)
    # log S = log1p(terms below the max) where S rounded with its 1 would lose them; +inf where the
    # target gives mass to a class of logit -inf (y' d = -inf), as the reference
    log_norm = jnp.where(sure, jnp.log1p(rest), jnp.log(normaliser))
    loss_value = neg_entropy + total_y * log_norm - y_shifted
    total, t = (1 + rest)[..., None], total_y[..., None]
    e = jnp.exp(d)
    # at the max p T - y = (T - y) - q T, q = rest / total from the other terms: exact for a sure
    # row's one-hot target (p T - y would subtract two numbers that round to T)
    # (e < 1, not d < 0: the pass then reads e and y alone, not the logits a third time; where e rounds
    # to 1 both forms are t / total - y)
    grad = jnp.where(e < 1, e * (t / total) - y, (t - y) - (rest[..., None] / total) * t)
    return loss_value, grad


#: the least row normaliser whose terms below the max :func:`kl_divergence` takes as ``S - 1``: log of
#: a larger one is at least log 1.5 = 0.41, so the normaliser's rounding (an eps) is an eps or so of
#: its log, and ``S - 1`` loses at most a bit
_SPREAD = 1.5

#: a power of two that takes every negative normal ``d`` of the dtype to at least 2 (and ``-d`` times
#: it to +inf for a large ``|d|``): ``min(-d * _STEP, 1)`` is then 1 for ``d < 0`` and 0 for ``d = 0``
_STEP = {np.dtype(np.float32): 2.0 ** 127, np.dtype(np.float64): 2.0 ** 1023}


def _rest_below_max(z, row_max, normaliser):
    """``(sure, rest)``: the rows whose normaliser ``S`` is below :data:`_SPREAD`, and ``S - 1`` per row,
    summed apart for those rows.

    A sure row has one max (``S`` counts each tie as 1), so its rest is the sum of the terms below the
    max, ``sum e^d min(-d * step, 1)``: a step made of a product and a min, which YNNPACK takes with
    the exp and the sum (a compare or a select it does not: XLA's own loop would call exp one element
    at a time). That sum runs only when some row is sure (``lax.cond`` on the logits, already in
    memory), and the terms XLA flushed to zero are put back as in softmax CE
    (:func:`_below_with_subnormals`)."""
    sure = normaliser < _SPREAD
    spread_rest = normaliser - 1  # exact to a bit or so where S >= 1.5

    def apart():
        d = z - row_max[..., None]
        # (a step: its derivative is 0, and the product's rule would scale a cotangent by 2^127)
        step = jax.lax.stop_gradient(jnp.minimum(-d * jnp.asarray(_STEP[np.dtype(z.dtype)], z.dtype),
                                                 jnp.asarray(1, z.dtype)))
        return jnp.where(sure, jnp.sum(jnp.exp(d) * step, axis=-1), spread_rest)

    rest = jax.lax.cond(jnp.any(sure), apart, lambda: spread_rest)
    # a sure row has one max, so its rest is the sum of its terms below it
    return sure, jnp.where(sure, _below_with_subnormals(z, row_max, rest), rest)


def distillation(plan, maxima, loss, with_grad=True):  # (its gradient comes scaled: Sweep.scales_itself)
    r"""Distillation :math:`T^2 \sum q (\log q - \log p)` (:func:`~losskit.fused.rows.distillation_kernel`'s
    arithmetic), :math:`p = \mathrm{softmax}(z / T)`, :math:`q = \mathrm{softmax}(t / T)`, gradient
    :math:`T (p - q)`: one variadic sweep for both normalisers and :math:`\sum e^{d_t} (d_t - d_s)` (whose
    mean over the teacher is the centre ``c``), one pass for the gradient; neither writes a log-softmax.
    XLA's form of the loss's formula: the reference's two log-softmaxes and second ``exp`` ran at
    0.55-0.74x optax's speed (issue 15). A batch holding a near row (a first form below 1, as the compiled
    rows decide) takes a second sweep over blocks of rows (:func:`_row_sums_in_blocks`), the centred sums
    of :func:`~losskit.losses.distribution.centred_distillation_kl`, for those rows' value and, ``with_grad``,
    their gradient ``-T p expm1(u - w)`` (a pass of its own)."""
    z_max, t_max = maxima
    temperature = loss.temperature
    z, teacher = plan.input, plan.target.dense
    inv_t = 1.0 / temperature
    ds = (z - z_max[..., None]) * inv_t
    dt = (teacher - t_max[..., None]) * inv_t
    es, et = jnp.exp(ds), jnp.exp(dt)
    zero = jnp.zeros((), z.dtype)
    math_ = ArrayMath(jnp, z)
    sums = _row_sums(jnp.where(ds < 0, es, zero), (ds >= 0).astype(z.dtype),
                     jnp.where(dt < 0, et, zero), (dt >= 0).astype(z.dtype),
                     # q_k = 0 (a teacher logit of -inf, or below the dtype) costs 0, not 0 * (-inf - ds)
                     jnp.where(et > 0, et * (dt - ds), zero))
    rest_s, rest_t = sums[0] + (sums[1] - 1), sums[2] + (sums[3] - 1)
    total_s, total_t = 1 + rest_s, 1 + rest_t
    log_s, log_t = jnp.log1p(rest_s), jnp.log1p(rest_t)
    # sum q (log q - log p) = sum q (dt - ds) + log1p(rest_s) - log1p(rest_t), as sum q = 1: one sweep.
    # Between near rows its two normalisers cancel: those take the centred sums (below)
    centre = sums[4] / total_t  # the teacher's mean of dt - ds
    first_form = centre + (log_s - log_t)
    loss_value = (temperature * temperature) * first_form
    near = first_form < 1.0

    # a row whose value is below this takes w's own sum, not w = -(first form) (its error counts squared:
    # about eps (1 + log K) in the normalisers' logs), and a batch holding one sums it in the sweep
    tiny = first_form < 8 * float(jnp.finfo(z.dtype).eps) * (1 + math.log(z.shape[-1])) ** 2

    # where both rows have their max, p - q = (1 - q) - (1 - p), each from the other terms, where p is
    # above 1/2 (1 - p then the smaller, exact from the other terms); below, 1 / total_s - 1 / total_t,
    # as the other classes' entries: in the working dtype (the compiled rows take the first in float64)
    # the first cancels two numbers near 1 (2000 eps of float32 at rows of 32000 near one another)
    gap = temperature * jnp.where(total_s < 2, rest_t / total_t - rest_s / total_s, 1 / total_s - 1 / total_t)
    gap = gap[..., None]

    def far_grad():  # (exp < 1, not d < 0: the pass reads the two exps alone, as the compiled rows' es < 1 reads)
        return scaled_grad(plan, jnp.where((es < 1) | (et < 1),
                                           temperature * (es / total_s[..., None] - et / total_t[..., None]), gap))

    # e^-c / S_s: 1 / S_s times e^(q's mean of ds - dt), which a near row keeps below e^(1 + log K); clipped
    # (only far rows reach the clip, and their value is the first form's)
    shift = jnp.exp(jnp.minimum(-centre, 60.0)) / total_s

    def centred_sums(with_w):  # losskit.losses.distribution.centred_distillation_kl's sums: a second sweep
        def summands(z, teacher, z_max, t_max, c, inv_s, shift):  # c: the centre, a block's
            support = teacher > -jnp.inf  # a class the teacher rules out: e^u = 0
            u = jnp.where(support, logit_gap(math_, teacher, z, t_max, z_max) * inv_t - c, 0.0)
            # p = e^ds / S_s and p e^u = e^dt (e^-c / S_s): a row's factor rounded once, not log S_s
            # rounded into every exponent (float32: log S_s of a row of 32000 is 8 eps off, each p with it)
            p = jnp.exp((z - z_max) * inv_t) * inv_s
            terms = centred_kl_terms(math_, u, p, jnp.exp((teacher - t_max) * inv_t) * shift, support)
            return terms if with_w else terms[1:]  # (XLA drops the first term's work when it is not summed)

        per_row = (v[..., None] for v in (z_max, t_max, centre, 1 / total_s, shift))
        return _row_sums_in_blocks(summands, z, teacher, *per_row)

    def centred(with_w):
        sums_ = centred_sums(with_w)
        # w = log sum p e^u: the first form's -KL, or in a batch with a tiny value, summed from b's own u
        # (XLA computes each sum's terms anew: the second sum costs as much as the first)
        w = jnp.where(tiny, jnp.log1p(sums_[0]), -first_form) if with_w else -first_form
        w = jnp.where(near, w, 0.0)
        b = jnp.where(near, sums_[-1], 0.0)
        return jnp.where(near, (temperature * temperature) * centred_kl(math_, w, b), loss_value)

    # only a batch holding a near row pays for the second sweep, and one holding a tiny value for its w
    first_only = lambda: loss_value  # noqa: E731 - a branch of the conds below
    loss_value = jax.lax.cond(jnp.any(near & tiny), functools.partial(centred, True), lambda: jax.lax.cond(
        jnp.any(near), functools.partial(centred, False), first_only))
    if not with_grad:
        return loss_value, far_grad()
    close = near & (first_form < EXACT_GRADIENT_BELOW)

    def exact_grad():
        # a row close to its teacher (_shared.EXACT_GRADIENT_BELOW): p - q = -p expm1(u - w), exact relative to
        # the entry (the rounded probabilities' difference kept eps T / |z - t| of it: up to 3,661 eps at T = 100,
        # 0 in float32 at T = 1e10: benchmarks.distillation_accuracy). w from its own sum: the first form's -KL
        # is eps (1 + log K) off, which p (u - w) keeps; XLA's float64 log1p is 120 eps off near a = -0.39, which a
        # near row reaches: log_one_plus
        w = log_one_plus(math_, jnp.where(close, centred_sums(True)[0], 0.0))
        c_w, shift_w = (centre + w)[..., None], (shift * jnp.exp(-w))[..., None]
        support = teacher > -jnp.inf
        u = jnp.where(support, logit_gap(math_, teacher, z, t_max[..., None], z_max[..., None]) * inv_t - c_w, 0.0)
        exact = -centred_kl_terms(math_, u, es * (1 / total_s)[..., None], et * shift_w, support)[0]
        return jnp.where(close[..., None], scaled_grad(plan, temperature * exact), far_grad())

    # a cond of its own, outside the value's: a batch without such a row writes the plain gradient (as an operand
    # of the value's cond it was a buffer of its own: 1.5x the call on teachers far from the student). The cond's
    # [N, K] output still costs 1.10-1.12x the call where no row takes the exact form (benchmarks.distillation_rows;
    # the branches taking the exps anew, not as operands, 1.4x; a cond returning the plain gradient as its
    # operand, the same 1.1x)
    return loss_value, jax.lax.cond(jnp.any(close), exact_grad, far_grad)


#: the elements of a block of rows in :func:`_row_sums_in_blocks` (8 MiB of float32)
_BLOCK_ELEMENTS = 1 << 21


def _row_sums_in_blocks(summands, *arrays):
    """The sums over the last axis of each of ``summands(*arrays)`` (a tuple of arrays ``[..., K]``),
    ``arrays`` of shape ``[..., K]`` or ``[..., 1]`` (a value per row), over blocks of whole rows of about
    :data:`_BLOCK_ELEMENTS` (``lax.map``: a block's summands are written to buffers that every block
    reuses).

    XLA's CPU backend writes a sum's operand to memory when it holds a select (YNNPACK takes only the
    plain sum), so over the whole array a summand costs a fresh ``[N, K]`` buffer, whose page faults are
    most of the time (``python -m benchmarks.xla_passes``, BENCHMARKS.md: "sum of a select", whole and in
    blocks). The block is the largest divisor of the row count within the bound, so that no row is
    padded or sliced apart; with none above a quarter of the bound (a prime count of rows), the sums are
    taken over the whole array."""
    shape = arrays[0].shape[:-1]
    rows = math.prod(shape)
    limit = max(1, _BLOCK_ELEMENTS // max(arrays[0].shape[-1], 1))
    block = next(b for b in range(min(limit, rows), 0, -1) if rows % b == 0) if rows else 1
    if block >= rows or block < limit // 4:  # (blocks of a few rows would cost a loop step each)
        return tuple(jnp.sum(s, axis=-1) for s in summands(*arrays))
    blocks = tuple(a.reshape(rows // block, block, a.shape[-1]) for a in arrays)
    sums = jax.lax.map(lambda parts: tuple(jnp.sum(s, axis=-1) for s in summands(*parts)), blocks)
    return tuple(s.reshape(shape) for s in sums)


def _margins(plan):
    """The Crammer-Singer margins ``z_k + 1`` off the label, ``z_y`` at it (the row max of which the
    caller takes)."""
    z = plan.input
    return (jnp.where(_one_hot(plan.target.labels, z), z, z + 1),)


def crammer_singer(plan, maxima):
    r"""Crammer-Singer :math:`\max_k (z_k + 1 - [k = y]) - z_y`, gradient :math:`e_{k^*} - e_y` with
    :math:`k^*` the first maximiser (the reference's ``argmax``), found as the least index at which the
    margins equal their max, or are NaN (``argmax`` takes the first NaN): a plain min-reduction that XLA
    fuses with the compare, where ``argmax`` is a variadic reduce of (value, index) pairs in XLA's own
    scalar loop (0.61-0.93x optax's autodiff of the max, whose backward is the same compare; this form
    1.3-1.4x, interleaved in one process at 256 x 32000: BENCHMARKS.md). The reference's own
    arithmetic, so a row whose max is +-inf or NaN gets its limits here (the first +inf, index 0 of an
    all -inf row, the first NaN)."""
    z, labels = plan.input, plan.target.labels
    (margins,), (top,) = _margins(plan), maxima
    classes = jax.lax.broadcasted_iota(labels.dtype, z.shape, z.ndim - 1)
    first = jnp.min(jnp.where((margins == top[..., None]) | jnp.isnan(margins), classes, z.shape[-1]), axis=-1)
    grad = (classes == first[..., None]).astype(z.dtype) - _one_hot(labels, z).astype(z.dtype)
    z_y = _array.take_class(jnp, z, labels)
    return jnp.where(z_y == jnp.inf, jnp.zeros_like(z_y), top - z_y), grad  # +inf at the label: 0 (the reference's)


def scaled_grad(plan, grad):
    """The gradient of the per-example losses times the plan's scale (0 where a weight is 0, whatever the
    gradient: a row of weight 0 costs nothing)."""
    scale = plan.scale[..., None] if plan.spans_last_axis and plan.scale.ndim else plan.scale
    return jnp.where(scale == 0, 0, scale * grad) if plan.weight is not None else scale * grad


class Sweep(NamedTuple):
    """A row sweep: ``rows(plan)``, the arrays whose row maxima it takes (the softmax sweeps shift by
    them; the hinge's are its margins), and ``run(plan, maxima)
    -> (per-row loss, gradient)``. ``limits``: whether ``run`` gives the reference's exact limits in a
    row whose max is +-inf or NaN itself (:func:`shifted`); if not, such a batch takes the reference."""

    rows: object
    run: object
    limits: bool = False
    #: whether ``run`` returns the gradient times the plan's scale itself (inside a cond of its own, where the
    #: product is written with the gradient: after it, a pass of its own over the [N, K] output)
    scales_itself: bool = False


def _logits(plan):
    return (plan.input,)


def checked_plan(loss, plan):
    """``plan``, the probability target of a sweep that reads one checked as the reference checks it, here
    where an eager call's arrays are concrete (the sweep runs traced, inside a cond); under jit, where no
    check can read them, a row outside the domain gets a NaN scale, so its loss and gradient are NaN (as a bad
    label's). The scale, not the target: a target rewritten entry by entry cost a jitted softmax CE of soft
    targets 40% of its time (2048 x 8192 float32), two row reductions and a per-row scale about nothing."""
    if type(loss).kernel_name() in ("softmax_ce", "kl_divergence") and plan.target.labels is None:
        target = plan.target.dense
        if not _checks.probability_rows_read(jnp, target, "target", slack=plan.target.slack):
            bad = _checks.bad_probability_rows(jnp, target, plan.target.slack)
            poison = jnp.where(bad, jnp.asarray(jnp.nan, plan.scale.dtype), jnp.zeros((), plan.scale.dtype))
            plan = dataclasses.replace(plan, scale=plan.scale + poison)
    return plan


def sweep_for(loss, plan, with_grad: bool = True) -> Sweep | None:
    """The row sweep of ``loss`` for this plan, found by the loss's kernel name (as the compiled and
    torch-native paths find theirs); None: the loss's own array-API formula. ``with_grad``: whether the
    gradient is read (distillation's near rows then take a pass of their own for it)."""
    name = type(loss).kernel_name()
    if name == "softmax_ce":
        if plan.target.labels is None:  # probability targets: the KL sweep without the target's entropy
            return Sweep(_logits, functools.partial(kl_divergence, loss=loss, entropy=False))
        return Sweep(_logits, softmax_ce, limits=True)
    if name == "poly_cross_entropy" and plan.target.labels is not None:
        return Sweep(_logits, functools.partial(softmax_ce, epsilon=loss.epsilon), limits=True)
    if name == "kl_divergence" and plan.target.labels is None:
        return Sweep(_logits, functools.partial(kl_divergence, loss=loss))
    if name == "softmax_focal" and plan.target.labels is not None and not plan.smoothing:
        return Sweep(_logits, functools.partial(softmax_focal, loss=loss))
    if name == "crammer_singer":
        return Sweep(_margins, crammer_singer, limits=True)
    if name == "distillation":
        return Sweep(lambda plan: (plan.input, plan.target.dense),
                     functools.partial(distillation, loss=loss, with_grad=with_grad), scales_itself=True)
    return None
