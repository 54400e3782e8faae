"""The kernels' vectorisable exp and log1p against 50-digit mpmath over their whole domains."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

numba = pytest.importorskip("numba")

from losskit.fused.vmath import vexp, vlog1p_unit  # noqa: E402

mpmath.mp.dps = 50


@numba.njit
def _evaluate(x, out_exp, out_log1p):
    for i in range(x.size):
        out_exp[i] = vexp(x[i])
        out_log1p[i] = vlog1p_unit(min(abs(x[i]), x[i] * 0 + 1))


def _ulps(actual, exact, dtype):
    """|actual - exact| in units of the dtype's spacing at the exact value (subnormal spacing included)."""
    spacing = float(np.spacing(dtype(abs(float(exact))))) if exact != 0 else float(np.finfo(dtype).smallest_subnormal)
    return float(abs(mpmath.mpf(float(actual)) - exact)) / spacing


@pytest.mark.parametrize(("dtype", "exp_bound", "log1p_bound"), [(np.float32, 1.5, 1.0), (np.float64, 1.5, 3.0)])
def test_vexp_and_vlog1p_are_within_a_few_ulps_everywhere(dtype, exp_bound, log1p_bound):
    info = np.finfo(dtype)
    x = np.concatenate([np.linspace(np.log(info.smallest_subnormal), np.log(info.max) - 0.1, 1500),
                        -np.logspace(np.log10(info.tiny), 0, 500)]).astype(dtype)
    u = np.concatenate([np.logspace(np.log10(info.tiny), 0, 1500), np.linspace(0, 1, 500)]).astype(dtype)
    exp_out, _ = np.empty_like(x), None
    _evaluate(x, exp_out, np.empty_like(x))
    log1p_out = np.empty_like(u)
    _evaluate(u, np.empty_like(u), log1p_out)
    worst_exp = max(_ulps(a, mpmath.exp(mpmath.mpf(float(v))), dtype) for v, a in zip(x, exp_out, strict=True))
    worst_log1p = max(_ulps(a, mpmath.log1p(mpmath.mpf(float(v))), dtype) for v, a in zip(u, log1p_out, strict=True))
    assert worst_exp <= exp_bound and worst_log1p <= log1p_bound, (worst_exp, worst_log1p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vexp_edges(dtype):
    info = np.finfo(dtype)
    x = np.array([-np.inf, -1e30, float(np.log(info.smallest_subnormal)) - 1, 0.0, float(np.log(info.max)) + 1,
                  1e30, np.inf], dtype=dtype)
    out = np.empty_like(x)
    _evaluate(x, out, np.empty_like(x))
    np.testing.assert_array_equal(out, [0, 0, 0, 1, np.inf, np.inf, np.inf])
