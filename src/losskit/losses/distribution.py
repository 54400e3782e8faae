r"""Losses on distributions: KL divergence, distillation, Gaussian negative log-likelihood, quantiles.

* :class:`KLDivergence`: :math:`\sum_k y'_k (\log y'_k - \log\mathrm{softmax}(z)_k)`, a target
  distribution against logits (``F.kl_div(log_softmax(z), t, reduction="batchmean")`` for "mean").
* :class:`DistillationLoss`: :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(t/T) \,\|\, \mathrm{softmax}(z/T))`
  with the teacher's logits t as the target (Hinton et al. 2015; the :math:`T^2` keeps the
  gradient's scale independent of T).
* :class:`JSDivergence`: the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024) between
  the student's and the teacher's tempered distributions, exactly as TRL's ``generalized_jsd_loss``:
  ``beta = 0`` is KL(teacher || student), ``beta = 1`` KL(student || teacher), in between
  :math:`\beta\,\mathrm{KL}(q \| m) + (1 - \beta)\,\mathrm{KL}(p \| m)`, :math:`m = \beta q + (1 - \beta) p`.
* :class:`GaussianNLL`: two units per value, the mean and the log-variance.
* :class:`QuantileLoss`: one unit per quantile, the pinball loss summed over the quantiles.

Design note: a log-variance unit (not a variance, as ``F.gaussian_nll_loss`` takes) needs no
clamp and no positivity constraint on the network's output; the squared standardised error is
formed as ``((y - m) exp(-s/2))^2`` so that neither ``exp(-s)`` nor ``(y - m)^2`` overflows alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import _array, _checks
from ..activations import log_softmax_xp, shifted_logits_xp
from ..plan import Target
from . import _compiled
from ._shared import (
    centred_kl,
    centred_kl_terms,
    functional,
    log_one_plus,
    logit_gap,
    scaled_exp_moment,
    scaled_expm1,
    times,
)
from .base import Loss, Terms
from .categorical import SoftmaxCrossEntropy, _CategoricalBase
from .declaration import SOFTMAX, Hessian, Task
from .formula import ArrayMath
from .options import DistillationOptions, JSDOptions, Options, QuantileOptions


class KLDivergence(SoftmaxCrossEntropy):
    r"""KL divergence of a target distribution from the softmax of logits.

    .. math:: l = \sum_k y'_k \left(\log y'_k - \log\mathrm{softmax}(z)_k\right)
              = \mathrm{CE}(z, y') - H(y')

    Same gradient (:math:`p \sum y' - y'`) and Hessian diagonal as :class:`SoftmaxCrossEntropy`:
    the entropy of the target does not depend on the logits. Options and targets as
    :class:`SoftmaxCrossEntropy` (integer labels are one-hot targets, of entropy 0).
    Shapes: ``logits [..., K]``, ``target [..., K]`` probabilities (or integer ``[...]``).
    Edges: :math:`0 \log 0 = 0`; a target of 0 where the logits rule a class out costs 0.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.kl_divergence(np.log(np.array([[0.25, 0.75]])), np.array([[0.25, 0.75]]))), 12)
    0.0
    """

    name = "kl_divergence"
    #: its Hessian per row is c t (diag(p) - p p^T): the torch layer forms H v in closed form
    softmax_hessian = True
    aliases = ("kl",)

    def _kernel(self, plan, host, with_grad):  # compiled rows (losskit.fused.rows)
        return _compiled.kl_divergence(self, plan, host, with_grad)

    _kernel.__name__ = "kl_divergence"

    def _terms(self, plan, order):
        terms = super()._terms(plan, order)
        xp, z = plan.xp, plan.input
        labels = plan.target.labels
        mask = None if labels is None else _array.one_hot(xp, labels, z.shape[-1], xp.bool)
        y = self._dense_target(xp, z, plan.target.dense, mask)
        positive = y > 0
        neg_entropy = xp.sum(times(xp, y, xp.log(xp.where(positive, y, xp.ones_like(y)))), axis=-1)
        return Terms(terms.loss + neg_entropy, terms.grad, terms.hess)


class _TeacherLogits(_CategoricalBase):
    """A loss whose target is another model's logits (a teacher's), not labels: no GBDT label and no
    demo data set can supply it. What is shared is the target's check, never the math."""

    task = Task.MULTICLASS
    link = SOFTMAX
    hessian = Hessian.ROW
    #: the kind of target: the teacher's logits, floating, of the logits' shape
    target = "logits"

    def _prepare(self, xp, input, target) -> Target:
        if input.ndim and input.shape[-1] == 0:  # as the other class-axis losses: no class, no distribution
            raise _checks.fail(self.input_name, "at least one class along the class axis",
                               f"shape {tuple(input.shape)} (K = 0)")
        if not _array.isdtype(xp, target.dtype, "real floating"):
            raise _checks.fail("target", "the teacher's logits (a floating-point array of the logits' shape)",
                               f"dtype {target.dtype}")
        _checks.same_shape("target", target, "logits", tuple(input.shape))
        target = _array.as_dtype(xp, target, input.dtype)  # no copy of a teacher already in the dtype
        _checks.no_nan(xp, target, "target")
        _temperature_fits(xp, self.temperature, input.dtype, squared=isinstance(self, DistillationLoss))
        return Target(dense=target)


def _temperature_fits(xp, temperature: float, dtype, squared: bool = True) -> None:
    """Refuse a temperature whose reciprocal (the logits' scale) or, ``squared`` (distillation's factor
    T^2), square leaves ``dtype``: 1e200 in float64 or 1e-100 in float32 gave NaN (inf times a KL of 0).
    The JSD has no T^2: a float32 T of 2e19 is taken."""
    largest = float(xp.finfo(dtype).max)
    if not ((temperature * temperature <= largest or not squared) and temperature * largest >= 1):
        low, high = 1 / largest, largest ** 0.5
        fits = f"whose square and reciprocal fit {dtype} ({low:.3g} to {high:.3g})" if squared else \
            f"whose reciprocal fits {dtype} (at least {low:.3g})"
        raise _checks.fail("temperature", f"a temperature {fits}", repr(temperature))


class DistillationLoss(_TeacherLogits):
    r"""Knowledge distillation: the teacher's tempered distribution against the student's.

    .. math:: l = T^2 \sum_k q_k (\log q_k - \log p_k), \quad q = \mathrm{softmax}(t / T),
              \; p = \mathrm{softmax}(z / T)

    Gradient :math:`T (p - q)`; Hessian diagonal :math:`p (1 - p)`. Options: ``temperature``
    T > 0 (default 1), ``axis``. Shapes: ``logits [..., K]`` (the student's), ``target [..., K]``
    the teacher's logits (floating, the same shape), ``weight [...]``. Edges: a teacher logit of
    -inf is a class of probability 0 (no cost); finite for finite logits.

    >>> import numpy as np, losskit as lk
    >>> float(lk.distillation_loss(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]), temperature=4.0))
    0.0
    """

    name = "distillation_loss"
    aliases = ("distillation",)
    Options = DistillationOptions

    def _kernel(self, plan, host, with_grad):  # compiled rows (losskit.fused.rows)
        return _compiled.distillation(self, plan, host, with_grad)

    _kernel.__name__ = "distillation"

    def __init__(self, *, temperature: float = 1.0, axis: int = -1, reduction: str = "mean", impl: str = "auto"):
        Loss.__init__(self, temperature=temperature, axis=axis, reduction=reduction, impl=impl)

    def _terms(self, plan, order):
        xp, t = plan.xp, self.temperature
        lp = log_softmax_xp(xp, plan.input / t)
        lq = log_softmax_xp(xp, plan.target.dense / t)
        q = xp.exp(lq)
        # q_k = 0 (a teacher logit of -inf) contributes 0, not 0 * (-inf - lp)
        kl = xp.sum(times(xp, q, lq - lp), axis=-1)
        near, near_kl, near_gap = centred_distillation_kl(xp, plan.input, plan.target.dense, t, kl, order == 1)
        loss = (t * t) * xp.where(near, near_kl, kl)
        grad = hess = None
        if order >= 1:
            p = xp.exp(lp)
            # a near row takes p - q from its centred sums: as rounded probabilities' difference it kept only
            # eps T / |z - t| of it (up to 12,191 eps at T = 100, exactly 0 in float32 at T = 1e10:
            # benchmarks.distillation_accuracy); and each p from the log-softmax here carries log S's rounding,
            # which the compiled rows' plain form does not (they take the exact form below
            # EXACT_GRADIENT_BELOW only, for speed)
            grad = t * xp.where(near[..., None], near_gap, p - q) if order == 1 else None
            hess = p * -xp.expm1(lp) if order == 2 else None  # 1 - p exact where p is near 1
        return Terms(loss, grad, hess)


class JSDivergence(_TeacherLogits):
    r"""Generalised Jensen-Shannon divergence (GKD, Agarwal et al. 2024) of the student from the teacher.

    With :math:`p = \mathrm{softmax}(z / T)` (the student's logits z), :math:`q = \mathrm{softmax}(t / T)`
    (the teacher's t) and :math:`m = \beta q + (1 - \beta) p`:

    .. math:: l = \begin{cases} \sum_k q_k (\log q_k - \log p_k) & \beta = 0 \\
              \beta \sum_k q_k \log\frac{q_k}{m_k} + (1 - \beta) \sum_k p_k \log\frac{p_k}{m_k}
              & 0 < \beta < 1 \\ \sum_k p_k (\log p_k - \log q_k) & \beta = 1 \end{cases}

    TRL's ``GKDTrainer.generalized_jsd_loss`` to the letter: the endpoints are the forward and the
    reverse KL (the mixture's formula tends to 0 there, so they are set apart, as TRL does), no
    :math:`T^2` factor, and ``"mean"`` over the rows is TRL's ``"batchmean"`` (``weight`` 0/1 is its
    ``labels != -100`` mask). Gradient (the teacher is a constant):
    :math:`\frac{1}{T}(p - q)` for :math:`\beta = 0`, else
    :math:`\frac{c}{T} p_j (d_j - \sum_k p_k d_k)` with :math:`d = \log p - \log m`, :math:`c = 1 - \beta`
    (:math:`d = \log p - \log q`, :math:`c = 1` for :math:`\beta = 1`). Hessian diagonal in the docs
    (docs/losses.md). Options: ``beta`` in [0, 1] (default 0.5), ``temperature`` T > 0, ``axis``.
    Shapes: ``logits [..., K]`` (the student's), ``target [..., K]`` (the teacher's logits), ``weight
    [...]``. Edges: a teacher logit of -inf is a class of probability 0: no cost for beta < 1; for beta = 1
    (the reverse KL, KL(p || q)) the loss is +inf wherever the student gives that class mass, as TRL's.

    >>> import numpy as np, losskit as lk
    >>> float(lk.js_divergence(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]), beta=0.3))
    0.0
    """

    name = "js_divergence"
    aliases = ("jsd",)
    Options = JSDOptions

    def _kernel(self, plan, host, with_grad):  # the fused loss's compiled rows (losskit.fused.jsd)
        return _compiled.jsd(self, plan, host, with_grad)

    _kernel.__name__ = "jsd"

    def __init__(self, *, beta: float = 0.5, temperature: float = 1.0, axis: int = -1, reduction: str = "mean",
                 impl: str = "auto"):
        Loss.__init__(self, beta=beta, temperature=temperature, axis=axis, reduction=reduction, impl=impl)

    def _terms(self, plan, order):
        loss, grad, hess = generalized_jsd_terms(plan.xp, plan.input, plan.target.dense, self.beta,
                                                 self.temperature, order)
        return Terms(loss, grad, hess)


class _Gap(NamedTuple):
    """A student's and a teacher's tempered rows compared class by class (class axis last), as both
    centred forms take them (:func:`centred_distillation_kl`, :func:`centred_jsd`)."""

    math: ArrayMath
    p: object  #: the student's probabilities
    exp_s: object  #: the student's shifted, tempered logits' exponentials (``p S_s``; 1 at its max)
    total_s: object  #: the student's normaliser S_s (``[..., 1]``)
    total_t: object  #: the teacher's normaliser S_t of its shifted, tempered logits (``[..., 1]``)
    exp_t: object  #: the teacher's shifted, tempered logits' exponentials (``q S_t``)
    d: object  #: ``((t - max t) - (z - max z)) / T`` (:func:`logit_gap`), 0 where not ``usable``
    u: object  #: ``d - c``, ``c`` the teacher's mean of ``d`` (``[..., 1]``: :attr:`centre`)
    scaled_exp_u: object  #: ``p e^u``
    support: object  #: where the teacher gives mass
    rows_usable: object  #: rows whose classes are all ``usable`` (both finite) where the teacher gives mass
    centre: object
    log_ratio: object  #: ``log S_t - log S_s``, so ``log q - log p = d - log_ratio`` (``[..., 1]``)


def _gap(xp, student, teacher, temperature) -> _Gap:
    """:class:`_Gap`. ``d`` is the logits' difference less the two maxima's (no two normalisers, whose
    rounding is of the size of log K, enter it); ``p e^u = e^dt (e^-c / S_s)``, a row's factor rounded
    once (not ``e^(dt - c - log S_s)``, which rounds log S_s into every exponent: 15.6 eps of float32
    where a class far below the max carries the value); at most 1 in a near row, the factor clipped
    elsewhere (no overflow)."""
    m = ArrayMath(xp, student)
    zero = xp.zeros_like(student)
    inv_t = 1.0 / temperature
    ds, max_s = shifted_logits_xp(xp, student)
    dt, max_t = shifted_logits_xp(xp, teacher)
    ds, dt = ds * inv_t, dt * inv_t
    finite = xp.isfinite(xp.max(student, axis=-1, keepdims=True)) & xp.isfinite(xp.max(teacher, axis=-1, keepdims=True))
    support = dt > -xp.inf
    # a student logit of -inf where the teacher has mass: KL = inf, no near row's
    usable = support & xp.isfinite(ds) & finite
    es, et = xp.exp(ds), xp.exp(dt)
    total_s, total_t = xp.sum(es, axis=-1, keepdims=True), xp.sum(et, axis=-1, keepdims=True)
    d = logit_gap(m, xp.where(usable, teacher, zero), xp.where(usable, student, zero), max_t, max_s) * inv_t
    d = xp.where(usable, d, zero)
    centre = xp.sum(et * d, axis=-1, keepdims=True) / total_t
    u = xp.where(usable, d - centre, zero)
    scaled_exp_u = xp.where(usable, et * (xp.exp(xp.minimum(-centre, m.constant(60.0))) / total_s), zero)
    rows_usable = xp.all(xp.where(support, usable, finite), axis=-1)
    return _Gap(m, es / total_s, es, total_s, total_t, et, d, u, scaled_exp_u, support, rows_usable, centre,
                xp.log(total_t) - xp.log(total_s))


def centred_distillation_kl(xp, student, teacher, temperature, first_form, with_gap=False):
    r"""``KL(softmax(teacher / T) || softmax(student / T))`` per row (class axis last) by :func:`centred_kl`, and
    where to take it: ``(near, kl, gap)``, ``near`` the rows where ``first_form`` (the value as ``sum q (log q -
    log p)`` gives it) is below 1 and both rows' maxima are finite (elsewhere the first form's limits), and
    with ``with_gap`` a near row's ``p - q`` (else None).

    With :func:`_gap`'s ``u`` and ``p e^u``: ``w = log1p(sum p expm1(u))``. A class the teacher rules out
    (a logit of -inf, ``q = 0``, ``e^u = 0``) adds ``-p`` to the first sum and ``p psi(-inf) = p`` to
    ``b``. As ``log q - log p = u - w``, ``p - q = -p expm1(u - w)`` (:func:`centred_kl_terms`' first
    term at ``u - w``, ``p e^(u - w)``): relative to the entry, the rounding of ``p`` and of ``u``, which
    does not grow as ``p`` nears ``q``. The compiled rows (:func:`losskit.fused.rows.distillation_kernel`)
    and the XLA sweep (:func:`losskit.jax.rows.distillation`) compute the same sums."""
    near = first_form < 1.0
    if student.shape[-1] == 0:  # no class: the first form's 0
        return near & False, xp.zeros_like(first_form), (xp.zeros_like(student) if with_gap else None)
    g = _gap(xp, student, teacher, temperature)
    a, b = (xp.sum(term, axis=-1) for term in centred_kl_terms(g.math, g.u, g.p, g.scaled_exp_u, g.support))
    near = near & g.rows_usable
    # w = log sum p e^u from the same u as b (the value moves with w's error squared: from the normalisers'
    # logs, each rounded apart, it cost 6 eps of float32 at K = 32000, KL = 1e-7); elsewhere a may be -1
    # (e^-w overflows): a row's sums are taken where it is near only
    w = log_one_plus(g.math, xp.where(near, a, xp.zeros_like(a)))
    gap = None
    if with_gap:
        w_ = w[..., None]
        gap = -centred_kl_terms(g.math, g.u - w_, g.p, g.scaled_exp_u * xp.exp(-w_), g.support)[0]
    return near, centred_kl(g.math, w, xp.where(near, b, xp.zeros_like(b))), gap


#: beyond it ``log1p(beta expm1(x))`` is ``x + log beta`` to well under an ulp (``e^-80 / beta``; expm1 of
#: it would overflow float32 at 89)
_LOG_RATIO_FAR = 80.0


def mixture_log_ratio(m, x, beta: float):
    r"""``log((1 - beta) p / m) = -softplus(x + log(beta / (1 - beta)))``, ``m = (1 - beta) p + beta q``, ``x = log
    q - log p``: ``log p/m`` less its limit ``-log(1 - beta)`` where ``q << p``, tiny and exact there. A far
    row's gradient ``p_j (d_j - K)`` takes it for ``d`` (the constant cancels in ``d_j - K``): where the
    teacher's mass is on classes the student barely weights, ``d`` is near ``log 2`` on almost every class
    and ``d_j - K`` kept only an ulp of it (6800 eps of the row's largest gradient entry in float32, on
    tests/test_fused_rows.py's long rows). A near row (forward KL below 1) keeps ``d`` itself: its ``K`` is
    small, and ``d_j - K`` is then exact where ``d_j`` is."""
    return -m.softplus(x + (math.log(beta) - math.log1p(-beta)))


def _log_ratio_to_mixture(m, x, weight: float, log_weight: float, log_rest: float, shifted):
    """``log p/m`` for ``m = (1 - beta) p + beta q`` (``weight`` beta, ``log_weight`` its log, ``log_rest`` that
    of ``1 - beta``, each from beta itself: ``1 - (1 - beta)`` is not beta to 1e-12 at beta 1e-4), ``x = log q
    - log p``, given ``shifted = log((1 - beta) p / m)`` (:func:`mixture_log_ratio`); with the sides swapped,
    ``log q/m``. ``-log1p(a)``, ``a = beta expm1(x)``, magnifies ``a``'s rounding by
    ``|a| / ((1 + a) |log(1 + a)|)``, large as ``a`` nears -1 (``beta`` near 1 and ``q << p``: 42 eps at beta
    0.999, 336 at beta 1e-4 for the teacher's side); ``shifted - log(1 - beta)`` magnifies the constant's by
    ``L / |log(1 + a)|``, ``L = -log(1 - beta)``. The first is taken while smaller, above ``a = -L / (1 +
    L)``. Beyond :data:`_LOG_RATIO_FAR` the mixture is the one side, ``-(x + log beta)``."""
    xp, far = m, m.constant(_LOG_RATIO_FAR)
    a = weight * xp.expm1(xp.minimum(x, far))
    low = a < m.constant(log_rest / (1.0 - log_rest))
    return xp.where(x > far, -(x + log_weight),
                    xp.where(low, shifted - log_rest, -log_one_plus(m, xp.where(low, xp.zeros_like(a), a))))


def _rest(xp, exps):
    """A row's normaliser less 1, ``S - 1``, from its shifted logits' exponentials (1 at its max): the terms
    below the max summed, plus the other maxima (no ``S - 1`` cancelling)."""
    zero = xp.zeros_like(exps)
    below = xp.sum(xp.where(exps < 1.0, exps, zero), axis=-1, keepdims=True)
    return below + (xp.sum(xp.where(exps >= 1.0, zero + 1, zero), axis=-1, keepdims=True) - 1)


def anchored_log_ratio(m, student, teacher, temperature):
    """``log p - log q`` less a constant: ``((z - max z) - (t - t_top)) / T`` (:func:`logit_gap`), ``t_top`` the
    teacher's mean logit over the student's maxima, so 0 at a sole max and exact where ``p`` is large; the
    reverse KL's gradient ``p_j (d_j - K)`` takes it (the constant cancels). With the log-ratio itself
    ``d_j - K`` subtracted numbers of the size of ``log(S_t / S_s)``: 10.2 eps of the largest entry of a
    float32 row of 128256 compiled, 22.1 at K = 1000 on the array-API path (now 1.1 and 3.4:
    ``python benchmarks/accuracy.py --long-rows``), 84.5 eps on a float64 row of tied maxima, 1599 on the
    precision grid's row of teacher logits +-1e4. Rows with a non-finite logit come out as garbage (their
    values are the first forms')."""
    xp = m
    ok = xp.all(xp.isfinite(student) & xp.isfinite(teacher), axis=-1, keepdims=True)
    zero = xp.zeros_like(student)
    student, teacher = xp.where(ok, student, zero), xp.where(ok, teacher, zero)
    top_s = xp.max(student, axis=-1, keepdims=True)
    top = student == top_s
    anchor = xp.sum(xp.where(top, teacher, zero), axis=-1, keepdims=True) / xp.sum(xp.where(top, zero + 1, zero),
                                                                                    axis=-1, keepdims=True)
    return -logit_gap(m, teacher, student, anchor, top_s) * (1.0 / temperature)


def centred_jsd(xp, student, teacher, beta: float, temperature: float, with_grad: bool):
    r"""The generalised JSD of :class:`JSDivergence` per row (class axis last) as a sum of terms >= 0, and
    its gradient: ``(exact, loss, grad)``, ``exact`` the rows whose logits are all finite and below a
    quarter of the dtype's largest number, where these are to be taken (``grad`` None unless ``with_grad``).

    Each divergence is written as ``KL(a || b) = sum_k b_k psi(log(a_k / b_k))``, ``psi(x) = 1 + (x - 1)
    e^x >= 0`` (:func:`~losskit.losses._shared.scaled_exp_moment`, as ``sum a = sum b = 1``), so no two
    log-normalisers are subtracted and nothing cancels: only the log-ratios ``x = log q - log p`` must be
    exact. ``x = u - w`` with :func:`_gap`'s centred ``u`` and ``w = log1p(sum p expm1(u))`` where the
    forward KL is below 1 (``w = -KL``: its error is relative to that), ``d - (log S_t - log S_s)``
    elsewhere (the value is then not small). ``beta = 0``: ``sum p psi(x)``; ``beta = 1``: ``sum q
    psi(-x)``; in between ``beta sum m psi(log q/m) + (1 - beta) sum m psi(log p/m)``, with ``log p/m =
    -log1p(beta expm1(x))`` and ``log q/m = -log1p((1 - beta) expm1(-x))``, or their softplus forms where these
    cancel (:func:`_log_ratio_to_mixture`).

    Gradient in the student's logits: ``(p - q) / T = -p expm1(x) / T`` for ``beta = 0`` (at the rows' shared
    max ``(1 - q) - (1 - p)``); else ``(c / T) p_j (d_j - K)``, ``d = log p/m`` (``-x`` for ``beta = 1``),
    ``K = sum p d``, ``c = 1 - beta`` (1), ``d`` shifted by a constant where that keeps ``d_j - K`` from
    cancelling (:func:`anchored_log_ratio`, :func:`mixture_log_ratio`), and the class holding more than half
    of ``p`` from ``sum_k p_k (d_j - d_k)``."""
    # rows whose logits are finite and below a quarter of the dtype's largest number: no difference of two
    # logits, nor of a logit and a mean of them, overflows (the others take the first forms' limits, and
    # zeros here)
    big = xp.finfo(student.dtype).max / 4
    exact = xp.all((xp.abs(student) < big) & (xp.abs(teacher) < big), axis=-1)
    zero = xp.zeros_like(student)
    student, teacher = xp.where(exact[..., None], student, zero), xp.where(exact[..., None], teacher, zero)
    g = _gap(xp, student, teacher, temperature)
    m, p = g.math, g.p
    q = g.exp_t / g.total_t
    forward_kl = g.centre[..., 0] - g.log_ratio[..., 0]  # sum q (log q - log p), the first form
    near = (forward_kl < 1.0) & exact
    a = xp.sum(scaled_expm1(m, g.u, p, g.scaled_exp_u), axis=-1)
    w = log_one_plus(m, xp.where(near, a, xp.zeros_like(a)))[..., None]
    x = xp.where(near[..., None], g.u - w, g.d - g.log_ratio)  # log q - log p
    inv_t, grad = 1.0 / temperature, None
    if beta == 0.0:
        loss = xp.sum(scaled_exp_moment(m, x, p, q), axis=-1)
        if with_grad:
            grad = -inv_t * scaled_expm1(m, x, p, q)
            # where both rows have their max, x = -log(S_t / S_s) is off by about an ulp of the constants it is
            # formed from (c and w, or log(S_t / S_s)), so -p expm1(x) by p (|c| + |w|) eps; (1 - q) - (1 - p),
            # each from the other classes' terms, by (1 - q) + (1 - p) eps: the smaller is taken (z = (0, -5e7),
            # t = (0, -18.42): -p expm1(x) lost the sign of 1e-8 in float32; at p = 0.64 the complements were
            # 20 eps off, -p expm1(x) 5.7)
            rest_s, rest_t = _rest(xp, g.exp_s) / g.total_s, _rest(xp, g.exp_t) / g.total_t  # 1 - p, 1 - q there
            constants = xp.where(near[..., None], xp.abs(g.centre) + xp.abs(w), xp.abs(g.log_ratio))
            shared = (g.exp_s >= 1.0) & (g.exp_t >= 1.0) & (rest_s + rest_t < constants / g.total_s)
            grad = xp.where(shared, inv_t * (rest_t - rest_s), grad)
        return exact, loss, grad
    if beta == 1.0:
        d, coef = -x, inv_t
        loss = kl_p = xp.sum(scaled_exp_moment(m, d, q, p), axis=-1)
        if with_grad:  # the gradient's d less its value at the student's max (see anchored_log_ratio)
            d = anchored_log_ratio(m, student, teacher, temperature)
            kl_p = xp.sum(p * d, axis=-1)
    else:
        mixture = (1.0 - beta) * p + beta * q
        log_beta, log_rest = math.log(beta), math.log1p(-beta)
        shifted = mixture_log_ratio(m, x, beta)  # log((1 - beta) p / m)
        shifted_q = -m.softplus((log_rest - log_beta) - x)  # log(beta q / m)
        d = _log_ratio_to_mixture(m, x, beta, log_beta, log_rest, shifted)  # log p/m
        to_teacher = _log_ratio_to_mixture(m, -x, 1.0 - beta, log_rest, log_beta, shifted_q)  # log q/m
        kl_p = xp.sum(scaled_exp_moment(m, d, mixture, p), axis=-1)
        loss = beta * xp.sum(scaled_exp_moment(m, to_teacher, mixture, q), axis=-1) + (1.0 - beta) * kl_p
        coef = (1.0 - beta) * inv_t
        if with_grad:  # a far row's gradient from d + log(1 - beta), exact where q << p (see mixture_log_ratio)
            near_rows = near[..., None]
            d = xp.where(near_rows, d, shifted)
            kl_p = xp.where(near, kl_p, xp.sum(p * shifted, axis=-1))
    if with_grad:
        # d_j - K = sum_k p_k (d_j - d_k) (sum p = 1): for the class holding most of p (p > 1/2, one at most)
        # that sum, whose own term is 0; d_j - K cancels there, to an ulp of K where the exact is e^-700
        top = p > 0.5
        top_d = xp.sum(xp.where(top, d, xp.zeros_like(d)), axis=-1, keepdims=True)
        top_gap = xp.sum(p * xp.where(top, xp.zeros_like(d), top_d - d), axis=-1, keepdims=True)
        grad = coef * (p * xp.where(top, top_gap, d - kl_p[..., None]))
    return exact, loss, grad


def generalized_jsd_terms(xp, student_logits, teacher_logits, beta: float, temperature: float, order: int):
    """Per-row generalised JSD of :class:`JSDivergence` (class axis last) and, up to ``order``, its
    gradient (``order`` 1) or Hessian diagonal (``order`` 2) in the student's logits: ``(loss, grad,
    hess)``, the absent ones None. The array-API reference of the fused :func:`~losskit.linear_jsd_loss`.

    Rows of finite logits take :func:`centred_jsd` (value and gradient); the others the same formulas
    from the two log-softmaxes (:func:`_jsd_from_log_softmaxes`), which give the limits of infinite
    logits, computed only where a row needs them or can't be read (under ``jit``, on Dask). The Hessian
    diagonal is the latter's throughout."""
    if student_logits.shape[-1] == 0 or order == 2:
        return _jsd_from_log_softmaxes(xp, student_logits, teacher_logits, beta, temperature, order)
    exact, exact_loss, exact_grad = centred_jsd(xp, student_logits, teacher_logits, beta, temperature, order == 1)
    if _array.concrete_bool(xp.all(exact)):
        return exact_loss, exact_grad, None
    loss, grad, hess = _jsd_from_log_softmaxes(xp, student_logits, teacher_logits, beta, temperature, order)
    loss = xp.where(exact, exact_loss, loss)
    if order == 1:
        grad = xp.where(exact[..., None], exact_grad, grad)
    return loss, grad, hess


def _jsd_from_log_softmaxes(xp, student_logits, teacher_logits, beta: float, temperature: float, order: int):
    """:func:`generalized_jsd_terms` from ``s, t``, the log-softmaxes of the tempered rows: a small
    divergence keeps only the accuracy of their difference (18 to 410 eps on the precision grid), but
    infinite logits get their limits."""
    inv_t = 1.0 / temperature
    s = log_softmax_xp(xp, student_logits / temperature)
    t = log_softmax_xp(xp, teacher_logits / temperature)
    q = xp.exp(t)
    p = xp.exp(s) if order else None
    if beta == 0.0:  # KL(q || p): a teacher probability of 0 costs 0, not 0 * (-inf)
        loss = xp.sum(times(xp, q, t - s), axis=-1)
        grad = inv_t * (p - q) if order == 1 else None
        hess = inv_t * inv_t * p * -xp.expm1(s) if order == 2 else None  # 1 - p exact where p is near 1
        return loss, grad, hess
    if beta == 1.0:  # KL(p || q)
        d, coef = s - t, 1.0
    else:
        d, t_minus_m = _log_ratios_to_mixture(xp, s, t, beta)
        coef = 1.0 - beta
    # K = sum_k p_k d_k (KL(p || m), or the reverse KL itself); p_k = 0 adds 0 whatever d_k is
    kl_student = xp.sum(times(xp, xp.exp(s), d), axis=-1)
    loss = kl_student if beta == 1.0 else \
        beta * xp.sum(times(xp, q, t_minus_m), axis=-1) + (1.0 - beta) * kl_student
    if not order:
        return loss, None, None
    centred = d - kl_student[..., None]
    if order == 1:  # d l / d s_k = c p_k d_k, projected through the softmax: c p_j (d_j - K)
        return loss, (coef * inv_t) * times(xp, p, centred), None
    # d^2 l / dz_j^2: w_j = d log m_j / d s_j = (1 - beta) p_j / m_j (0 for beta = 1), W = sum_k p_k w_k
    w = xp.zeros_like(p) if beta == 1.0 else (1.0 - beta) * xp.where(p > 0, xp.exp(d), xp.zeros_like(p))
    big_w = xp.sum(p * w, axis=-1)[..., None]
    inner = (1 - 2 * p) * centred + (1 - p) * (1 - w) + p * w - p * big_w
    return loss, None, (coef * inv_t * inv_t) * times(xp, p, inner)


def _log_ratios_to_mixture(xp, s, t, beta):
    """``(log p - log m, log q - log m)`` for ``m = (1 - beta) p + beta q``, from the log-probabilities.

    ``log m`` is taken relative to the larger of ``p`` and ``q``: where ``t <= s``,
    ``log m = s + log1p(beta expm1(t - s))``, else ``t + log1p((1 - beta) expm1(s - t))``. So equal
    rows give exactly 0 (TRL's documented zero for identical inputs), and a small gap keeps its
    relative precision, where ``logaddexp(s + log(1 - beta), t + log beta) - s`` cancels."""
    delta = t - s
    below = delta <= 0
    gap = xp.where(below, delta, -delta)  # <= 0: expm1 in (-1, 0], log1p's argument in (-1, 0]
    weight = xp.where(below, xp.full_like(s, beta), xp.full_like(s, 1.0 - beta))
    over_larger = xp.log1p(weight * xp.expm1(gap))  # log m minus the larger log-probability
    return xp.where(below, -over_larger, -delta - over_larger), xp.where(below, delta - over_larger, -over_larger)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class GaussianNLL(Loss):
    r"""Gaussian negative log-likelihood with a predicted mean and log-variance per value.

    .. math:: l = \tfrac12\left(s + (y - m)^2 e^{-s} + \log 2\pi\right)

    (``F.gaussian_nll_loss(m, y, exp(s), full=True)``.) Gradient :math:`((m - y) e^{-s},\;
    \tfrac12 (1 - (y - m)^2 e^{-s}))`; Hessian diagonal :math:`(e^{-s},\; \tfrac12 (y - m)^2 e^{-s})`
    (the Hessian has an off-diagonal term :math:`(y - m) e^{-s}` too).

    Shapes: ``predictions [..., 2]`` holding (mean, log-variance) on the last axis; ``target
    [...]``; ``weight [...]`` (one per value). Edges: finite for finite input; a log-variance of
    -inf with an exact mean costs -inf (the likelihood is unbounded), and an inexact one +inf.
    On NumPy and torch CPU input a compiled kernel computes it (:mod:`losskit.fused.pairs`).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.gaussian_nll_loss(np.array([[0.0, 0.0]]), np.array([0.0]))), 6)  # log(2 pi) / 2
    0.918939
    """

    name = "gaussian_nll_loss"
    task = Task.REGRESSION
    aliases = ("gaussian_nll",)
    hessian = Hessian.ROW  # (mean, log-variance) have a cross term
    input_name = "predictions"
    reduces_last_axis = True
    # its value and gradient share y - m and exp(-s / 2): under XLA in two passes, 197 -> 183 ms at 25M pairs
    # float32, level with its jnp formula (the quantile loss shares nothing worth it: 99 -> 117 ms in two)
    shares_terms = True
    Options = Options
    units_per_value = 2  # the mean and the log-variance

    def _kernel(self, plan, host, with_grad):  # compiled pairs (losskit.fused.pairs)
        return _compiled.gaussian_nll(self, plan, host, with_grad)

    _kernel.__name__ = "gaussian_nll"

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        super().__init__(reduction=reduction, impl=impl)

    def _prepare(self, xp, input, target) -> Target:
        if input.ndim == 0 or input.shape[-1] != 2:
            raise _checks.fail(self.input_name, "shape [..., 2]: the mean and the log-variance on the last axis",
                               f"shape {tuple(input.shape)}")
        return _one_value_per_example(xp, input, target, "last axis")

    def _terms(self, plan, order):
        xp, input, y = plan.xp, plan.input, plan.target.dense
        mean, log_var = input[..., 0], input[..., 1]
        error = y - mean
        # the standardised error r = (y - m) e^(-s/2), with no overflow of e^(-s) alone. For an exact mean r is 0
        # whatever s: e^(-s/2) is taken at s = 0 there, so that it is not 0 * inf (NaN for finite input at s <
        # -177 in float32), nor its derivative under autodiff (a where after the product left d/dy NaN)
        root = xp.exp(-0.5 * xp.where(error == 0, xp.zeros_like(log_var), log_var))
        r = error * root
        # r infinite (a log-variance of -inf and an inexact mean): +inf, the limit of s + r^2 as s -> -inf, where
        # -inf + inf was NaN (found in review); an exact mean keeps -inf (r is 0 there)
        loss = xp.where(xp.isinf(r), xp.full_like(r, math.inf), 0.5 * (log_var + r * r)) + _HALF_LOG_2PI
        grad = hess = None
        if order == 1:
            grad = xp.stack([-r * root, 0.5 * (1 - r * r)], axis=-1)
        elif order == 2:
            hess = xp.stack([xp.exp(-log_var), 0.5 * r * r], axis=-1)
        return Terms(loss, grad, hess)


def _one_value_per_example(xp, input, target, axis_name: str) -> Target:
    """A real target with one value per example: the predictions' shape without their last axis."""
    _checks.same_shape("target", target, f"predictions without their {axis_name}", tuple(input.shape[:-1]))
    if not _array.isdtype(xp, target.dtype, ("real floating", "integral")):
        raise _checks.fail("target", "a real-valued array", f"dtype {target.dtype}")
    target = _array.as_dtype(xp, target, input.dtype)
    _checks.no_nan(xp, target, "target")
    return Target(dense=target)


class QuantileLoss(Loss):
    r"""Pinball (quantile) loss, one unit per quantile, summed over the quantiles.

    .. math:: l = \sum_{j=1}^{Q} \max\left(q_j (y - \hat y_j),\; (q_j - 1)(y - \hat y_j)\right)

    ``mean`` over examples is the sum over j of ``sklearn.metrics.mean_pinball_loss(y, yhat_j,
    alpha=q_j)``. Gradient :math:`-q_j` where :math:`\hat y_j < y`, else :math:`1 - q_j` (XGBoost's
    choice at :math:`\hat y_j = y`); Hessian 0 (a GBDT needs a substitute: docs/gbdt.md).

    Options: ``quantiles``, a number or list in (0, 1) (default 0.5: half the absolute error).
    Shapes: ``predictions [..., Q]``, ``target [...]`` (one value per example, shared by its Q
    units), ``weight [...]``. On NumPy and torch CPU input a compiled kernel computes it
    (:mod:`losskit.fused.pairs`).

    >>> import numpy as np, losskit as lk
    >>> lk.quantile_loss(np.array([[0.0, 0.0]]), np.array([1.0]), quantiles=[0.1, 0.9]).tolist()
    1.0
    """

    name = "quantile_loss"
    task = Task.REGRESSION
    aliases = ("quantile",)
    hessian = Hessian.ZERO
    gbdt_curvature = "majorize"
    input_name = "predictions"
    reduces_last_axis = True
    Options = QuantileOptions

    def _kernel(self, plan, host, with_grad):  # compiled units (losskit.fused.pairs)
        return _compiled.quantile(self, plan, host, with_grad)

    _kernel.__name__ = "quantile"

    def __init__(self, *, quantiles=(0.5,), reduction: str = "mean", impl: str = "auto"):
        super().__init__(quantiles=quantiles, reduction=reduction, impl=impl)

    @property
    def units_per_value(self) -> int:
        return len(self.quantiles)

    def _best_constant(self, label, weight) -> float:  # (one quantile: several have no single value)
        from .._stats import weighted_quantile

        return weighted_quantile(label, float(self.quantiles[0]), weight)

    def gbdt_builtin(self, library):
        quantiles = [float(q) for q in self.quantiles]
        if library == "xgboost":  # several: XGBoost's multi-quantile (a 1-D label, Q margins a row), since 2.0
            return "reg:quantileerror", {"quantile_alpha": quantiles[0] if len(quantiles) == 1 else quantiles}
        return ("quantile", {"alpha": quantiles[0]}) if len(quantiles) == 1 else None

    def _prepare(self, xp, input, target) -> Target:
        n = len(self.quantiles)
        if input.ndim == 0 or input.shape[-1] != n:
            raise _checks.fail(self.input_name, f"shape [..., {n}]: one unit per quantile ({n} quantiles)",
                               f"shape {tuple(input.shape)}")
        return _one_value_per_example(xp, input, target, "quantile axis")

    def _terms(self, plan, order):
        xp, input = plan.xp, plan.input
        q = xp.asarray(self.quantiles, dtype=input.dtype, device=_array.device(input))
        e = plan.target.dense[..., None] - input
        loss = xp.sum(xp.maximum(q * e, (q - 1) * e), axis=-1)
        grad = hess = None
        if order == 1:
            # [y <= yhat] - q: -q where yhat < y, else 1 - q (a NaN's too), one broadcast of q. The select between
            # two broadcast rows of q took 1.9x the time under XLA (160 against 83 ms at 16.7M x 3 float32)
            grad = xp.astype(~(e > 0), e.dtype) - q
        elif order == 2:
            hess = xp.zeros_like(input)
        return Terms(loss, grad, hess)


kl_divergence = functional(KLDivergence, "kl_divergence", r"""KL divergence of ``target`` (probabilities)
    from ``softmax(logits)`` per example (see :class:`KLDivergence`).

    Shapes: ``logits [..., K]``, ``target [..., K]``; options as :func:`softmax_cross_entropy`.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.kl_divergence(np.zeros((1, 2)), np.array([[1.0, 0.0]]))), 6)  # log 2
    0.693147
""")
distillation_loss = functional(DistillationLoss, "distillation_loss", r"""Distillation loss
    :math:`T^2 \mathrm{KL}(\mathrm{softmax}(t/T) \| \mathrm{softmax}(z/T))` with the teacher's logits as
    the target (see :class:`DistillationLoss`).

    Shapes: ``logits [..., K]`` (the student's), ``target [..., K]`` (the teacher's logits),
    ``weight [...]``; option ``temperature`` T > 0.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.distillation_loss(np.zeros((1, 2)), np.array([[0.0, -np.inf]]), temperature=2.0)), 6)
    2.772589
""")
js_divergence = functional(JSDivergence, "js_divergence", r"""Generalised Jensen-Shannon divergence
    (GKD; TRL's ``generalized_jsd_loss``) of the student's logits from the teacher's (see :class:`JSDivergence`).

    Shapes: ``logits [..., K]`` (the student's), ``target [..., K]`` (the teacher's logits),
    ``weight [...]``; options ``beta`` in [0, 1] (0: KL(teacher || student), 1: KL(student ||
    teacher)), ``temperature`` T > 0.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.js_divergence(np.zeros((1, 2)), np.array([[0.0, -np.inf]]), beta=0.0)), 6)  # log 2
    0.693147
""")
gaussian_nll_loss = functional(GaussianNLL, "gaussian_nll_loss", r"""Gaussian negative log-likelihood of
    ``target`` under (mean, log-variance) predictions (see :class:`GaussianNLL`).

    Shapes: ``predictions [..., 2]``, ``target [...]``, ``weight [...]``.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.gaussian_nll_loss(np.array([[1.0, 0.0]]), np.array([0.0]))), 6)
    1.418939
""")
quantile_loss = functional(QuantileLoss, "quantile_loss", r"""Pinball loss summed over quantiles, with
    one unit per quantile (see :class:`QuantileLoss`).

    Shapes: ``predictions [..., Q]``, ``target [...]``, ``weight [...]``; option ``quantiles`` in (0, 1).

    >>> import numpy as np, losskit as lk
    >>> float(lk.quantile_loss(np.array([[2.0]]), np.array([0.0]), quantiles=0.25))
    1.5
""")
