r"""Vectorisable ``exp`` and ``log1p`` for the compiled kernels, in float32 and in float64.

``math.exp`` and ``math.log1p`` compile to calls into libm, which LLVM cannot vectorise without
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

Compiled with contraction into fused multiply-adds allowed (Horner steps become FMAs) and no
other fast-math flag. Measured against 50-digit mpmath over their whole domains: ``python benchmarks/accuracy.py``
(figures in docs/losses.md). The compiled code of each kernel is cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["vexp", "vlog1p_unit"]


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


@overload(vexp, jit_options={"fastmath": {"contract"}})
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


@overload(vlog1p_unit, jit_options={"fastmath": {"contract"}})
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
