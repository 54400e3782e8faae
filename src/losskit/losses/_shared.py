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


# phi(x) / x^2 = sum_m x^m / (m + 2)! to m = 22 (x^24 / 24!), as E(x^2) + x O(x^2) with the even
# and the odd terms apart (Horner order): two chains of 12 and 11 steps, each a loop LLVM unrolls
# (one of 23 it left as a loop, which kept the kernel from vectorising: 20x slower)
_PHI_EVEN = tuple(1.0 / math.factorial(2 * j + 2) for j in range(11, -1, -1))
_PHI_ODD = tuple(1.0 / math.factorial(2 * j + 3) for j in range(10, -1, -1))


@formula_function
def exp_minus_linear(xp, x, exp_x):
    """``phi(x) = e^x - 1 - x`` (>= 0) given ``exp_x``, ``e^x`` as the caller has it (a few ulps: a
    quotient or product of exponentials it computes anyway), to a few eps over the whole line.

    ``exp_x - 1 - x`` cancels for small |x| (phi ~ x^2 / 2): on -1 < x < 2 a Taylor series to x^24
    is used instead (the first term left out is below 2.3e-18 of phi there; for x < 0 its
    alternating terms cost at most a factor 2 of rounding). Outside, phi >= e^-1 and an error of
    ``u`` ulps in ``exp_x`` costs at most about ``1.7 u`` eps (``e^x / phi(x)`` peaks at 1.7, at
    x = 2). One ``where``, no exponential of its own: the compiled kernel computes both sides (SIMD),
    and the series costs less than an ``expm1``."""
    c = xp.constant
    small = xp.abs(x - c(0.5)) < c(1.5)
    xs = xp.where(small, x, xp.zeros_like(x))  # the series' branch never sees a large x
    square = xs * xs
    even = xp.zeros_like(x)
    for k in _PHI_EVEN:
        even = even * square + c(k)
    odd = xp.zeros_like(x)
    for k in _PHI_ODD:
        odd = odd * square + c(k)
    return xp.where(small, (even + xs * odd) * square, (exp_x - c(1.0)) - x)
