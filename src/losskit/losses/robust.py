r"""Robust regression losses: absolute error, Huber, smooth L1, pseudo-Huber, log-cosh.

Each is a function :math:`\rho(e)` of the error :math:`e = \hat y - y`, averaged over the values
of an example as :class:`MeanSquaredError` does (a 1-D input is one value per example; for 2 or
more dimensions the last axis holds the D values of an example), so that ``"mean"`` equals the
peers' mean over all elements (``F.l1_loss``, ``F.huber_loss``, ``F.smooth_l1_loss``, Keras
``LogCosh``). Each is one formula (:class:`~losskit.ElementwiseLoss`), compiled for the CPU kernel.

Design note: pseudo-Huber is written ``|e| * |e| / (1 + h)`` with ``h = hypot(1, e / delta)``
rather than ``delta^2 (sqrt(1 + (e/delta)^2) - 1)``: the latter cancels for small e and
overflows for large e. Log-cosh is ``log1p(cosh e - 1)`` below |e| = 1, ``cosh e - 1`` by its
series (no cancellation near 0), and ``|e| + log1p(exp(-2|e|)) - log 2`` above (no overflow); its
gradient ``tanh e`` is ``sinh / cosh`` by the series below 1 and ``(1 - t) / (1 + t)`` with the
value's ``t = exp(-2|e|)`` above, so the compiled kernel takes one exponential for both.
"""

from __future__ import annotations

import math

from .._stats import weighted_quantile
from ._shared import polynomial
from .declaration import Hessian, Task, option
from .elementwise import ElementwiseLoss
from .formula import formula_function
from .registry import functional


class ValueLoss(ElementwiseLoss):
    """Base of the losses of one value per unit: ``rho(e)`` per element, averaged over the D values
    of an example."""

    target = "value"
    over_last_axis = "mean"
    task = Task.REGRESSION




class AbsoluteError(ValueLoss):
    r"""Absolute error: :math:`l = \mathrm{mean}_j |\hat y_j - y_j|` (``F.l1_loss``).

    Shapes as :class:`MeanSquaredError`. Gradient :math:`\mathrm{sign}(e)/D` (0 at e = 0);
    Hessian 0 (a second-order method needs a substitute: docs/gbdt.md).

    >>> import numpy as np, losskit as lk
    >>> float(lk.absolute_error(np.array([1.0, -3.0]), np.array([0.0, 0.0])))
    2.0
    """

    name = "absolute_error"
    of_error = True
    arithmetic_value = True  # |z - y|: no select (the XLA path sums it whole)
    aliases = ("mae",)
    hessian = Hessian.ZERO
    gbdt_curvature = "majorize"

    def value(self, xp, z, y):
        return xp.abs(z - y)

    def derivative(self, xp, z, y):
        return xp.sign(z - y)

    def second_derivative(self, xp, z, y):
        return xp.zeros_like(z)

    def _best_constant(self, label, weight) -> float:
        # the lower weighted median: a minimiser (the built-ins interpolate between order statistics)
        return weighted_quantile(label, 0.5, weight)

    def gbdt_builtin(self, library):
        return {"xgboost": ("reg:absoluteerror", {}), "lightgbm": ("l1", {})}[library]


class HuberLoss(ValueLoss):
    r"""Huber loss (``F.huber_loss``): quadratic within ``delta`` of the target, linear beyond.

    .. math:: \rho(e) = \tfrac12 e^2 \text{ if } |e| < \delta, \text{ else } \delta (|e| - \tfrac12 \delta)

    Gradient :math:`\mathrm{clip}(e, -\delta, \delta)`, Hessian :math:`[|e| < \delta]`, each over D.
    Option ``delta`` > 0. Shapes as :class:`MeanSquaredError`.

    >>> import numpy as np, losskit as lk
    >>> lk.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """

    name = "huber_loss"
    of_error = True
    gbdt_curvature = "irls"  # a concave function of e^2: see Loss.gbdt_curvature
    aliases = ("huber",)
    delta = option(1.0, low=0.0, low_open=True, doc="the error where the loss turns linear")

    def value(self, xp, z, y):
        e = z - y
        a = xp.abs(e)
        return xp.where(a < self.delta, 0.5 * e * e, self.delta * (a - 0.5 * self.delta))

    def derivative(self, xp, z, y):
        return xp.clip(z - y, -self.delta, self.delta)

    def second_derivative(self, xp, z, y):
        return xp.where(xp.abs(z - y) < self.delta, 1.0, 0.0)

    def gbdt_builtin(self, library):
        # LightGBM's "huber" (alpha = delta) is this loss, but its constant Hessian trains worse than the custom
        # objective's IRLS curvature: held-out loss +9 to +13 % (docs/gbdt.md, python -m benchmarks.gbdt)
        return None


class SmoothL1Loss(ValueLoss):
    r"""Smooth L1 loss (``F.smooth_l1_loss``): Huber divided by ``beta``.

    .. math:: \rho(e) = \tfrac12 e^2 / \beta \text{ if } |e| < \beta, \text{ else } |e| - \tfrac12 \beta

    Gradient :math:`\mathrm{clip}(e/\beta, -1, 1)`, Hessian :math:`[|e| < \beta] / \beta`; ``beta``
    >= 0, and ``beta = 0`` is the absolute error (as in PyTorch). Shapes as :class:`MeanSquaredError`.

    >>> import numpy as np, losskit as lk
    >>> lk.smooth_l1_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none").tolist()
    [0.125, 2.5]
    """

    name = "smooth_l1_loss"
    of_error = True
    @property
    def gbdt_curvature(self) -> str:
        """A concave function of e^2 (see Loss.gbdt_curvature), but at ``beta = 0`` the absolute error,
        whose IRLS curvature 1 / |e| is unbounded at the target (1e9 at e = 1e-9): its majorise-minimise
        curvature, floored, as :class:`AbsoluteError`'s."""
        return "majorize" if self.beta == 0 else "irls"
    aliases = ("smooth_l1",)
    beta = option(1.0, low=0.0, doc="the error where the loss turns linear (0: the absolute error)")

    def value(self, xp, z, y):
        e = z - y
        a = xp.abs(e)
        safe = self.beta if self.beta > 0 else 1.0  # beta = 0 takes the linear side everywhere
        return xp.where(a < self.beta, 0.5 * e * (e / safe), a - 0.5 * self.beta)

    def derivative(self, xp, z, y):
        e = z - y
        safe = self.beta if self.beta > 0 else 1.0
        return xp.where(xp.abs(e) < self.beta, e / safe, xp.sign(e))

    def second_derivative(self, xp, z, y):
        safe = self.beta if self.beta > 0 else 1.0
        return xp.where(xp.abs(z - y) < self.beta, 1.0 / safe, 0.0)


class PseudoHuberLoss(ValueLoss):
    r"""Pseudo-Huber loss (XGBoost ``reg:pseudohubererror`` with ``huber_slope = delta``).

    .. math:: \rho(e) = \delta^2\left(\sqrt{1 + (e/\delta)^2} - 1\right)

    Gradient :math:`e / h`, Hessian :math:`1 / h^3` with :math:`h = \sqrt{1 + (e/\delta)^2}`
    (over D). Smooth everywhere; ``delta`` > 0. Edges: finite for finite e (about
    :math:`\delta |e|` for large e, no overflow of :math:`e^2`); the gradient never above ``delta``
    in magnitude.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.pseudo_huber_loss(np.array([1.0]), np.array([0.0]))), 6)  # sqrt(2) - 1
    0.414214
    """

    name = "pseudo_huber_loss"
    of_error = True
    gbdt_curvature = "irls"  # a concave function of e^2: see Loss.gbdt_curvature
    aliases = ("pseudo_huber",)
    delta = option(1.0, low=0.0, low_open=True, doc="the slope of the linear tails")

    def value(self, xp, z, y):
        e = z - y
        linear, h, shared = _pseudo_huber_parts(xp, e, self.delta)
        a = xp.abs(xp.where(linear, xp.zeros_like(e), e))
        # delta^2 (h - 1) = a^2 / (1 + h), no cancellation for small e; delta (|e| - delta) where linear
        tail = xp.constant(self.delta) * (xp.abs(e) - xp.constant(self.delta))
        return xp.where(linear, tail, a * (a * (h * shared)))

    def derivative(self, xp, z, y):
        e = z - y
        linear, h, shared = _pseudo_huber_parts(xp, e, self.delta)
        delta = xp.constant(self.delta)
        tail = xp.where(e < xp.constant(0.0), -delta, delta)
        # where linear, h = 1 and e ((1 + h) q) = e: finite (or inf), discarded, so e needs no bound
        # here. The clip: e / h < delta exactly, but its three roundings can land 1 ulp above
        return xp.where(linear, tail, xp.clip(e * ((1 + h) * shared), -delta, delta))

    def second_derivative(self, xp, z, y):
        inverse = 1 / _hypot_one(xp, (z - y) / self.delta)
        return inverse * (inverse * inverse)  # 1 / h^3 with no overflow of h^3

    def gbdt_builtin(self, library):
        # XGBoost's "reg:pseudohubererror" (huber_slope = delta) is this loss, but it starts from a Newton step
        # at 0 (278 where the targets' median is 14: a held-out loss of 247) and, started right, steps by the
        # true Hessian, ~ 1 / |e|^3 far out: +5 to +13 % against the custom objective (docs/gbdt.md)
        return None


@formula_function
def _pseudo_huber_parts(xp, e, delta):
    """``(linear, h, 1 / (h (1 + h)))``: ``linear`` where ``r = |e| / delta > 2 / sqrt(eps)`` (2^12.5
    in float32, 2^27 in float64): there ``h = r (1 + 1 / (2 r^2) + ...)``, so the loss is the
    linear tail ``delta (|e| - delta)`` and the gradient ``delta sign(e)`` to within ``eps / 8``.
    Elsewhere ``h = sqrt(1 + r^2)`` (1 where linear: each branch sees only its own inputs) and the
    one division that the value ``a^2 / (1 + h)`` and the gradient ``e / h`` share. The compiled
    kernel computes it once for both; two divisions were half its time (53.7 -> 41.6 ms at 50M
    float32, this machine). Why the switch is so low: autodiff through the value (a framework's
    target cotangent, ``jax.grad`` of the core) carries ``d value / d q = a^2 h ~ r^3 delta^2``,
    which must not overflow: below the switch it stays finite up to delta = 4e13 in float32."""
    r = e / delta
    linear = xp.abs(r) > xp.constant(2.0 / math.sqrt(xp.eps))
    bounded = xp.where(linear, xp.zeros_like(r), r)
    h = xp.sqrt(1 + bounded * bounded)
    return linear, h, 1 / (h * (1 + h))


@formula_function
def _hypot_one(xp, r):
    """``sqrt(1 + r^2)`` without overflow: ``|r|`` itself where ``r^2`` would overflow or ``1 + r^2``
    rounds to ``r^2`` (|r| > 2^60: then sqrt(1 + r^2) = |r| to the last bit). Written with sqrt, not
    hypot, because the compiled kernels vectorise sqrt and not a libm call."""
    a = xp.abs(r)
    small = a < 2.0 ** 60
    safe = xp.where(small, a, xp.zeros_like(a))  # each branch sees only its own inputs
    return xp.where(small, xp.sqrt(1 + safe * safe), a)


_LOG2 = math.log(2.0)


def _taylor(offset, count):
    """``sum_k x^k / (2k + offset)!`` for k < ``count``, as :func:`polynomial`'s even and odd chains."""
    terms = [1.0 / math.factorial(2 * k + offset) for k in range(count)]
    return tuple(terms[0::2][::-1]), tuple(terms[1::2][::-1])


# below |e| = 1, in e^2: (cosh e - 1) / e^2 = sum_k e^2k / (2k + 2)! and (sinh e / e - 1) / e^2 =
# sum_k e^2k / (2k + 3)!, each to the length its dtype needs: the first term left out, relative to
# the sum, below 4.2e-9 (float32, to e^10 / 12! and e^10 / 13!) and 8.2e-19 (float64, to e^18 / 20!
# and e^16 / 19!), a twentieth of an eps or less
_COSH32, _COSH64 = _taylor(2, 5), _taylor(2, 9)
_SINH32, _SINH64 = _taylor(3, 5), _taylor(3, 8)


def _chains_from_first(xp, even, odd, x):
    """:func:`polynomial` with each chain started at its first coefficient, not at 0 x + it."""
    square = x * x
    e = xp.constant(even[0])
    for k in even[1:]:
        e = e * square + xp.constant(k)
    o = xp.constant(odd[0])
    for k in odd[1:]:
        o = o * square + xp.constant(k)
    return e + x * o


@formula_function
def _cosh_minus_one(xp, square):
    """``cosh e - 1`` from ``square = e^2 < 1`` by its Taylor series: positive terms, no cancellation
    (float32 takes the shorter series: a call per length, numba types the two tuples apart)."""
    series = polynomial(xp, *_COSH32, square) if xp.eps > 1e-10 else polynomial(xp, *_COSH64, square)
    return square * series


@formula_function
def _sinh_over_e(xp, square):
    """``sinh(e) / e`` from ``square = e^2 < 1`` by its Taylor series (as :func:`_cosh_minus_one`)."""
    series = polynomial(xp, *_SINH32, square) if xp.eps > 1e-10 else polynomial(xp, *_SINH64, square)
    return xp.constant(1.0) + square * series


class LogCoshLoss(ValueLoss):
    r"""Log-cosh loss (Keras ``LogCosh``): :math:`\rho(e) = \log\cosh(e)`.

    Gradient :math:`\tanh(e)`, Hessian :math:`1 - \tanh^2(e)` (over D): quadratic near 0,
    linear (:math:`|e| - \log 2`) far away. Edges: finite for finite e; exact to a few eps
    for tiny e (no cancellation).

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.log_cosh_loss(np.array([1.0]), np.array([0.0]))), 6)
    0.433781
    """

    name = "log_cosh_loss"
    of_error = True
    gbdt_curvature = "irls"  # a concave function of e^2: see Loss.gbdt_curvature
    aliases = ("log_cosh",)

    def value(self, xp, z, y):
        a, small, t = _log_cosh_parts(xp, z - y)
        # log cosh e = log1p(cosh e - 1) below |e| = 1, |e| - log 2 + log1p(exp(-2|e|)) above: one
        # log1p of a value in [0, 1] either way. cosh e - 1 by its Taylor series (positive terms: no
        # cancellation; the series' length by dtype, see _COSH32), which costs less in the compiled
        # kernel than the two expm1 of 2 sinh(e/2)^2
        cosh_minus_one = _cosh_minus_one(xp, xp.where(small, a * a, xp.zeros_like(a)))
        u = xp.where(small, cosh_minus_one, t)
        return xp.where(small, xp.zeros_like(a), a - xp.constant(_LOG2)) + xp.log1p_unit(u)

    def value_in_arithmetic(self, xp, z, y):
        """:meth:`value` in arithmetic alone: no select, so that XLA's CPU backend hands a sum of it to
        YNNPACK whole (one read of the inputs, nothing written; a select makes XLA write the value out
        first). The log1p's argument and the offset are blended by ``step``, exactly 0 below ``|e| = 1``
        and exactly 1 from there on; each branch's term runs on ``|e|`` clamped to its side of 1, finite
        there, so the term not taken is multiplied by 0 and the sum is :meth:`value`'s, operation for
        operation."""
        a = xp.abs(z - y)
        one = xp.constant(1.0)
        below_one, from_one = xp.minimum(a, one), xp.maximum(a, one)
        # x = (1 - min(|e|, 1)) 2^60 is 0 from |e| = 1 on (step 1) and at least 2^7 below it (step 0:
        # 1 - |e| is at least 2^-53 there), at most 2^60 (no overflow); a min, not a clamp, which
        # YNNPACK does not take
        step = one - xp.minimum((one - below_one) * xp.constant(2.0 ** 60), one)
        square = below_one * below_one
        # cosh e - 1 as _cosh_minus_one's series, its chains started at their first coefficient (the
        # same numbers: 0 x + k is k for a finite x), four operations fewer for YNNPACK, which pays each
        series = _chains_from_first(xp, *(_COSH32 if xp.eps > 1e-10 else _COSH64), square)
        u = (square * series) * (one - step) + xp.exp(xp.constant(-2.0) * from_one) * step
        return (from_one - xp.constant(_LOG2)) * step + xp.log1p_unit(u)

    def derivative_in_xla(self, xp, z, y):
        """:meth:`derivative` as one ``tanh``, for XLA, whose ``tanh`` is within 2.2 (float32) and 3.5
        (float64) eps of mpmath from 1e-30 to 1e4 (measured; the bound is 8): one operation where the
        series and its divisions cost a third of the gradient's pass. The compiled kernels have no
        vectorised ``tanh``: they keep :meth:`derivative`."""
        return xp.tanh(z - y)

    def derivative(self, xp, z, y):
        e = z - y
        a, small, t = _log_cosh_parts(xp, e)
        # tanh|e| = sinh / cosh by the value's series below |e| = 1 (no cancellation for tiny e), and
        # (1 - t) / (1 + t) with the value's t = exp(-2|e|) above: no expm1 of its own
        square = xp.where(small, a * a, xp.zeros_like(a))
        one = xp.constant(1.0)
        below = a * _sinh_over_e(xp, square) / (one + _cosh_minus_one(xp, square))
        tanh = xp.where(small, below, (one - t) / (one + t))
        return xp.where(e < xp.constant(0.0), -tanh, tanh)

    def second_derivative(self, xp, z, y):
        t = xp.exp(-2 * xp.abs(z - y))  # 1 - tanh^2 = 4 t / (1 + t)^2: no cancellation for large |e|
        return 4 * t / ((1 + t) * (1 + t))


@formula_function
def _log_cosh_parts(xp, e):
    """``|e|``, ``|e| < 1`` and ``exp(-2|e|)`` (1 below |e| = 1: each branch sees only its own
    inputs), what log-cosh's value and derivative share (computed once in the compiled kernel)."""
    a = xp.abs(e)
    small = a < xp.constant(1.0)
    return a, small, xp.exp(xp.constant(-2.0) * xp.where(small, xp.ones_like(a), a))


_VALUES = """
    Shapes: ``predictions [N]`` (one value per example) or ``[..., D]`` (D values per example,
    averaged); ``target`` the same shape; ``weight`` per example. Returns ``[...]`` for ``"none"``,
    else 0-d.
"""

absolute_error = functional(AbsoluteError, "absolute_error", r"""Mean absolute error
    :math:`\mathrm{mean}_j |\hat y_j - y_j|` per example (see :class:`AbsoluteError`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.absolute_error(np.array([[1.0, -3.0]]), np.array([[0.0, 0.0]])))
    2.0
""")
huber_loss = functional(HuberLoss, "huber_loss", r"""Huber loss with threshold ``delta`` (see
    :class:`HuberLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.huber_loss(np.array([3.0]), np.array([0.0]), delta=2.0))
    4.0
""")
smooth_l1_loss = functional(SmoothL1Loss, "smooth_l1_loss", r"""Smooth L1 loss with threshold ``beta``
    (see :class:`SmoothL1Loss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.smooth_l1_loss(np.array([3.0]), np.array([0.0]), beta=2.0))
    2.0
""")
pseudo_huber_loss = functional(PseudoHuberLoss, "pseudo_huber_loss", r"""Pseudo-Huber loss with slope
    ``delta`` (see :class:`PseudoHuberLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.pseudo_huber_loss(np.array([3.0]), np.array([0.0]), delta=4.0)), 6)  # 16 (1.25 - 1)
    4.0
""")
log_cosh_loss = functional(LogCoshLoss, "log_cosh_loss", r"""Log-cosh loss :math:`\log\cosh(\hat y - y)`
    (see :class:`LogCoshLoss`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.log_cosh_loss(np.array([0.0]), np.array([0.0])))
    0.0
""")
