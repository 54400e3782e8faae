"""Pieces the catalogue's losses share: the function form, and numerically careful helpers usable in
formulas (compiled too: :func:`~losskit.formula_function`)."""

from __future__ import annotations

import math

from .formula import formula_function
from .registry import functional

__all__ = ["functional", "times", "scaled_exp_minus_linear", "scaled_exp_moment", "scaled_expm1", "centred_kl",
           "centred_kl_terms", "logit_gap", "polynomial", "log_one_plus"]


@formula_function
def times(xp, coef, value):
    """``coef * value`` with 0 where ``coef`` is 0 and ``value`` infinite: an exact ``0 * inf`` limit,
    not NaN. A finite value is kept where ``coef`` is 0, so that autodiff gives d/d coef = value
    there (the true cotangent of a 0/1 target, not a silent 0). Nested ``where`` rather than
    ``&``/``~``: in a compiled formula these are integer operators on a bool."""
    return coef * xp.where(xp.isfinite(value), value, xp.where(coef == 0, xp.zeros_like(value), value))


@formula_function
def polynomial(xp, even, odd, x):
    """``E(x^2) + x O(x^2)``, the coefficients of ``E`` and ``O`` in Horner order (highest first), in
    the working dtype: two chains of half the length (the kernel's loop overlaps them), each a loop
    over at most 12 constants that LLVM unrolls (one of 23 it left as a loop, which kept the whole
    kernel from vectorising: 20x slower)."""
    square = x * x
    e = xp.zeros_like(x)
    for k in even:
        e = e * square + xp.constant(k)
    o = xp.zeros_like(x)
    for k in odd:
        o = o * square + xp.constant(k)
    return e + x * o


def _phi_series(degree):
    """phi(x) / x^2 = sum_m x^m / (m + 2)! to x^degree / degree!, split in even and odd m."""
    terms = [1.0 / math.factorial(m + 2) for m in range(degree - 1)]
    return tuple(terms[0::2][::-1]), tuple(terms[1::2][::-1])


# on -1 < x < 2 the first term left out, relative to phi: below 2.3e-18 for float64 (to x^24) and
# 5.7e-9 for float32 (to x^14)
_PHI64, _PHI32 = _phi_series(24), _phi_series(14)


def _psi_series(degree):
    """psi(x) / x^2 = sum_m (m + 1) x^m / (m + 2)! to x^degree, split in even and odd m."""
    terms = [(m + 1) / math.factorial(m + 2) for m in range(degree - 1)]
    return tuple(terms[0::2][::-1]), tuple(terms[1::2][::-1])


# on -1 < x < 2 the first term left out, relative to psi: below 1.2e-17 for float64 and 4.3e-8 for float32
_PSI64, _PSI32 = _psi_series(24), _psi_series(14)


#: distillation's gradient, on the compiled rows and losskit.jax, of a row whose KL (not times T^2) is below this
#: is ``-T p expm1(u - w)`` from its centred sums; above, ``T (p - q)``, whose error relative to the row's
#: largest entry grows as the KL shrinks: at T = 2, rows of 16 logits of scale 3, 80-248 eps at KL 3e-5 to
#: 3e-4, 12-20 eps at KL 0.004 to 0.07, 2.4-8 at KL 0.02 to 0.5 (``python -m benchmarks.distillation_accuracy``,
#: BENCHMARKS.md; below it the exact form is within 5 eps). The exact
#: form for every near row (KL < 1) cost 20 % of a call on NumPy and 70 % on losskit.jax with teachers
#: independent of the student (KL near 1), which need it not (``python -m benchmarks.distillation_rows``).
EXACT_GRADIENT_BELOW = 2.0 ** -4


@formula_function
def scaled_exp_minus_linear(xp, x, scale, scaled_exp_x):
    """``scale * phi(x)``, ``phi(x) = e^x - 1 - x`` (>= 0), given ``scaled_exp_x = scale e^x`` as the caller
    has it (a few ulps: a product of exponentials it computes anyway), to a few eps over the whole line;
    ``e^x`` itself is never formed, as it may overflow (or be ``0 / 0``) where the product is finite: a
    deviance's ``y^b e^(b t) = mu^b``.

    ``e^x - 1 - x`` cancels for small |x| (phi ~ x^2 / 2): on -1 < x < 2 a Taylor series is used
    instead (to x^24, or x^14 for float32; for x < 0 its alternating terms cost at most a factor 2
    of rounding). Outside, ``(scale e^x - scale) - scale x``: phi >= e^-1 there and an error of ``u`` ulps
    in ``scaled_exp_x`` costs at most about ``1.7 u`` eps (``e^x / phi(x)`` peaks at 1.7, at x = 2). One
    ``where``, no exponential of its own: the compiled kernel computes both sides (SIMD), and the series
    costs less than an ``expm1``."""
    c = xp.constant
    small = xp.abs(x - c(0.5)) < c(1.5)
    xs = xp.where(small, x, xp.zeros_like(x))  # the series' branch never sees a large x
    # float32 takes the shorter series (a call per length: numba types the two tuples apart)
    series = polynomial(xp, *_PHI32, xs) if xp.eps > 1e-10 else polynomial(xp, *_PHI64, xs)
    return xp.where(small, scale * (series * (xs * xs)), (scaled_exp_x - scale) - scale * x)


@formula_function
def scaled_exp_moment(xp, x, scale, scaled_exp_x):
    """``scale * psi(x)``, ``psi(x) = 1 + (x - 1) e^x = integral_0^x t e^t dt`` (>= 0), given ``scaled_exp_x =
    scale e^x`` (:func:`scaled_exp_minus_linear`'s contract: ``e^x`` is never formed).

    ``psi ~ x^2 / 2`` cancels for small |x|: on -1 < x < 2 a Taylor series (to x^24, float32 x^14).
    Outside, ``scale + (x - 1) scale e^x``: for x >= 2 both terms are positive; for x <= -1 the two
    terms cancel by at most 1 / psi(-1) = 3.8 (psi(-1) = 1 - 2/e), a few eps."""
    c = xp.constant
    small = xp.abs(x - c(0.5)) < c(1.5)
    xs = xp.where(small, x, xp.zeros_like(x))
    series = polynomial(xp, *_PSI32, xs) if xp.eps > 1e-10 else polynomial(xp, *_PSI64, xs)
    return xp.where(small, scale * (series * (xs * xs)), scale + (x - c(1.0)) * scaled_exp_x)


@formula_function
def scaled_expm1(xp, x, scale, scaled_exp_x):
    """``scale * (e^x - 1)`` given ``scaled_exp_x = scale e^x`` (:func:`scaled_exp_minus_linear`'s contract):
    ``scale * expm1(x)`` below x = 1, exact to an ulp or two; above, ``scaled_exp_x - scale``, which
    cancels by at most e / (e - 1) there and is finite where ``e^x`` overflows and ``scale`` has
    underflowed (a class far below the student's max that the teacher gives mass: 0 * inf, not NaN)."""
    one = xp.constant(1.0)
    return xp.where(x < one, scale * xp.expm1(xp.minimum(x, one)), scaled_exp_x - scale)


@formula_function
def centred_kl_terms(xp, u, p, scaled_exp_u, support):
    """A class's terms of :func:`centred_kl`'s two sums, ``(p (e^u - 1), p psi(u))``
    (:func:`scaled_expm1`, :func:`scaled_exp_moment`), given ``scaled_exp_u = p e^u``; where ``support``
    is false (a class the teacher rules out: ``e^u = 0``) their limits ``(-p, p)``."""
    return (xp.where(support, scaled_expm1(xp, u, p, scaled_exp_u), -p),
            xp.where(support, scaled_exp_moment(xp, u, p, scaled_exp_u), p))


@formula_function
def centred_kl(xp, w, b):
    r"""``KL(q || p)`` from a row's centred sum. With ``u = log q - log p`` up to a constant ``c`` (``u = d -
    c``, ``d`` the logits' difference), ``w = log sum_k p_k e^(u_k)`` and ``b = sum_k p_k psi(u_k)``
    (:func:`scaled_exp_moment`, every term >= 0)::

        KL(q || p) = e^(-w) (b - psi(w))

    as ``q_k = p_k e^(u_k - w)`` and ``sum_k p_k u_k e^(u_k) = e^w (w + KL)``, so ``b = 1 + e^w (w + KL -
    1)`` (``psi(u) = 1 + (u - 1) e^u``), exactly for any ``c``. With ``c`` the teacher's mean of ``d``,
    ``w = -KL`` and ``b = 1 - e^(-KL)``: ``b - psi(w)`` cancels by at most ``(e^KL - 1) / KL`` (1.72 below
    KL = 1, 1 as KL tends to 0), and no two log-normalisers are subtracted, where ``sum q (log q - log
    p)`` keeps only the accuracy of their difference (134 eps in float64 on the precision grid). The
    value moves with ``w`` as ``-(w + KL)``, 0 at the teacher's mean, so ``w``'s error counts squared:
    still too much when ``w`` comes from the normalisers' logs (10.9 eps of float32 at KL = 1e-11), so
    the callers sum ``w = log1p(sum p (e^u - 1))`` (:func:`scaled_expm1`) with ``b``, from the same
    ``u``; ``c`` itself may be rounded."""
    return xp.exp(-w) * (b - scaled_exp_moment(xp, w, xp.ones_like(w), xp.exp(w)))


@formula_function
def logit_gap(xp, t, z, max_t, max_z):
    """``(t - max_t) - (z - max_z)``, two rows' logits each shifted by its own max, with the grouping that
    rounds less: ``(t - z) - (max_t - max_z)`` where the rows are near each other (``t - z`` is then
    exact), the shifted logits' difference where they are far apart in level but not in shape (the
    shifts are then exact). Each rounds by an eps of its two terms' magnitudes: the smaller sum wins."""
    shifted_t, shifted_z = t - max_t, z - max_z
    apart, level = t - z, max_t - max_z
    near = xp.abs(apart) + xp.abs(level) < xp.abs(shifted_t) + xp.abs(shifted_z)
    return xp.where(near, apart - level, shifted_t - shifted_z)


@formula_function
def log_one_plus(xp, a):
    """``log(1 + a)`` for ``a > -1`` to about an ulp, as ``log1p`` gives it, but ``log(1 + a)`` below ``a =
    -1/4``: there the sum rounds by at most an ulp of 1/2 and the log is at least 0.29 in magnitude (1.5
    eps at worst), and XLA's float64 ``log1p`` on CPU (jax 0.10.2) is up to 120 eps off for ``a`` in
    [-0.4142, -0.3645]."""
    low = a < xp.constant(-0.25)
    return xp.where(low, xp.log(xp.where(low, a, xp.zeros_like(a)) + xp.constant(1.0)),
                    xp.log1p(xp.where(low, xp.zeros_like(a), a)))
