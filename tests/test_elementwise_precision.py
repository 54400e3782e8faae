"""The log-cosh loss and the Tweedie deviances against 50-digit mpmath, on the compiled kernel and
the array-API path, float64 and float32: the value within 4 eps, the gradient within 8 eps
(100-digit mpmath).

The inputs are rounded to the dtype first and the reference computed from the rounded values. The
deviances are measured at y = 1 (``log y = 0`` exactly, so ``t = eta - log y`` has no rounding of
its own: near the optimum any formula's relative error is that rounding over |t|, see
deviance.py's note) and at y = 0, value and gradient each relative to the exact one: the gradient
``2 mu^a (mu - y)``, whose difference cancels near the optimum (5e7 eps at eta = 1e-8 before the
near form), is held to 8 eps of itself. Powers other than 1, 1.5 and 2 take the generic form, two phi
terms whose roundings add (and for p > 2 cancel, by 3x near the optimum): their value is held to 6 eps.
Then every power, over extremes of eta and y: finite wherever the exact value or gradient fits the dtype.
"""

from __future__ import annotations

import math
import warnings

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
    grad = 2 * mu ** a * (mu - y)
    return value, grad, abs(grad)


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


EXTREME_ETAS = [-1e4, -1000.0, -700.0, -300.0, -100.0, -90.0, -30.0, -1e-8, 0.0, 30.0, 90.0, 100.0, 300.0, 700.0,
                1000.0, 1e4]
EXTREME_TARGETS = [0.0, 1e-300, 1e-30, 1e-5, 0.3, 1.0, 3.0, 1000.0, 1e30, -3.0]
#: and around each target's optimum, where y^b and mu^b may both underflow (y = 1e-30, p = 0, float32)
NEAR_OFFSETS = [-1.5, -0.6, 0.1, 1.5]


@pytest.mark.parametrize("impl", ["fused", "xp"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("power", [-1.0, 0.0, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0])
def test_deviance_is_finite_wherever_the_exact_result_is(power, dtype, impl, monkeypatch):
    """docs/losses.md "Finite for finite input" for the deviances, every kind of power: a factor
    ``exp(|a eta|)`` once overflowed where the result is finite (Gamma's float32 gradient at eta = -100,
    y = 1e-30: -inf for -5.4e13; power 1.5 at eta = -1e4, y = 0: NaN from 0 * inf; the float32 value at
    eta = 30, y = 1e-30: inf for 2.1e13), and ``e^(b t) = mu^b / y^b`` was 0 / 0 where both underflow.
    The sign is checked too where the exact result is normal. Left out: the points whose exact value
    or gradient overflows, and those whose y^b does (the formula scales by it: p = 0, y = 1e30)."""
    points = [(e, t) for e in EXTREME_ETAS for t in EXTREME_TARGETS]
    points += [(math.log(t) + o, t) for t in EXTREME_TARGETS if t > 0 for o in NEAR_OFFSETS]
    info = np.finfo(dtype)
    kept, exact = [], []
    for e, t in points:
        e, t = float(dtype(e)), float(dtype(t))
        if (power >= 2 and t <= 0) or (power >= 1 and t < 0):
            continue
        if t > 0 and abs((2 - power) * math.log(t)) >= math.log(float(info.max)):
            continue
        with mpmath.workdps(100):
            value, grad, _ = _deviance(power, e, t)
        if abs(value) <= info.max and abs(grad) <= info.max:
            kept.append((e, t))
            exact.append((value, grad))
    z, y = (np.array(v, dtype=dtype) for v in zip(*kept, strict=True))
    loss = {1.0: lk.PoissonDeviance(impl=impl), 2.0: lk.GammaDeviance(impl=impl)}.get(
        power, lk.TweedieDeviance(power=power, impl=impl))
    if impl == "fused":  # the kernel answers every point: none is sent to the reference
        def no_reference(*args, **kwargs):
            raise AssertionError("a row was flagged and went to the reference")
        monkeypatch.setattr(type(loss), "reference", no_reference)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the branches a where drops
        value, grad = loss.replace(reduction="none").value_and_grad(z, y)
    for zi, yi, v, g, (exact_value, exact_grad) in zip(z.tolist(), y.tolist(), value.tolist(), grad.tolist(),
                                                       exact, strict=True):
        for got, want, what in ((v, exact_value, "value"), (g, exact_grad, "gradient")):
            assert np.isfinite(got), (what, zi, yi, got, float(want))
            if abs(want) >= max(info.tiny, 1e-90):  # below 1e-90: the 100-digit reference's own rounding
                assert np.sign(got) == np.sign(float(want)), (what, zi, yi, got, float(want))
    assert len(kept) > 60  # most points have a finite exact result


@pytest.mark.parametrize(("power", "eta", "y"), [(-1.0, 45.0, 1.5), (0.0, 100.0, 1.5), (3.0, -100.0, 1.5),
                                                 (1.0, 3e38, 2.0), (1.5, 200.0, 2.0)])
def test_a_deviance_past_float32_is_inf_with_the_gradients_sign(power, eta, y):
    """Where both of mu^b and y mu^a overflow float32 the value and gradient were inf - inf: NaN on NumPy,
    torch and the core on JAX, and -inf (the wrong sign) in losskit.jax's gradient. The exact results
    (float64 here, worked from the closed forms) are past float32: inf, and the gradient's sign."""
    jax = pytest.importorskip("jax")
    import losskit.jax as lj

    loss = lk.PoissonDeviance() if power == 1.0 else lk.TweedieDeviance(power=power)
    a, b = 1.0 - power, 2.0 - power
    mu = mpmath.e ** mpmath.mpf(eta)
    exact_grad = 2 * mu ** a * (mu - y)  # d/d eta of the unit deviance
    assert abs(exact_grad) > np.finfo(np.float32).max and b != 0
    z, t = np.array([eta], np.float32), np.array([y], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for impl in ("xp", "fused"):
            value, grad = loss.replace(impl=impl).value_and_grad(z, t)
            assert float(value) == np.inf and grad[0] == np.sign(float(exact_grad)) * np.inf, (impl, value, grad)
    value, grad = jax.jit(jax.value_and_grad(lambda v: lj.loss_fn(loss)(v, jax.numpy.asarray(t))))(
        jax.numpy.asarray(z))
    assert float(value) == np.inf and float(grad[0]) == np.sign(float(exact_grad)) * np.inf


@pytest.mark.parametrize("impl", ["xp", "fused"])
def test_asymmetric_loss_gradient_at_the_float32_limit_is_its_limit(impl):
    """ASL's negative term: g rho overflowed float32 at |z| >= 2e38 before rho u (u = p (1 - p) = 0) was taken,
    so the gradient was inf * 0 = NaN for either label. The limits, from the closed form: d/dz of
    -p^g log(1 - p) -> 1 for p -> 1 (clip 0), and of -(1 - p)^g log p -> -1 for p -> 0."""
    loss = lk.AsymmetricLoss(gamma_pos=0.5, gamma_neg=2.0, clip=0.0, impl=impl, reduction="sum")
    z = np.array([[2e38, 3e38, 2e38, -3e38]], np.float32)
    y = np.array([[0, 0, 1, 1]])
    with np.errstate(over="ignore", invalid="ignore"):
        _, grad = loss.value_and_grad(z, y)
        hess = loss.replace(impl="xp").hessian_diag(z, y)  # (no kernel computes a Hessian)
    np.testing.assert_array_equal(grad, [[1.0, 1.0, 0.0, -1.0]])
    assert np.all(np.isfinite(hess))


@pytest.mark.parametrize("impl", ["xp", "auto"])
@pytest.mark.parametrize("clip", [0.0, 0.05])
@pytest.mark.parametrize(("gamma_pos", "gamma_neg"), [(1.0, 4.0), (0.0, 0.0), (2.0, 0.5)])
def test_asymmetric_loss_at_infinite_logits_is_its_limit(impl, clip, gamma_pos, gamma_neg):
    """A label whose own term is 0 (y = 0 at z = -inf, y = 1 at z = +inf) multiplied the other term's
    inf by 0: NaN value and gradient (found in review). The limits, from the closed form: at z = -inf
    with y = 0, p = 0 so p_m = 0 and the loss, gradient and Hessian are 0; at z = +inf with y = 1,
    (1 - p)^g log p = 0 and its derivatives 0 (as BCE's and sigmoid focal's)."""
    loss = lk.AsymmetricLoss(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, impl=impl, reduction="none")
    z = np.array([[-np.inf, np.inf]])
    y = np.array([[0.0, 1.0]])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        value, grad = loss.value_and_grad(z, y)
        hess = loss.replace(impl="xp").hessian_diag(z, y)
    np.testing.assert_array_equal(value, [0.0])
    np.testing.assert_array_equal(grad, [[0.0, 0.0]])
    np.testing.assert_array_equal(hess, [[0.0, 0.0]])


@pytest.mark.parametrize("impl", ["xp", "fused"])
def test_asymmetric_loss_without_focusing_is_bce_with_the_margin_clamped(impl):
    """With gamma_pos = gamma_neg = 0 ASL is -y log p - (1 - y) log(1 - p_m), p_m = max(p - m, 0) (the
    paper's, and the official code's clamp of 1 - p + m at 1). The log was taken unclamped, so below the
    margin a negative label cost -log(1 + m - p) < 0 (found in review). Worked by hand, m = 0.05: at z = -3
    (p = 0.0474 < m) the negative label costs 0 with gradient 0; at z = 0, -log(0.55) and p (1 - p) / 0.55."""
    loss = lk.AsymmetricLoss(gamma_pos=0.0, gamma_neg=0.0, clip=0.05, impl=impl, reduction="none")
    z = np.array([[-3.0], [0.0], [-5.0]])
    y = np.array([[0.0], [0.0], [1.0]])
    value, grad = loss.value_and_grad(z, y)
    p = 1 / (1 + np.exp(-z[:, 0]))
    np.testing.assert_allclose(value, [0.0, -np.log(0.55), -np.log(p[2])], rtol=1e-14, atol=0)
    np.testing.assert_allclose(grad[:, 0], [0.0, 0.25 / 0.55, p[2] - 1], rtol=1e-14, atol=0)


@pytest.mark.parametrize("impl", ["xp", "fused"])
@pytest.mark.parametrize("name", ["binary_cross_entropy_with_logits", "sigmoid_focal_loss", "multilabel_cross_entropy"])
def test_label_smoothing_keeps_the_gradient_within_8_eps(name, impl):
    """1 - y' was formed from the rounded y' (0.04999999999999993 for y = 1, a = 0.1), and the gradient
    (1 - y') p - y' (1 - p) then cancelled to 120 eps at z = 3 (found in review). Against 50-digit
    mpmath of the same formula (gamma 0: sigmoid focal is BCE): p - y' and the loss
    -y' log p - (1 - y') log(1 - p), y' = (1 - a) y + a / 2 taken exactly."""
    a = 0.1
    options = {"gamma": 0.0} if name == "sigmoid_focal_loss" else {}
    loss = lk.REGISTRY[name][0](label_smoothing=a, reduction="sum", impl=impl, **options)
    z = np.array([[3.0, 20.0, -3.0, 0.5]])
    y = np.array([[1.0, 1.0, 0.0, 1.0]])
    value, grad = loss.value_and_grad(z, y)
    mpmath.mp.dps = 50
    want_value, want_grad = mpmath.mpf(0), []
    for zj, yj in zip(z[0], y[0], strict=True):
        t = (1 - mpmath.mpf(a)) * yj + mpmath.mpf(a) / 2
        p = 1 / (1 + mpmath.exp(-mpmath.mpf(zj)))
        want_value += -t * mpmath.log(p) - (1 - t) * mpmath.log(1 - p)
        want_grad.append(p - t)
    eps = np.finfo(np.float64).eps
    assert abs(float(value) - float(want_value)) <= VALUE_EPS * eps * abs(float(want_value))
    for got, want in zip(grad[0], want_grad, strict=True):
        assert abs(got - float(want)) <= GRAD_EPS * eps * abs(float(want)), (got, float(want))


@pytest.mark.parametrize("impl", ["xp", "auto"])
@pytest.mark.parametrize("power", [0.0, 1.0, 1.5, 2.0, 3.0, 1.2])
def test_a_deviance_of_an_infinite_target_is_inf(power, impl):
    """Poisson, Gamma and Tweedie 1.5 gave NaN for a target of +inf (power 0 and 3 gave inf; found in
    review). The unit deviance grows without bound in y at any finite eta: +inf, gradient -inf (its
    2 mu^(1-p) (mu - y) -> -inf)."""
    loss = lk.TweedieDeviance(power=power, reduction="none", impl=impl)
    eta, y = np.array([0.5, -3.0]), np.array([np.inf, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "invalid value" warnings for these limits, which torch and JAX
        value, grad = loss.value_and_grad(eta, y)  # never give, are off
        hess = loss.hessian_diag(eta, y)
    np.testing.assert_array_equal(value, [np.inf, np.inf])
    np.testing.assert_array_equal(grad, [-np.inf, -np.inf])
    # 2 b mu^b - 2 a y mu^a (a = 1 - p, b = 2 - p): -inf for p < 1, Poisson's 2 mu (no y term: it was
    # 0 * inf = NaN), +inf for p > 1
    want = np.full(2, -np.inf) if power < 1 else 2 * np.exp(eta) if power == 1 else np.full(2, np.inf)
    np.testing.assert_allclose(hess, want, rtol=1e-15)


@pytest.mark.parametrize("impl", ["xp", "auto"])
def test_a_tweedie_hessian_past_the_dtype_is_its_infinite_limit_not_nan(impl):
    """p = -1: h = 2 mu^2 (3 mu - 2 y) formed as 6 mu^3 - 4 y mu^2, inf - inf = NaN where both terms overflow
    (found in review): the limit, of the sign of 3 mu - 2 y, as the value and gradient give theirs."""
    loss = lk.TweedieDeviance(power=-1.0, reduction="none", impl=impl)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert loss.hessian_diag(np.array([700.0]), np.array([0.3]))[0] == np.inf  # 3 mu >> 2 y
        assert loss.hessian_diag(np.array([30.0], np.float32), np.array([1e20], np.float32))[0] == -np.inf
    eta, y = np.array([1.0]), np.array([2.0])
    assert loss.hessian_diag(eta, y)[0] == pytest.approx(2 * np.e ** 2 * (3 * np.e - 4), rel=1e-14)


@pytest.mark.parametrize("impl", ["xp", "auto"])
@pytest.mark.parametrize(("loss", "slope"), [(lk.HuberLoss(delta=2.0), -2.0), (lk.AbsoluteError(), -1.0)])
def test_huber_and_the_absolute_error_of_an_infinite_target_are_inf_with_a_bounded_gradient(loss, slope, impl):
    """docs/semantics.md: a target of +inf gives the loss's limit +inf, and the gradient's limit, which for
    these two is bounded: -delta (Huber's linear tail) and -1 (the sign)."""
    loss = loss.replace(reduction="none", impl=impl)
    value, grad = loss.value_and_grad(np.array([0.5, -3.0]), np.array([np.inf, np.inf]))
    np.testing.assert_array_equal(value, [np.inf, np.inf])
    np.testing.assert_array_equal(grad, [slope, slope])


@pytest.mark.parametrize("gamma_neg", [0.0, 2.0])
def test_asymmetric_loss_hessian_of_a_confident_negative_without_margin_is_exact(gamma_neg):
    """With clip = 0 the negative term's second derivative summed (1 - 2p) p + p^2 = p (1 - p), which cancelled
    to 0 at z = 40 (4.2e-18 exact; found in review). Against mpmath's second derivative (50 digits) of the
    value -p^g log(1 - p), p = sigmoid(z), within 8 eps."""
    mpmath.mp.dps = 50
    z = np.array([[20.0, 30.0, 36.0, 40.0]])
    loss = lk.AsymmetricLoss(gamma_pos=0.0, gamma_neg=gamma_neg, clip=0.0, reduction="sum", impl="xp")
    hess = loss.hessian_diag(z, np.zeros_like(z))

    def value(x):
        p = 1 / (1 + mpmath.exp(-x))
        return -(p ** gamma_neg) * mpmath.log(1 / (1 + mpmath.exp(x)))  # log(1 - p) = log sigmoid(-x)

    for got, x in zip(hess[0], z[0], strict=True):
        want = float(mpmath.diff(value, mpmath.mpf(x), 2))
        assert abs(got - want) <= 8 * np.finfo(float).eps * abs(want), (x, got, want)


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0, 3.0])
def test_a_deviance_of_a_target_no_check_read_stays_nan_under_jit(power):
    """Under jit no check reads the target (docs/semantics.md): a NaN target, or one outside the domain
    (-1), gives NaN there, at every power (above 2, -1 gave a finite negative deviance before); only +inf is
    the deviance's limit, +inf. The first form of the +inf fix turned every NaN at a finite eta into inf
    (found by the diff review)."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    fn = jax.jit(lambda eta, y: lj.tweedie_deviance(eta, y, power=power, reduction="none"))
    value = np.asarray(fn(jnp.zeros(3), jnp.asarray([np.nan, -1.0, np.inf])))
    assert np.isnan(value[0]) and np.isnan(value[1]) and value[2] == np.inf


@pytest.mark.parametrize("impl", ["xp", "auto"])
def test_a_gaussian_nll_of_a_log_variance_of_minus_inf_is_its_limit(impl):
    """The docstring's edges: a log-variance of -inf costs -inf with an exact mean (the likelihood is unbounded)
    and +inf with an inexact one, the limit of s + (y - m)^2 e^-s as s -> -inf (by hand). The inexact one was
    NaN (-inf + inf) on both paths (found in review); its gradient is (-inf, -inf), the limit of ((m - y) e^-s,
    (1 - (y - m)^2 e^-s) / 2)."""
    loss = lk.GaussianNLL(impl=impl, reduction="none")
    inexact = np.array([[1.0, -np.inf], [1.0, 0.0]])
    value, grad = loss.value_and_grad(inexact, np.array([2.0, 2.0]))
    assert value[0] == np.inf and np.isfinite(value[1])
    assert np.all(grad[0] == -np.inf)
    assert loss(np.array([[2.0, -np.inf]]), np.array([2.0]))[0] == -np.inf
