"""Pieces the catalogue's losses share: the function form, and numerically careful helpers usable in
formulas (compiled too: :func:`~losskit.formula_function`)."""

from __future__ import annotations

import math

from .formula import formula_function
from .registry import functional

__all__ = ["functional", "times", "exp_minus_linear"]


@formula_function
def times(xp, coef, value):
    """``coef * value`` with 0 where ``coef`` is 0 and ``value`` infinite: an exact ``0 * inf`` limit,
    not NaN. A finite value is kept where ``coef`` is 0, so that autodiff gives d/d coef = value
    there (the true cotangent of a 0/1 target, not a silent 0). Nested ``where`` rather than
    ``&``/``~``: in a compiled formula these are integer operators on a bool."""
    return coef * xp.where(xp.isfinite(value), value, xp.where(coef == 0, xp.zeros_like(value), value))


# Taylor coefficients of phi(x) = e^x - 1 - x from x^11 / 11! down to x^2 / 2! (Horner order)
_PHI_SERIES = tuple(1.0 / math.factorial(n) for n in range(11, 1, -1))


@formula_function
def exp_minus_linear(xp, x):
    """``phi(x) = e^x - 1 - x`` (>= 0), to a few eps over the whole line.

    ``expm1(x) - x`` cancels for small |x| (phi ~ x^2 / 2): below |x| = 0.1 a Taylor series to
    x^11 is used instead (truncation < 1e-18 relative); above, the cancellation costs at most
    2 eps / |x| <= 20 eps."""
    small = xp.abs(x) < 0.1
    xs = xp.where(small, x, xp.zeros_like(x))  # the series' branch never sees a large x
    series = xp.zeros_like(x)
    for c in _PHI_SERIES:
        series = (series + c) * xs
    series = series * xs
    xl = xp.where(small, xp.ones_like(x), x)  # nor the other branch a small one
    return xp.where(small, series, xp.expm1(xl) - xl)
