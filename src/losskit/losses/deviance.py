r"""Unit deviances of the Tweedie family (Poisson, Gamma, any power), on the log of the mean.

The input is :math:`\eta = \log\mu` (a log link: any real number is a valid prediction), so
``mean(loss)`` equals scikit-learn's ``mean_poisson_deviance`` / ``mean_gamma_deviance`` /
``mean_tweedie_deviance`` of ``(y, exp(input))``. With :math:`a = 1 - p`, :math:`b = 2 - p`:

.. math:: d_p(y, \mu) = 2\left(\frac{y^b}{ab} - \frac{y \mu^a}{a} + \frac{\mu^b}{b}\right)

(Poisson p = 1: :math:`2(y \log(y/\mu) - y + \mu)`; Gamma p = 2: :math:`2(\log(\mu/y) + y/\mu - 1)`).

Design note: near the optimum (:math:`\mu \approx y`) the three terms cancel to a value of order
:math:`(\log y - \eta)^2`. With :math:`d = \log y - \eta` and :math:`\varphi(x) = e^x - 1 - x` the
deviance is :math:`2 y^b (\varphi(-b d)/b - \varphi(-a d)/a)` (a term is dropped when its
denominator is 0: the Poisson and Gamma limits), and :math:`\varphi` is computed without
cancellation (a series on -1 < x < 2; beyond, from the exponentials the gradient takes too:
:func:`~losskit.losses._shared.exp_minus_linear`). For ``1 < p < 2`` both terms are positive, so
the sum is exact to a few eps; otherwise the cancellation is at most a factor ``max(2 - p, p - 1)``.
At p = 1.5 the two terms sum to :math:`8 \sqrt y (\cosh h - 1)`, :math:`h = d / 2`: one even series.
A zero (or, for p <= 0, negative) target uses the direct formula, which then has no cancellation.
Gradient :math:`2\mu^a(\mu - y)` and Hessian :math:`2\mu^a(b\mu - a y)` in :math:`\eta`.
"""

from __future__ import annotations

import math

from .. import _array, _checks
from ._shared import exp_minus_linear, functional, polynomial
from .declaration import LOG
from .formula import formula_function
from .options import Options, TweedieOptions
from .robust import ValueLoss


@formula_function
def tweedie_value(xp, eta, y, power):
    """Elementwise unit deviance of power ``power`` at ``eta = log(mu)`` (see the module note).

    ``e^(-b d) = mu^b / y^b`` and ``e^(-a d) = mu^a y / y^b`` come from the exponentials that the
    gradient ``2 (mu^b - y mu^a)`` takes too (the compiled kernel computes each once); a branch of a
    power 0 or 1 folds away, so Poisson is one ``log`` and one ``exp``, Gamma the same."""
    c = xp.constant
    a, b = 1.0 - power, 2.0 - power
    positive = y > c(0.0)
    y_safe = xp.where(positive, y, xp.ones_like(y))
    if a == -b:  # p = 1.5
        return _tweedie_three_halves(xp, eta, y, positive, y_safe)
    d = xp.log(y_safe) - eta
    y_b = xp.pow(y_safe, c(b))
    stable = xp.zeros_like(eta)
    if b != 0:
        stable = stable + exp_minus_linear(xp, c(-b) * d, _mu_power(xp, eta, b) / y_b) / c(b)
    if a != 0:
        stable = stable - exp_minus_linear(xp, c(-a) * d, _mu_power(xp, eta, a) * y_safe / y_b) / c(a)
    stable = c(2.0) * y_b * stable
    # y <= 0 (allowed for p < 2, and negative only for p <= 0): max(y, 0)^b = 0 and no cancellation
    direct = xp.zeros_like(eta)
    if b != 0:
        direct = direct + c(2.0 / b) * _mu_power(xp, eta, b)
    if a != 0 and b != 0:
        direct = direct - c(2.0 / a) * y * _mu_power(xp, eta, a)
    if power == 0:  # the squared error (y - mu)^2: scikit-learn keeps the y^2 of a negative y too
        direct = direct + y * y
    return xp.where(positive, stable, direct)


# cosh(h) - 1 = h^2 sum_k h^(2k) / (2k + 2)! on |h| < 2, in h^2 split in even and odd k; the first
# term left out, relative to the sum: below 6e-20 for float64 (to h^24) and 1.2e-9 for float32 (to h^14)
_COSH64 = tuple(1.0 / math.factorial(2 * k + 2) for k in range(12))
_COSH32 = tuple(1.0 / math.factorial(2 * k + 2) for k in range(7))
_COSH64 = (_COSH64[0::2][::-1], _COSH64[1::2][::-1])
_COSH32 = (_COSH32[0::2][::-1], _COSH32[1::2][::-1])


@formula_function
def _tweedie_three_halves(xp, eta, y, positive, y_safe):
    """The deviance of power 1.5 (a = -1/2, b = 1/2): ``8 sqrt(y) (cosh h - 1)``, ``h = (log y - eta)/2``,
    the module note's form with its two phi terms summed (their odd terms cancel). Below |h| = 2 by
    the even series; above it (and for y = 0) the direct ``4 mu^b + 4 y mu^a - 8 sqrt(y)``, whose
    cancellation is then at most cosh 2 / (cosh 2 - 1) = 1.4: one log, one sqrt and the gradient's
    two exponentials, no division."""
    c = xp.constant
    h = (xp.log(y_safe) - eta) * c(0.5)
    h = xp.where(positive, h, xp.full_like(h, 4.0))  # y = 0: the direct form, exact there
    small = xp.abs(h) < c(2.0)
    hs = xp.where(small, h, xp.zeros_like(h))
    square = hs * hs
    # float32 takes the shorter series (a call per length: numba types the two tuples apart)
    series = polynomial(xp, *_COSH32, square) if xp.eps > 1e-10 else polynomial(xp, *_COSH64, square)
    root = xp.sqrt(y)
    direct = c(4.0) * (_mu_power(xp, eta, 0.5) + y * _mu_power(xp, eta, -0.5)) - c(8.0) * root
    return xp.where(small, c(8.0) * root * (series * square), direct)


@formula_function
def _mu_power(xp, eta, k):
    """``mu^k = exp(k eta)`` (written once: the value's and the gradient's are then the same code)."""
    return xp.exp(xp.constant(k) * eta)


class TweedieDeviance(ValueLoss):
    r"""Tweedie unit deviance of power ``p`` on the log-mean (``mean_tweedie_deviance(y, exp(input))``).

    Per value, with :math:`\mu = e^\eta`, :math:`a = 1 - p`, :math:`b = 2 - p`:
    :math:`2(y^b/(ab) - y\mu^a/a + \mu^b/b)`; gradient :math:`2\mu^a(\mu - y)`, Hessian
    :math:`2\mu^a(b\mu - a y)`, averaged over the D values of an example.

    ``power`` p <= 0 or >= 1 (none in (0, 1): no such distribution). Target domain: any real for
    p <= 0, ``y >= 0`` for 1 <= p < 2, ``y > 0`` for p >= 2 (checked). Shapes as
    :class:`MeanSquaredError` (``predictions`` is the log-mean). Edges: finite for finite input
    until :math:`\mu^b` overflows; accurate near the optimum (see the module note).

    >>> import numpy as np, losskit as lk
    >>> float(lk.tweedie_deviance(np.log(np.array([2.0])), np.array([2.0]), power=1.5))
    0.0
    """

    name = "tweedie_deviance"
    aliases = ("tweedie",)
    link = LOG
    Options = TweedieOptions

    def __init__(self, *, power: float = 1.5, reduction: str = "mean", impl: str = "auto"):
        super().__init__(power=power, reduction=reduction, impl=impl)

    def check_target(self, xp, target):
        power = self.power
        if power >= 2:
            bad, expected = target <= 0, "positive values (y > 0)"
        elif power >= 1:
            bad, expected = target < 0, "non-negative values (y >= 0)"
        else:
            return
        if _array.concrete_bool(xp.any(bad)):
            raise _checks.fail("target", f"{expected} for {type(self).__name__} (power {power:g})",
                               f"a minimum of {float(xp.min(target)):.6g}")

    def target_domain(self) -> str:
        return "positive" if self.power >= 2 else "count" if self.power >= 1 else "value"

    def value(self, xp, z, y):
        return tweedie_value(xp, z, y, self.power)

    def derivative(self, xp, z, y):
        # 2 mu^a (mu - y) as 2 (mu^b - y mu^a): the value's two exponentials, no third
        return xp.constant(2.0) * (_mu_power(xp, z, 2.0 - self.power) - y * _mu_power(xp, z, 1.0 - self.power))

    def second_derivative(self, xp, z, y):
        return 2 * xp.exp((1.0 - self.power) * z) * ((2.0 - self.power) * xp.exp(z) - (1.0 - self.power) * y)

    def gbdt_builtin(self, library):
        if self.power == 1:
            return {"xgboost": ("count:poisson", {}), "lightgbm": ("poisson", {})}[library]
        if self.power == 2:
            return {"xgboost": ("reg:gamma", {}), "lightgbm": ("gamma", {})}[library]
        if 1 < self.power < 2:
            return {"xgboost": ("reg:tweedie", {"tweedie_variance_power": self.power}),
                    "lightgbm": ("tweedie", {"tweedie_variance_power": self.power})}[library]
        return None


class PoissonDeviance(TweedieDeviance):
    r"""Poisson deviance on the log-mean: :math:`2(y\log(y/\mu) - y + \mu)`, :math:`\mu = e^\eta`
    (``mean_poisson_deviance(y, exp(input))``; XGBoost ``count:poisson``).

    Gradient :math:`2(\mu - y)`, Hessian :math:`2\mu` (over D). Target ``y >= 0`` (checked).
    Shapes and edges as :class:`TweedieDeviance`.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.poisson_deviance(np.array([0.0]), np.array([0.0]))), 6)  # 2 mu at y = 0
    2.0
    """

    name = "poisson_deviance"
    aliases = ("poisson",)
    target = "count"
    Options = Options
    power = 1.0

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        ValueLoss.__init__(self, reduction=reduction, impl=impl)

    def value(self, xp, z, y):
        return tweedie_value(xp, z, y, 1.0)

    def derivative(self, xp, z, y):
        return xp.constant(2.0) * (_mu_power(xp, z, 1.0) - y)

    def second_derivative(self, xp, z, y):
        return 2 * xp.exp(z)


class GammaDeviance(TweedieDeviance):
    r"""Gamma deviance on the log-mean: :math:`2(\log(\mu/y) + y/\mu - 1)`, :math:`\mu = e^\eta`
    (``mean_gamma_deviance(y, exp(input))``; XGBoost ``reg:gamma``).

    Gradient :math:`2(1 - y/\mu)`, Hessian :math:`2 y/\mu` (over D). Target ``y > 0`` (checked).
    Shapes and edges as :class:`TweedieDeviance`.

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.gamma_deviance(np.array([0.0]), np.array([np.e]))), 6)  # 2 (e - 2)
    1.436564
    """

    name = "gamma_deviance"
    aliases = ("gamma",)
    target = "positive"
    Options = Options
    power = 2.0

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        ValueLoss.__init__(self, reduction=reduction, impl=impl)

    def value(self, xp, z, y):
        return tweedie_value(xp, z, y, 2.0)

    def derivative(self, xp, z, y):
        return xp.constant(2.0) * (xp.constant(1.0) - y * _mu_power(xp, z, -1.0))

    def second_derivative(self, xp, z, y):
        return 2 * y * xp.exp(-z)


_VALUES = """
    Shapes: ``predictions [N]`` (the log-mean, one value per example) or ``[..., D]`` (averaged);
    ``target`` the same shape; ``weight`` per example. Returns ``[...]`` for ``"none"``, else 0-d.
"""

poisson_deviance = functional(PoissonDeviance, "poisson_deviance", r"""Poisson deviance of ``y`` against
    ``mu = exp(predictions)`` (see :class:`PoissonDeviance`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.poisson_deviance(np.log(np.array([3.0])), np.array([3.0])))
    0.0
""")
gamma_deviance = functional(GammaDeviance, "gamma_deviance", r"""Gamma deviance of ``y`` against
    ``mu = exp(predictions)`` (see :class:`GammaDeviance`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> float(lk.gamma_deviance(np.log(np.array([3.0])), np.array([3.0])))
    0.0
""")
tweedie_deviance = functional(TweedieDeviance, "tweedie_deviance", r"""Tweedie deviance of power ``power``
    of ``y`` against ``mu = exp(predictions)`` (see :class:`TweedieDeviance`).
""" + _VALUES + """
    >>> import numpy as np, losskit as lk
    >>> round(float(lk.tweedie_deviance(np.array([0.0]), np.array([0.0]), power=1.5)), 6)  # 2 mu^0.5 / 0.5
    4.0
""")
