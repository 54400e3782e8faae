r"""Unit deviances of the Tweedie family (Poisson, Gamma, any power), on the log of the mean.

The input is :math:`\eta = \log\mu` (a log link: any real number is a valid prediction), so
``mean(loss)`` equals scikit-learn's ``mean_poisson_deviance`` / ``mean_gamma_deviance`` /
``mean_tweedie_deviance`` of ``(y, exp(input))``. With :math:`a = 1 - p`, :math:`b = 2 - p`:

.. math:: d_p(y, \mu) = 2\left(\frac{y^b}{ab} - \frac{y \mu^a}{a} + \frac{\mu^b}{b}\right)

(for p < 0, :math:`\max(y, 0)^b` in the first term, as scikit-learn's; p = 0 is the squared error
:math:`(y - \mu)^2`, so for y < 0 the value jumps at p = 0, as there)

(Poisson p = 1: :math:`2(y \log(y/\mu) - y + \mu)`; Gamma p = 2: :math:`2(\log(\mu/y) + y/\mu - 1)`).

Design note: near the optimum (:math:`\mu \approx y`) the three terms cancel to a value of order
:math:`t^2`, :math:`t = \eta - \log y = \log(\mu / y)`. With :math:`\varphi(x) = e^x - 1 - x` the
deviance is :math:`2 (y^b\varphi(b t)/b - y^b\varphi(a t)/a)` (a term is dropped when its denominator
is 0: the Poisson and Gamma limits), each :math:`y^b\varphi` computed without cancellation (a series on
-1 < x < 2; beyond, ``(mu^b - y^b) - y^b b t`` from the exponentials the gradient takes too, never
``e^(b t)`` itself, which overflows float32 at eta = 30, y = 1e-30, where the deviance is 2.1e13:
:func:`~losskit.losses._shared.scaled_exp_minus_linear`). For ``1 <= p <= 2`` both terms are positive,
so the sum is exact to a few eps at every t. Otherwise they have opposite signs and cancel (3x near t =
0 for p = 3), more than the three terms of the definition do beyond ``|t| = 1 / min(|a|, |b|)`` (1 for
p = 3, where the phi terms cancel 4.7x and the three terms as much; 7x against 1.7x at t = 2), so
those are summed there (and for ``y <= 0``). At p = 1.5 the two phi terms sum to :math:`8 \sqrt y
(\cosh h - 1)`, :math:`h = t / 2`: one even series, below |h| = 2; the three terms beyond.

Gradient :math:`2\mu^a(\mu - y) = 2(\mu^b - y\mu^a)` and Hessian :math:`2(b\mu^b - a y\mu^a)` in
:math:`\eta`. The gradient's difference cancels near the optimum (5e7 eps at y = 1, eta = 1e-8): for
``|t| < 0.75`` it is :math:`2 (y^b t + y^b\varphi(bt) - y^b\varphi(at))` from the value's phi terms for
``1 <= p <= 2`` (p = 1.5: :math:`4\sqrt y \sinh(t/2)` by a short series), and :math:`2 y\mu^a
\mathrm{expm1}(t)` for other powers (whose phi terms cancel), exact where ``log y`` is. ``y mu^a`` is
formed so that it is finite and normal wherever it is (``exp(a eta)`` alone overflows at eta = -100 in
float32 for Gamma, whose gradient at y = 1e-30 is -5.4e13, and underflows at eta = 67.6 for p = 3, y
= 1e30), and 0 at y = 0 (not ``0 * inf``). So the deviance and its gradient are finite wherever the
exact ones and ``y^b`` fit the dtype (``y^b`` scales every term: p = 0, y = 1e20 overflows float32).

What is not exact: near the optimum the deviance is ill-conditioned in y (relative condition
:math:`2/|t|`), and t carries the rounding of ``log y`` (half an ulp): the value there is off by up to
about :math:`|\log y| / |t|` eps (8.9 eps at y = 3, eta = 1 in float64; docs/losses.md), the gradient
likewise (it takes the direct form where ``|log y| >= 4``, whose cancellation is then the smaller
error). For a power whose ``a`` or ``b`` is not a power of two (p = 1.2, 1.8, 2.5, 4, ...), ``exp(a
eta)`` carries the rounding of the product ``a eta``: ``|a eta| / 2`` eps (140 eps at eta = 300, p =
1.2); scikit-learn's and the peers' formulas do the same.
"""

from __future__ import annotations

import math

from .. import _array, _checks
from ._shared import functional, polynomial, scaled_exp_minus_linear
from .declaration import LOG, Hessian
from .formula import formula_function
from .options import Options, TweedieOptions
from .robust import ValueLoss

#: the gradient's near form: |t| below 0.75, and |log y| below 4, where the rounding of log y costs it less
#: than the direct form's cancellation (about |log y| / 2 against 2 eps, relative to t)
_NEAR_GRADIENT, _NEAR_LOG_Y = 0.75, 4.0


@formula_function
def _pieces(xp, eta, y, power):
    """What the value, gradient and Hessian share (written once: the kernel computes each once):
    ``(positive, log y, t, y^b, mu^b, y mu^a)`` with ``t = eta - log y = log(mu / y)``; where y <= 0
    (p < 2 only: for p >= 2, y > 0 is checked), ``log y`` and ``y^b`` are those of 1."""
    c = xp.constant
    a, b = 1.0 - power, 2.0 - power
    positive = y > c(0.0)
    y_safe = y if power >= 2 else xp.where(positive, y, xp.ones_like(y))  # p >= 2: y > 0, checked
    log_y = xp.log(y_safe)
    y_b = (y_safe if b == 1 else xp.ones_like(y) if b == 0 else xp.sqrt(y_safe) if b == 0.5
           else xp.pow(y_safe, c(b)))
    return positive, log_y, eta - log_y, y_b, _mu_power(xp, eta, b), _y_mu_power(xp, y, eta, a, power < 2)


@formula_function
def _phis(xp, t, y_b, mu_b, y_mu_a, power):
    """``(y^b phi(b t), y^b phi(a t))`` (0 for a zero coefficient), from ``y^b e^(b t) = mu^b`` and
    ``y^b e^(a t) = y mu^a``: no exponential of their own, and no ``e^(b t)`` that could overflow
    (or be ``0 / 0`` where ``y^b`` underflows)."""
    c = xp.constant
    a, b = 1.0 - power, 2.0 - power
    phi_b = xp.zeros_like(t) if b == 0 else scaled_exp_minus_linear(xp, c(b) * t, y_b, mu_b)
    phi_a = xp.zeros_like(t) if a == 0 else scaled_exp_minus_linear(xp, c(a) * t, y_b, y_mu_a)
    return phi_b, phi_a


@formula_function
def tweedie_value(xp, eta, y, power):
    """Elementwise unit deviance of power ``power`` at ``eta = log(mu)`` (see the module note): for y > 0
    ``2 (y^b phi(b t)/b - y^b phi(a t)/a)``, and for a power outside [1, 2] beyond ``|t| = 1 / min(|a|,
    |b|)`` (and for y <= 0) the three terms. Both come from the exponentials that the gradient takes
    too; a branch of a power 0 or 1 folds away, so Poisson is one ``log`` and one ``exp``, Gamma the
    same."""
    c = xp.constant
    a, b = 1.0 - power, 2.0 - power
    positive, log_y, t, y_b, mu_b, y_mu_a = _pieces(xp, eta, y, power)
    if a == -b:  # p = 1.5
        return _past_the_dtype(xp, _tweedie_three_halves(xp, y, positive, t, mu_b, y_mu_a), eta, y, False)
    phi_b, phi_a = _phis(xp, t, y_b, mu_b, y_mu_a, power)
    near = xp.zeros_like(eta)
    if b != 0:
        near = near + phi_b / c(b)
    if a != 0:
        near = near - phi_a / c(a)
    near = c(2.0) * near
    if b == 0:  # Gamma: y > 0, one form
        return _past_the_dtype(xp, near, eta, y, False)
    # 2 (y^b / (ab) - y mu^a / a + mu^b / b), with the limit of a = 0; for y <= 0 (allowed for p < 2,
    # negative only for p <= 0) max(y, 0)^b = 0
    if a == 0:  # Poisson: 2 (y log(y / mu) - y + mu), here only for y = 0
        direct = c(2.0) * (mu_b - y * (c(1.0) + t))
    else:
        direct = c(2.0 / b) * mu_b - c(2.0 / a) * y_mu_a
        direct = direct + xp.where(positive, c(2.0 / (a * b)) * y_b, xp.zeros_like(y_b))
    if power == 0:  # the squared error (y - mu)^2: scikit-learn keeps the y^2 of a negative y too
        direct = direct + xp.where(positive, xp.zeros_like(y), y * y)
    # mu^b and y mu^a both past the dtype (inf - inf: NaN): a deviance >= 0 that overflows, inf
    overflow = (mu_b == xp.constant(math.inf)) & (y_mu_a == xp.constant(math.inf))
    direct = xp.where(overflow, xp.full_like(direct, math.inf), direct)
    # 1 <= p <= 2: the phi terms have one sign (a <= 0 <= b), one form for every t; otherwise they cancel
    # more than the three terms beyond |t| = 1 / min(|a|, |b|)
    same_sign = 1 <= power <= 2
    value = near if same_sign else xp.where(xp.abs(t) <= c(1.0 / min(abs(a), abs(b))), near, direct)
    value = value if power >= 2 else xp.where(positive, value, direct)
    return _past_the_dtype(xp, value, eta, y, True)


@formula_function
def _past_the_dtype(xp, value, eta, y, overflow):
    """``value`` with +inf where the target is +inf at a finite ``eta`` (a deviance of +inf, as Huber's and
    the absolute error's are), and, with ``overflow``, where it is NaN at a finite eta and target: finite
    inputs whose terms overflow the dtype (Poisson's mu^b - y t at eta = 3e38 in float32: inf - inf). A NaN
    target, or one outside the domain that no check read (JAX jit, Dask), keeps its NaN; so does an
    infinite eta (mu = 0 at eta = -inf is 0 * inf there, whose limit is not inf)."""
    inf = xp.constant(math.inf)
    finite = xp.abs(eta) < inf
    value = xp.where((y == inf) & finite, xp.full_like(value, math.inf), value)
    if overflow:
        value = xp.where((value != value) & finite & (xp.abs(y) < inf), xp.full_like(value, math.inf), value)
    return value


# cosh(h) - 1 = h^2 sum_k h^(2k) / (2k + 2)! on |h| < 2, in h^2 split in even and odd k; the first term
# left out, relative to the sum: below 6e-20 for float64 (to h^24) and 1.2e-9 for float32 (to h^14)
def _even_series(first, terms):
    coefficients = tuple(1.0 / math.factorial(2 * k + first) for k in range(terms))
    return coefficients[0::2][::-1], coefficients[1::2][::-1]


_COSH64, _COSH32 = _even_series(2, 12), _even_series(2, 7)


@formula_function
def tweedie_gradient(xp, eta, y, power):
    """``d / d eta = 2 mu^a (mu - y) = 2 (mu^b - y mu^a)``. Near the optimum (``|t| < 0.75``) that
    difference cancels; there it is ``2 y^b (e^(b t) - e^(a t)) = 2 (y^b t + y^b phi(b t) - y^b phi(a
    t))`` with the value's phi terms for 1 <= p <= 2 (p = 1.5: ``4 sqrt(y) sinh(t / 2)`` by its series),
    and ``2 y mu^a expm1(t) = 2 (y mu^a t + y mu^a phi(t))`` for other powers (whose phi terms would
    cancel): exact where ``log y`` is (y = 1), otherwise off by the rounding of ``log y`` relative to t
    (module note). Beyond 0.75 the difference cancels by less than 3x."""
    c = xp.constant
    a, b = 1.0 - power, 2.0 - power
    positive, log_y, t, y_b, mu_b, y_mu_a = _pieces(xp, eta, y, power)
    direct = c(2.0) * (mu_b - y_mu_a)
    # both past the dtype (inf - inf): the sign of mu - y, that of t, where XLA's rewrite gave -inf for +inf
    overflow = (mu_b == c(math.inf)) & (y_mu_a == c(math.inf))
    direct = xp.where(overflow, xp.where(t > c(0.0), xp.full_like(t, math.inf), xp.full_like(t, -math.inf)), direct)
    if a == -b:
        half = xp.where(xp.abs(t) < c(_NEAR_GRADIENT), t * c(0.5), xp.zeros_like(t))
        series = polynomial(xp, *_SINH32, half * half) if xp.eps > 1e-10 else polynomial(xp, *_SINH64, half * half)
        near = c(4.0) * y_b * (half * series)
    elif 1 <= power <= 2:
        phi_b, phi_a = _phis(xp, t, y_b, mu_b, y_mu_a, power)
        near = c(2.0) * ((y_b * t + phi_b) - phi_a)
    else:
        ts = xp.where(xp.abs(t) < c(_NEAR_GRADIENT), t, xp.zeros_like(t))
        near = c(2.0) * (y_mu_a * ts + scaled_exp_minus_linear(xp, ts, y_mu_a, mu_b))
    near = xp.where(xp.abs(log_y) < c(_NEAR_LOG_Y), near, direct)
    gradient = xp.where(xp.abs(t) < c(_NEAR_GRADIENT), near, direct)
    return gradient if power >= 2 else xp.where(positive, gradient, direct)


#: sinh(h) / h = sum_k h^(2k) / (2k + 1)! on |h| < 0.375 (|t| < 0.75), in h^2: the first term left out,
#: relative to the sum, below 2e-9 for float32 (to h^6) and 5e-18 for float64 (to h^12)
_SINH32, _SINH64 = _even_series(1, 4), _even_series(1, 7)


@formula_function
def tweedie_second_derivative(xp, eta, y, power):
    """``2 mu^a (b mu - a y) = 2 (b mu^b - a y mu^a)``, from the value's exponentials; Poisson's (a = 0)
    without the y term, which is 0 (and would be 0 * inf = NaN at a target of +inf)."""
    a, b = 1.0 - power, 2.0 - power
    c = xp.constant
    if a == 0:
        return c(2.0 * b) * _mu_power(xp, eta, b)
    first, second = c(2.0 * b) * _mu_power(xp, eta, b), c(2.0 * a) * _y_mu_power(xp, y, eta, a, power < 2)
    # both past the dtype (inf - inf, p <= 0 at a large eta or y): infinite, of the sign of b mu - a y (mu^a > 0)
    overflow = (xp.abs(first) == c(math.inf)) & (xp.abs(second) == c(math.inf))
    sign = c(b) * _mu_power(xp, eta, 1.0) - c(a) * y
    limit = xp.where(sign > c(0.0), xp.full_like(eta, math.inf), xp.full_like(eta, -math.inf))
    return xp.where(overflow, limit, first - second)


@formula_function
def _tweedie_three_halves(xp, y, positive, t, mu_b, y_mu_a):
    """The deviance of power 1.5 (a = -1/2, b = 1/2): ``8 sqrt(y) (cosh h - 1)``, ``h = t / 2``, the
    module note's form with its two phi terms summed (their odd terms cancel). Below |h| = 2 by the
    even series; above it (and for y = 0) the direct ``4 mu^b + 4 y mu^a - 8 sqrt(y)``, whose
    cancellation is then at most cosh 2 / (cosh 2 - 1) = 1.4: one log, one sqrt and the gradient's
    two exponentials, no division."""
    c = xp.constant
    h = xp.where(positive, t * c(0.5), xp.full_like(t, 4.0))  # y = 0: the direct form, exact there
    small = xp.abs(h) < c(2.0)
    hs = xp.where(small, h, xp.zeros_like(h))
    square = hs * hs
    # float32 takes the shorter series (a call per length: numba types the two tuples apart)
    series = polynomial(xp, *_COSH32, square) if xp.eps > 1e-10 else polynomial(xp, *_COSH64, square)
    root = xp.sqrt(y)
    direct = c(4.0) * (mu_b + y_mu_a) - c(8.0) * root
    return xp.where(small, c(8.0) * root * (series * square), direct)


@formula_function
def _mu_power(xp, eta, k):
    """``mu^k = exp(k eta)`` (1 for k = 0 without an exponential, which the kernel would otherwise
    compute: ``0 * eta`` is not folded to 0)."""
    return xp.ones_like(eta) if k == 0 else xp.exp(xp.constant(k) * eta)


@formula_function
def _y_mu_power(xp, y, eta, k, zero_target=True):
    """``y mu^k`` (``y`` itself for k = 0) where ``mu^k`` alone over- or underflows and the product
    does not: a tiny target against a large ``mu^a`` (``y = 1e-30``, ``eta = -100``, Gamma in float32:
    2.7e13), a huge one against a tiny ``mu^a`` (``y = 1e30``, ``eta = 67.6``, p = 3 in float32).
    Where ``|k eta|`` nears the dtype's ``log(max)`` it is ``(y e^(x/2)) e^(x/2)``, ``x = k eta``
    (halving is exact: one exponential either way), and 0 where ``y`` is 0 (``0 * inf`` would be
    NaN; ``zero_target`` False: no such y, p >= 2)."""
    if k == 0:
        return y
    c = xp.constant
    x = c(k) * eta
    big = xp.abs(x) > c(87.0 if xp.eps > 1e-10 else 708.0)
    half = xp.exp(xp.where(big, x * c(0.5), x))
    product = y * half
    product = xp.where(big, product * half, product)
    return xp.where(y == c(0.0), xp.zeros_like(product), product) if zero_target else product


class TweedieDeviance(ValueLoss):
    r"""Tweedie unit deviance of power ``p`` on the log-mean (``mean_tweedie_deviance(y, exp(input))``).

    Per value, with :math:`\mu = e^\eta`, :math:`a = 1 - p`, :math:`b = 2 - p`:
    :math:`2(y^b/(ab) - y\mu^a/a + \mu^b/b)` (:math:`\max(y, 0)^b` for p < 0; p = 0:
    :math:`(y - \mu)^2`); gradient :math:`2\mu^a(\mu - y)`, Hessian
    :math:`2\mu^a(b\mu - a y)`, averaged over the D values of an example.

    ``power`` p <= 0 or >= 1 (none in (0, 1): no such distribution). Target domain: any real for
    p <= 0, ``y >= 0`` for 1 <= p < 2, ``y > 0`` for p >= 2 (checked). Shapes as
    :class:`MeanSquaredError` (``predictions`` is the log-mean). Edges: finite wherever the exact
    deviance (and gradient) and :math:`y^b` fit the dtype; accurate near the optimum, to the rounding of
    ``log y`` (see the module note).

    >>> import numpy as np, losskit as lk
    >>> float(lk.tweedie_deviance(np.log(np.array([2.0])), np.array([2.0]), power=1.5))
    0.0
    """

    name = "tweedie_deviance"
    aliases = ("tweedie",)
    link = LOG
    # for every power the mean deviance's gradient in a constant eta, 2 mu^a (mu sum w - sum w y) / sum w, vanishes
    # at log of the weighted mean alone (mu^a > 0); a mean <= 0 has its infimum at mu -> 0, the link's floor
    mean_matching = True
    Options = TweedieOptions

    @property
    def hessian(self) -> Hessian:
        """``2 mu^a (b mu - a y)`` is >= 0 for 1 <= p <= 2 only: for p > 2 (b < 0) it is negative where
        ``mu > y (p - 1) / (p - 2)``, for p <= 0 (a, b > 0) where ``mu < y a / b``."""
        return Hessian.DIAGONAL if 1 <= self.power <= 2 else Hessian.INDEFINITE

    @property
    def gbdt_curvature(self) -> str:
        """Where the Hessian can be negative, "bounded" (see Loss.gbdt_curvature): floored alone, a leaf of
        such rows stepped by 10^4-10^5 margin units (LightGBM) or did not move (XGBoost's min_child_weight)."""
        return "weight" if self.hessian is Hessian.DIAGONAL else "bounded"

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
        return tweedie_gradient(xp, z, y, self.power)

    def second_derivative(self, xp, z, y):
        return tweedie_second_derivative(xp, z, y, self.power)

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
    mean_matching = True  # (as Tweedie's: the formula written anew)
    aliases = ("poisson",)
    target = "count"
    Options = Options
    power = 1.0
    gbdt_builtin = TweedieDeviance.gbdt_builtin  # Tweedie at this power: its built-in is this loss

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        ValueLoss.__init__(self, reduction=reduction, impl=impl)

    def value(self, xp, z, y):
        return tweedie_value(xp, z, y, 1.0)

    def derivative(self, xp, z, y):
        return tweedie_gradient(xp, z, y, 1.0)

    def second_derivative(self, xp, z, y):
        return tweedie_second_derivative(xp, z, y, 1.0)


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
    mean_matching = True  # (as Tweedie's: the formula written anew)
    aliases = ("gamma",)
    target = "positive"
    Options = Options
    power = 2.0
    gbdt_builtin = TweedieDeviance.gbdt_builtin  # Tweedie at this power: its built-in is this loss

    def __init__(self, *, reduction: str = "mean", impl: str = "auto"):
        ValueLoss.__init__(self, reduction=reduction, impl=impl)

    def value(self, xp, z, y):
        return tweedie_value(xp, z, y, 2.0)

    def derivative(self, xp, z, y):
        return tweedie_gradient(xp, z, y, 2.0)

    def second_derivative(self, xp, z, y):
        return tweedie_second_derivative(xp, z, y, 2.0)


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
