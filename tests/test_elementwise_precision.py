"""The log-cosh loss and the Tweedie deviances against 50-digit mpmath, on the compiled kernel and
the array-API path, float64 and float32: the value within 4 eps, the gradient within 8 eps
(100-digit mpmath).

The inputs are rounded to the dtype first and the reference computed from the rounded values. The
deviances are measured at y = 1 (``log y = 0`` exactly, so ``d = log y - eta`` has no rounding of
its own: near the optimum any formula's relative error is that rounding over |d|) and at y = 0.
Their gradient ``2 mu^a (mu - y)`` cancels near the optimum in every formulation (the peers' too):
it is judged against the size of its terms, ``2 mu^a (mu + y)``. Powers other than 1, 1.5 and 2
take the generic form, two phi terms whose roundings add (and for p > 2 cancel by up to a factor
p - 1): their value is held to 6 eps.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import losskit as lk

VALUE_EPS, GRAD_EPS = 4.0, 8.0
GENERIC_VALUE_EPS = 6.0
DTYPES = [np.float64, np.float32]
OFFSETS = [0.0, 1e-7, 1e-4, 1e-3, 0.01, 0.1, 0.5, 0.99, 1.0, 1.01, 1.5, 1.99, 2.0, 2.01, 3.0, 4.0, 4.1, 7.0, 20.0]
ERRORS = [0.0, 1e-20, 1e-8, 1e-4, 0.01, 0.3, 0.99, 1.0, 1.01, 2.0, 9.0, 20.0, 100.0, 1e4]


def _deviance(power, eta, y):
    mp = mpmath.mp
    z, y, p = mp.mpf(eta), mp.mpf(y), mp.mpf(power)
    mu, a, b = mp.exp(z), 1 - p, 2 - p
    if power == 1:
        value = 2 * ((y * mp.log(y / mu) if y > 0 else 0) - y + mu)
    elif power == 2:
        value = 2 * (mp.log(mu / y) + y / mu - 1)
    else:
        value = 2 * ((y ** b if y > 0 else 0) / (a * b) - y * mu ** a / a + mu ** b / b)
    return value, 2 * mu ** a * (mu - y), 2 * mu ** a * (mu + abs(y))


def _log_cosh(z, y):
    e = mpmath.mpf(z) - mpmath.mpf(y)
    tanh = mpmath.tanh(e)
    return mpmath.log(mpmath.cosh(e)), tanh, abs(tanh)


def _worst(loss, reference, z, y, dtype):
    value, grad = loss.replace(reduction="none").value_and_grad(z, y)
    assert value.dtype == grad.dtype == dtype
    eps, tiny = float(np.finfo(dtype).eps), mpmath.mpf(float(np.finfo(dtype).tiny))
    worst_value = worst_grad = 0.0
    with mpmath.workdps(100):  # log cosh(1e-20) needs 40 digits before its first
        for zi, yi, v, g in zip(z.tolist(), y.tolist(), value.tolist(), grad.tolist(), strict=True):
            exact, exact_grad, grad_scale = reference(zi, yi)
            worst_value = max(worst_value, float(abs(v - exact) / max(abs(exact), tiny)) / eps)
            worst_grad = max(worst_grad, float(abs(g - exact_grad) / max(grad_scale, tiny)) / eps)
    return worst_value, worst_grad


@pytest.mark.parametrize("impl", ["fused", "xp"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("power", [1.0, 2.0, 1.5, 1.2, 3.0])
def test_deviance_within_bounds(power, dtype, impl):
    offsets = np.array(OFFSETS + [-o for o in OFFSETS[1:]])
    z = np.concatenate([offsets, offsets]).astype(dtype)
    y = np.concatenate([np.ones_like(offsets), np.zeros_like(offsets) + (power >= 2)]).astype(dtype)
    loss = {1.0: lk.PoissonDeviance(impl=impl), 2.0: lk.GammaDeviance(impl=impl)}.get(
        power, lk.TweedieDeviance(power=power, impl=impl))
    worst_value, worst_grad = _worst(loss, lambda zi, yi: _deviance(power, zi, yi), z, y, dtype)
    bound = VALUE_EPS if power in (1.0, 1.5, 2.0) else GENERIC_VALUE_EPS
    assert worst_value <= bound and worst_grad <= GRAD_EPS, (worst_value, worst_grad)


@pytest.mark.parametrize("impl", ["fused", "xp"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_log_cosh_within_bounds(dtype, impl):
    errors = np.array(ERRORS + [-e for e in ERRORS[1:]])
    z, y = errors.astype(dtype), np.zeros_like(errors, dtype=dtype)
    worst_value, worst_grad = _worst(lk.LogCoshLoss(impl=impl), _log_cosh, z, y, dtype)
    assert worst_value <= VALUE_EPS and worst_grad <= GRAD_EPS, (worst_value, worst_grad)
