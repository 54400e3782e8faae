"""Pieces the catalogue's losses share: target checks and numerically careful helpers, the latter
usable in formulas (compiled too: :func:`~losskit.formula_function`)."""

from __future__ import annotations

import math

from .. import _checks
from ..plan import Target
from .formula import formula_function
from .registry import functional

__all__ = ["functional", "real_target", "unit_target", "times", "exp_minus_linear"]


def real_target(xp, input, target, input_name: str):
    """A real-valued target of the input's shape, in the working dtype, without NaN."""
    _checks.same_shape("target", target, input_name, tuple(input.shape))
    if not xp.isdtype(target.dtype, ("real floating", "integral", "bool")):
        raise _checks.fail("target", "a real-valued array", f"dtype {target.dtype}")
    target = xp.astype(target, input.dtype)
    _checks.no_nan(xp, target, "target")
    return target


def unit_target(xp, input, target, input_name: str) -> Target:
    """0/1 labels or probabilities of the input's shape (the binary losses' targets)."""
    target = real_target(xp, input, target, input_name)
    _checks.in_unit_interval(xp, target, "target")
    return Target(dense=target)


@formula_function
def times(xp, coef, value):
    """``coef * value`` with 0 where ``coef`` is 0: an exact ``0 * inf`` limit, not NaN."""
    return coef * xp.where(coef == 0, xp.zeros_like(value), value)


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
