r"""Vectorisable ``exp``, ``log``, ``log1p``, ``expm1`` and ``pow`` for the compiled kernels, in float32 and float64.

``math.exp``, ``math.log`` and their kin compile to calls into libm, which LLVM cannot vectorise without
Intel's SVML, and PyPI's llvmlite has none. These are written in plain arithmetic that LLVM turns
into SIMD code, each in the dtype it is called with (a float32 loop stays float32).

``vexp(x)``: range reduction :math:`x = n \ln 2 + r`, :math:`n = \lfloor x \log_2 e + 1/2 \rfloor`,
:math:`|r| \le \ln 2 / 2`, with :math:`\ln 2` split in a high part (exact product with n) and a low
part (Cody and Waite); :math:`e^r` by its Taylor polynomial, degree 7 for float32 (truncation
:math:`(\ln 2/2)^8 / 8! < 5.2 \cdot 10^{-9}`) and 13 for float64 (:math:`< 4.2 \cdot 10^{-18}`);
:math:`2^n` built from exponent bits, as two normal factors where the result is subnormal (so
subnormal results are rounded once, not flushed); x is clamped to where the result is 0 or inf.

``vlog1p_unit(u)`` for :math:`u \in [0, 1]` (what the sigmoid losses need, ``u = e^{-|z|}``):
:math:`\log(1 + u) = 2\,\mathrm{atanh}(s)`, :math:`s = u / (2 + u) \in [0, 1/3]`, by the odd
series :math:`2 \sum_k s^{2k+1} / (2k + 1)`; 9 terms for float32 (truncation
:math:`< 3 \cdot 10^{-9}` relative) and 18 for float64 (:math:`< 2 \cdot 10^{-18}`). ``s`` has no
cancellation, so tiny ``u`` keeps full relative precision.

``vlog(x)``, ``vlog1p(x)``, ``vexpm1(x)`` and ``vpow(x, y)`` replace ``math.log``, ``math.log1p``,
``math.expm1`` and ``**`` in the formula kernels (:mod:`losskit.fused.formula`), each with the same
edges (0, infinities, NaN, negative arguments) as the ``math`` function: exponent-bit range reduction
and a series, no table, no data-dependent branch or loop. Their methods and truncation bounds are in
their docstrings and beside their constants; largest error measured over each whole domain
(tests/test_vmath.py and ``python benchmarks/accuracy.py --vmath``, a grid): ``vlog`` 1.03 ulp, ``vlog1p``
1.29, ``vexpm1`` 1.13, ``vpow`` 0.5 (float32, computed in float64) and 1.7 / 2.1 / 4.2 ulp (float64,
exponents up to 2 / 8 / 30 in magnitude; the tests hold it to 2.5 / 3.5 / 9 on other points). Random
samples of about a million points found more (docs/losses.md: float64 ``vexpm1`` 1.82, ``vlog`` 1.16,
``vpow`` 2.9 / 5.9 / 21.8, its product ``y * t`` not compensated).

``row_max(row)``, the largest value of a row, as an integer max over the values' bits: LLVM does not
vectorise a float max reduction under the kernels' flags (it would need ``nnan``), and the scalar
loop was most of a softmax CE call (4096 x 32000 float32: 77 ms of 135; as integers 17-23 ms, the
memory's speed).

Compiled with contraction into fused multiply-adds allowed (Horner steps become FMAs) and no
other fast-math flag, and marked for LLVM to inline them (``forceinline``: a call left in a loop
stops it from vectorising). Measured against 50-digit mpmath over their whole domains: ``python benchmarks/accuracy.py``
(figures in docs/losses.md). The compiled code of each kernel is cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["row_max", "row_max_but", "vexp", "vexpm1", "vlog", "vlog1p", "vlog1p_unit", "vpow"]


@intrinsic
def _float32_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _float64_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_of(typingctx, x):
    """The bits of a float32 (float64) as an int32 (int64)."""
    width = {types.float32: 32, types.float64: 64}.get(x)
    if width is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(width))

    return (types.int32 if width == 32 else types.int64)(x), codegen


@intrinsic
def _float_of(typingctx, bits):
    """The float32 (float64) whose bits are an int32 (int64)."""
    target = {types.int32: (types.float32, ir.FloatType()), types.int64: (types.float64, ir.DoubleType())}.get(bits)
    if target is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], target[1])

    return target[0](bits), codegen


#: how each function here is compiled: contraction into FMAs only, and LLVM told to inline it into
#: the caller (a call left in a loop stops it vectorising; numba's own ``inline="always"`` works on
#: its IR, and a loop so inlined was measured not to vectorise)
_INLINE = {"fastmath": {"contract"}, "forceinline": True, "error_model": "numpy"}


def _taylor(dtype, degree):
    return tuple(dtype(1.0 / math.factorial(k)) for k in range(degree + 1))


def _atanh_series(dtype, terms):
    return tuple(dtype(2.0 / (2 * k + 1)) for k in range(terms))


# float32 constants (typed, so a float32 loop never widens to float64)
_E32 = _taylor(np.float32, 7)
_LOG2E32 = np.float32(1.4426950408889634)
_LN2HI32 = np.float32(0.693145751953125)  # 12 significant bits: n * _LN2HI32 is exact for |n| < 2^12
_LN2LO32 = np.float32(1.4286067653302226e-06)
_LOW32 = np.float32(-104.0)  # below log(smallest subnormal / 2) = -103.97: exp rounds to 0
_HIGH32 = np.float32(88.8)  # above log(max) = 88.72: exp is inf; n stays <= 128
_SPLIT32 = np.int32(64)
_HALF32, _ZERO32, _ONE32, _TWO32 = np.float32(0.5), np.float32(0.0), np.float32(1.0), np.float32(2.0)
_L32 = _atanh_series(np.float32, 9)

# float64 constants
_E64 = _taylor(np.float64, 13)
_LOG2E64 = 1.4426950408889634
_LN2HI64 = 0.6931471803691238  # 33 significant bits: n * _LN2HI64 is exact for |n| < 2^20
_LN2LO64 = 1.9082149292705877e-10
_LOW64 = -746.0  # below log(smallest subnormal / 2) = -745.13
_HIGH64 = 709.9  # above log(max) = 709.78; n stays <= 1024
_SPLIT64 = np.int64(64)
_L64 = _atanh_series(np.float64, 18)


def vexp(x):
    """``exp(x)`` for a float32 or float64 scalar inside a compiled kernel (see the module note)."""
    return math.exp(x)


def vlog1p_unit(u):
    """``log1p(u)`` for ``u`` in [0, 1] inside a compiled kernel (see the module note)."""
    return math.log1p(u)


@overload(vexp, jit_options=_INLINE)
def _vexp(x):
    if x == types.float32:
        def exp32(x):
            low = x < _LOW32
            x = min(max(x, _LOW32), _HIGH32)  # keeps n in int32 range; out of it: 0 or inf below
            n = np.floor(x * _LOG2E32 + _HALF32)  # np.floor stays float32 (math.floor gives int64)
            r = (x - n * _LN2HI32) - n * _LN2LO32
            p = _E32[7]
            p = p * r + _E32[6]
            p = p * r + _E32[5]
            p = p * r + _E32[4]
            p = p * r + _E32[3]
            p = p * r + _E32[2]
            p = p * r + _E32[1]
            p = p * r + _E32[0]
            # 2^n = 2^(n + k) 2^-k from exponent bits, both normal: k = 64 for a subnormal result,
            # -1 for n = 128 (a result just below the largest float)
            k = _SPLIT32 if n < -125 else (np.int32(-1) if n > 127 else np.int32(0))
            two_n = _float32_from_bits((np.int32(n) + k + np.int32(127)) << np.int32(23))
            two_k = _float32_from_bits((np.int32(127) - k) << np.int32(23))
            return _ZERO32 if low else (p * two_n) * two_k
        return exp32
    if x == types.float64:
        def exp64(x):
            low = x < _LOW64
            x = min(max(x, _LOW64), _HIGH64)
            n = np.floor(x * _LOG2E64 + 0.5)
            r = (x - n * _LN2HI64) - n * _LN2LO64
            p = _E64[13]
            p = p * r + _E64[12]
            p = p * r + _E64[11]
            p = p * r + _E64[10]
            p = p * r + _E64[9]
            p = p * r + _E64[8]
            p = p * r + _E64[7]
            p = p * r + _E64[6]
            p = p * r + _E64[5]
            p = p * r + _E64[4]
            p = p * r + _E64[3]
            p = p * r + _E64[2]
            p = p * r + _E64[1]
            p = p * r + _E64[0]
            k = _SPLIT64 if n < -1021 else (np.int64(-1) if n > 1023 else np.int64(0))
            two_n = _float64_from_bits((np.int64(n) + k + np.int64(1023)) << np.int64(52))
            two_k = _float64_from_bits((np.int64(1023) - k) << np.int64(52))
            return 0.0 if low else (p * two_n) * two_k
        return exp64
    return None


@overload(vlog1p_unit, jit_options=_INLINE)
def _vlog1p_unit(u):
    if u == types.float32:
        def log1p32(u):
            s = u / (_TWO32 + u)  # in [0, 1/3]: no cancellation
            s2 = s * s
            p = _L32[8]
            p = p * s2 + _L32[7]
            p = p * s2 + _L32[6]
            p = p * s2 + _L32[5]
            p = p * s2 + _L32[4]
            p = p * s2 + _L32[3]
            p = p * s2 + _L32[2]
            p = p * s2 + _L32[1]
            p = p * s2 + _L32[0]
            return s * p
        return log1p32
    if u == types.float64:
        def log1p64(u):
            s = u / (2.0 + u)
            s2 = s * s
            p = _L64[17]
            for k in range(16, -1, -1):  # unrolled by LLVM: a constant trip count
                p = p * s2 + _L64[k]
            return s * p
        return log1p64
    return None


# -- log, log1p, expm1 and pow --------------------------------------------------------------------
# One implementation per function, built for each dtype from that dtype's constants (a closure
# numba freezes), so a float32 loop computes in float32 (pow excepted: see vpow).


class _Format:
    """The constants of one floating-point format that the functions below need."""

    def __init__(self, float_type, int_type, mantissa_bits, log_terms, expm1_degree, expm1_low, expm1_high):
        f, i = float_type, int_type
        self.f, self.i = f, i
        self.mantissa_bits = i(mantissa_bits)
        self.bias = i((1 << (8 * np.dtype(f).itemsize - mantissa_bits - 2)) - 1)
        self.mantissa_mask = i((1 << mantissa_bits) - 1)
        self.one_bits = i(int(self.bias) << mantissa_bits)
        self.tiny = f(np.finfo(f).tiny)
        self.subnormal_shift = i(mantissa_bits + 2)  # x * 2^shift is normal for every subnormal x
        self.subnormal_scale = f(2.0 ** (mantissa_bits + 2))
        self.sqrt2 = f(math.sqrt(2.0))
        # 2 atanh(s) = 2s + s R(s^2), R = sum_k 2 s^(2k) / (2k + 1), k = 1..log_terms (Horner order)
        self.log_series = tuple(f(2.0 / (2 * k + 1)) for k in range(log_terms, 0, -1))
        # expm1(r) = r + r^2 P(r), P = sum_k r^(k-2) / k!, k = 2..degree (Horner order)
        self.expm1_series = tuple(f(1.0 / math.factorial(k)) for k in range(expm1_degree, 1, -1))
        self.expm1_low, self.expm1_high = f(expm1_low), f(expm1_high)
        self.zero, self.half, self.one, self.two = f(0.0), f(0.5), f(1.0), f(2.0)
        self.inf, self.nan = f(np.inf), f(np.nan)


# Truncation. log: |s| <= (sqrt 2 - 1) / (sqrt 2 + 1) < 0.1716, s^2 < 0.02944; the first term left out of
# s R, 2 s^(2K+3) / (2K + 3), relative to |log(1 + f)| = |2 atanh s| >= |2 s|, is below
# 0.02944^(K+1) / (2K + 3): 5.0e-11 for float32 (K = 5) and 1.7e-20 for float64 (K = 11).
# expm1: |r| <= ln 2 / 2 < 0.3466; the first term left out, r^(D+1) / (D+1)!, relative to
# |expm1 r| >= 0.82 |r|, is below 7.0e-10 for float32 (D = 8) and 3.3e-19 for float64 (D = 14).
# Outside [low, high] expm1 rounds to -1 (low) or to exp's own rounding (high).
_F32 = _Format(np.float32, np.int32, 23, log_terms=5, expm1_degree=8, expm1_low=-30.0, expm1_high=20.0)
_F64 = _Format(np.float64, np.int64, 52, log_terms=11, expm1_degree=14, expm1_low=-60.0, expm1_high=40.0)


def _format(x):
    if x == types.float32:
        return _F32
    if x == types.float64:
        return _F64
    return None


def vlog(x):
    """``log(x)`` for a float32 or float64 scalar inside a compiled kernel (see :func:`_vlog`)."""
    return math.log(x)


def vlog1p(x):
    """``log(1 + x)`` for a float32 or float64 scalar inside a compiled kernel (see :func:`_vlog1p`)."""
    return math.log1p(x)


def vexpm1(x):
    """``exp(x) - 1`` for a float32 or float64 scalar inside a compiled kernel (see :func:`_vexpm1`)."""
    return math.expm1(x)


def vpow(x, y):
    """``x ** y`` for float32 or float64 scalars inside a compiled kernel (see :func:`_vpow`)."""
    return x ** y


def _log_kernel(F):
    """``(e, f)`` with ``x = 2^e (1 + f)``, ``1 + f`` in [sqrt(1/2), sqrt(2)), for a positive finite x
    (subnormals included), and ``log(1 + f)`` by fdlibm's arrangement of the atanh series:
    ``f - (f^2/2 - s (f^2/2 + R))``, ``s = f / (2 + f)``, whose rounding errors stay below 1 ulp."""
    f, i = F.f, F.i
    tiny, scale, shift, sqrt2 = F.tiny, F.subnormal_scale, F.subnormal_shift, F.sqrt2
    mant, mask, one_bits, bias = F.mantissa_bits, F.mantissa_mask, F.one_bits, F.bias
    series, half, one, two, zero = F.log_series, F.half, F.one, F.two, F.zero

    @numba.njit(**_INLINE)
    def split(x):
        sub = x < tiny
        xs = x * scale if sub else x  # exact: a subnormal x becomes normal
        bits = _bits_of(xs)
        e = i((bits >> mant) - bias - (shift if sub else i(0)))  # i(): numba widens int32 arithmetic to int64
        m = _float_of(i((bits & mask) | one_bits))  # the mantissa in [1, 2)
        big = m > sqrt2
        m = m * half if big else m  # exact
        e = e + i(1) if big else e
        return f(e), m - one  # m - 1 exact (Sterbenz)

    @numba.njit(**_INLINE)
    def log1p_reduced(g):
        s = g / (two + g)
        z = s * s
        r = zero
        for c in series:  # a tuple of constants: unrolled
            r = r * z + c
        r = r * z
        hfsq = half * g * g
        return g - (hfsq - s * (hfsq + r))

    return split, log1p_reduced


_LN2HI32_LOG = np.float32(0.693145751953125)  # e * hi is exact for |e| < 2^12
_LN2LO32_LOG = np.float32(1.4286067653302226e-06)


@overload(vlog, jit_options=_INLINE)
def _vlog(x):
    r"""Vectorisable ``log(x)``: ``x = 2^e m``, ``m`` in [sqrt(1/2), sqrt(2)) from the exponent bits
    (subnormals scaled to normal first), then :math:`\log x = e \ln 2 + \log(1 + f)`, ``f = m - 1``,
    with ``log(1 + f) = 2 atanh(f / (2 + f))`` by its series (see :func:`_log_kernel`), ln 2 in a high
    part (exact product with e) and a low part. Edges as ``math.log``: 0 -> -inf, inf -> inf,
    negative or NaN -> NaN (no exception: a kernel never raises)."""
    F = _format(x)
    if F is None:
        return None
    split, log1p_reduced = _log_kernel(F)
    hi, lo = (_LN2HI32_LOG, _LN2LO32_LOG) if F is _F32 else (_LN2HI64, _LN2LO64)
    zero, inf, nan = F.zero, F.inf, F.nan

    def impl(x):
        e, g = split(x)
        result = e * hi + (log1p_reduced(g) + e * lo)
        result = -inf if x == zero else result
        result = nan if x < zero else result
        return result if x < inf else x + x  # inf -> inf, NaN -> NaN
    return impl


@overload(vlog1p, jit_options=_INLINE)
def _vlog1p(x):
    r"""Vectorisable ``log1p(x)``: ``u = 1 + x`` rounded, then :math:`\log u + c` with
    :math:`c = (x - (u - 1)) / u`, the first-order correction for the rounding of ``u`` (fdlibm's
    log1p), so a tiny x gives x exactly (u = 1, c = x). Edges: -1 -> -inf, below -1 or NaN -> NaN,
    inf -> inf."""
    F = _format(x)
    if F is None:
        return None
    split, log1p_reduced = _log_kernel(F)
    hi, lo = (_LN2HI32_LOG, _LN2LO32_LOG) if F is _F32 else (_LN2HI64, _LN2LO64)
    zero, one, inf, nan = F.zero, F.one, F.inf, F.nan

    def impl(x):
        u = one + x
        u_safe = u if u > zero else one  # u <= 0: the edge below decides
        c = (x - (u_safe - one)) / u_safe
        e, g = split(u_safe)
        result = e * hi + (log1p_reduced(g) + (e * lo + c))
        result = -inf if u == zero else result
        result = nan if u < zero else result
        result = x if x == zero else result  # keeps the sign of zero
        return result if x < inf else x + x
    return impl


@overload(vexpm1, jit_options=_INLINE)
def _vexpm1(x):
    r"""Vectorisable ``expm1(x)``: :math:`x = n \ln 2 + r`, :math:`|r| \le \ln 2 / 2` (as :func:`vexp`),
    :math:`e^r - 1 = r + r^2 P(r)` by its Taylor polynomial, then
    :math:`\mathrm{expm1}(x) = 2^n \mathrm{expm1}(r) + (2^n - 1)` (``2^n - 1`` exact here; no
    cancellation beyond a factor 2.5). No data-dependent branch or loop. Above ``high`` the result
    is ``vexp(x)`` (``exp(x) - 1`` rounds to ``exp(x)`` there, overflow included); below ``low`` -1."""
    F = _format(x)
    if F is None:
        return None
    i = F.i
    log2e, hi, lo = (_LOG2E32, _LN2HI32, _LN2LO32) if F is _F32 else (_LOG2E64, _LN2HI64, _LN2LO64)
    series, low, high, half, one, zero = F.expm1_series, F.expm1_low, F.expm1_high, F.half, F.one, F.zero
    mant, bias = F.mantissa_bits, F.bias

    def impl(x):
        xc = min(max(x, low), high)
        n = np.floor(xc * log2e + half)
        r = (xc - n * hi) - n * lo
        p = zero
        for c in series:  # a tuple of constants: unrolled
            p = p * r + c
        p = r + r * r * p
        two_n = _float_of(i((i(n) + bias) << mant))  # 2^n, normal for n in [low, high] / ln 2
        result = two_n * p + (two_n - one)
        result = vexp(x) if x > high else result
        result = x if x == zero else result  # keeps the sign of zero
        return result if x == x else x  # NaN stays NaN
    return impl


@overload(vpow, jit_options=_INLINE)
def _vpow(x, y):
    r"""Vectorisable ``x ** y`` as :math:`e^{y \log x}`.

    float32 is computed in float64 (``vlog``, ``vexp``) and rounded once: the error of ``y log x``
    is then far below float32's spacing, so the result is within 1 ulp. float64 keeps the part of
    :math:`y \log x` that a plain product would lose: :math:`\log x = e \cdot \mathrm{hi} + t` with
    ``e hi`` exact, :math:`y\,e\,\mathrm{hi}` split into a rounded product and its exact error (an
    FMA), the sum two-summed, and :math:`e^{a + b} = e^a (1 + b)`. What remains is ``|y|`` times the
    rounding of ``t`` (|t| < 0.35): a few ulp, growing with ``|y|`` (see the module note).
    ``y`` = 0, 1, 2, 4 and 1/2 are 1, ``x``, ``x * x``, ``(x * x)^2`` and ``sqrt(x)`` (correctly rounded but
    the fourth power, within 2 ulp; where y is a constant of the kernel the general path is then not compiled at all).
    Edges as C's ``pow``: ``x ** 0 = 1`` and ``1 ** y = 1`` (NaN included); a negative x gives NaN
    unless y is an integer (then the sign of ``(-1)^y``); ``0 ** y`` is 0 (y > 0) or inf (y < 0)."""
    if x == types.float32 and y in (types.float32, types.float64):
        zero, one, nan = np.float32(0.0), np.float32(1.0), np.float32(np.nan)

        def pow32(x, y):
            if y == 0:  # the common exponents exactly, and cheaply: a constant y folds to one of these
                return one
            if y == 2:
                return x * x
            if y == 1:
                return x
            if y == 4:
                return (x * x) * (x * x)
            if y == 0.5:  # sqrt(-0) = -0 and sqrt(-inf) = NaN, where pow gives +0 and +inf
                return -x if x == -np.inf else np.sqrt(x) + zero
            a = abs(np.float64(x))
            yd = np.float64(y)
            r = np.float32(vexp(yd * vlog(a)))
            return _pow_edges(x, y, r, zero, one, nan)
        return pow32
    if x == types.float64 and y in (types.float32, types.float64):
        split, log1p_reduced = _log_kernel(_F64)

        zero = 0.0

        def pow64(x, y):
            if y == 0:  # as pow32
                return 1.0
            if y == 2:
                return x * x
            if y == 1:
                return x
            if y == 4:
                return (x * x) * (x * x)
            if y == 0.5:  # sqrt(-0) = -0 and sqrt(-inf) = NaN, where pow gives +0 and +inf
                return -x if x == -np.inf else np.sqrt(x) + zero
            a = abs(x)
            a_safe = a if (a > 0.0 and a < np.inf) else 1.0
            yd = np.float64(y)
            e, g = split(a_safe)
            t = log1p_reduced(g) + e * _LN2LO64  # log a - e hi, |t| < 0.35
            p = yd * (e * _LN2HI64)
            p_err = _fma64(yd, e * _LN2HI64, -p)  # exact: p + p_err = y e hi
            q = yd * t
            s = p + q  # two-sum: s + s_err = p + q exactly
            v = s - p
            s_err = (p - (s - v)) + (q - v)
            # the correction only where exp(s) is a finite nonzero number: past |s| = 746 (y e near 2^53 and more)
            # p_err is ulps of thousands, and 1 + it went negative: pow(2, 1e20) was -inf (found in review)
            r = vexp(s) * (1.0 + ((s_err + p_err) if abs(s) < 746.0 else 0.0))
            regular = a > 0.0 and a < np.inf and abs(yd) < np.inf
            r = r if regular else vexp(yd * vlog(a))  # x = 0 or inf, y = inf: the exact limits
            return _pow_edges(x, yd, r, 0.0, 1.0, np.nan)
        return pow64
    return None


@numba.njit(forceinline=True, error_model="numpy")
def _pow_edges(x, y, r, zero, one, nan):
    """C's ``pow`` edges on ``r = |x| ** y``: y = 0, x = 1, or x = -1 and y infinite give 1; a negative
    x gives NaN unless y is an integer, then the sign of ``(-1)^y``."""
    integral = np.floor(y) == y  # False for NaN; True for +-inf (even)
    odd = integral and np.floor(0.5 * y) != 0.5 * y
    # the sign bit, not x < 0: pow(-0, -1) is -inf and pow(-0, 3) is -0 (found in review)
    r = -r if (odd and math.copysign(1.0, x) < 0.0) else r
    # -inf to a non-integer power is |x| ** y, +inf or +0, as C's (it was NaN)
    r = r if (x >= zero or integral or x == -np.inf) else nan
    r = one if (y == 0 or x == one or (x == -one and abs(y) == np.inf)) else r
    return r


@intrinsic
def _fma64(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's fma: one instruction on x86-64 with FMA)."""
    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


def _order_key(dtype):
    """``(key, value_of, low)``: compiled ``key(b)`` of a float's bits ``b`` (read as an int32 / int64)
    that orders as the floats do, its inverse ``value_of(key)`` (the float), and -inf's key. A negative
    value's magnitude bits are flipped (``b ^ ((b >> 31) & 0x7fffffff)`` for float32), an involution, so
    the largest key maps back to the largest value; -0 comes below +0; a NaN of either sign is the
    largest key of all, which maps back to a NaN (so a max is NaN wherever the row holds one, and a
    kernel's finiteness test flags the row: a NaN made by arithmetic, ``inf - inf``, has its sign bit set
    on x86, and one skipped gave a finite wrong answer in kernels whose sums do not carry it)."""
    bits = np.int32 if dtype == types.float32 else np.int64
    sign_shift = bits(np.dtype(bits).itemsize * 8 - 1)
    magnitude = bits(np.iinfo(bits).max)  # also the largest key: a NaN's bit pattern
    inf_bits = np.array([np.inf], np.float32 if bits is np.int32 else np.float64).view(bits)[0]
    low = bits(~inf_bits)  # -inf's key: its bits (inf's with the sign bit set) with the magnitude flipped

    @numba.njit(**_INLINE)
    def key(b):
        return magnitude if (b & magnitude) > inf_bits else bits(b ^ ((b >> sign_shift) & magnitude))

    @numba.njit(**_INLINE)
    def value_of(k):
        return _float_of(bits(k ^ ((k >> sign_shift) & magnitude)))  # bits(): numba widens int32 to int64

    return key, value_of, low


def row_max(row):
    """The largest value of a float32 or float64 row inside a compiled kernel (see :func:`_row_max`)."""
    return max(row)


@overload(row_max, jit_options=_INLINE)
def _row_max(row):
    """A row's max as the max of its values' order keys (:func:`_order_key`): an integer max needs no
    fast-math flag to vectorise, and it is exact whatever the order. NaN wherever the row holds one;
    -inf for an empty row."""
    if not isinstance(row, types.Array) or row.dtype not in (types.float32, types.float64):
        return None
    key, value_of, low = _order_key(row.dtype)

    def impl(row):
        top = low
        for j in range(row.shape[0]):
            top = max(top, key(_bits_of(row[j])))
        return value_of(top)
    return impl


def row_max_but(row, skip):
    """The largest value of a row but the one at index ``skip`` (-inf when there is no other; NaN when
    another is NaN), inside a compiled kernel: :func:`row_max`'s integer max, the skipped entry read as
    -inf."""
    return max((v for j, v in enumerate(row) if j != skip), default=-math.inf)


@overload(row_max_but, jit_options=_INLINE)
def _row_max_but(row, skip):
    if not isinstance(row, types.Array) or row.dtype not in (types.float32, types.float64):
        return None
    key, value_of, low = _order_key(row.dtype)

    def impl(row, skip):
        top = low
        for j in range(row.shape[0]):
            top = max(top, key(_bits_of(row[j])) if j != skip else low)
        return value_of(top)
    return impl
