"""Checks every registered loss must pass, for every option set in ``cases.py``.

References: float64 central finite differences, torch autograd and jax.grad of the loss's
own forward expression, the loss on NumPy float64 (for other backends and dtypes), and
algebraic identities of the reduction rule.
"""

from __future__ import annotations

import numpy as np
import pytest

from cases import all_cases, cases_for, make_loss
from conftest import backend_available, dtype_of, library_of, to_backend, to_numpy, to_numpy_all

CASES = all_cases()
IDS = [c[0] for c in CASES]
REDUCTIONS = ("none", "sum", "mean")


def _scalar(loss, case, x, weight=None, normalizer=None):
    value = loss(x, case.target, weight=weight, normalizer=normalizer)
    return float(np.sum(to_numpy(value)))


def finite_difference(loss, case, x, weight=None, normalizer=None, step=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (_scalar(loss, case, up, weight, normalizer)
                       - _scalar(loss, case, down, weight, normalizer)) / (2 * step)
    return grad


def _weight(case, seed=1):
    return np.random.default_rng(seed).uniform(0.2, 2.0, size=case.batch_shape)


@pytest.mark.parametrize("impl", ["xp", "auto"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradient_matches_finite_differences(cid, name, case_name, reduction, impl):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, reduction, impl)
    weight = _weight(case)
    for w, normalizer in ((None, None), (weight, None), (weight, 7.5)):
        _, grad = loss.value_and_grad(case.input, case.target, weight=w, normalizer=normalizer)
        expected = finite_difference(loss, case, case.input, w, normalizer)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(loss.grad(case.input, case.target, weight=w, normalizer=normalizer),
                                   grad, rtol=0, atol=0)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_hessian_diag_matches_finite_differences_of_gradient(cid, name, case_name, reduction):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, reduction)
    weight = _weight(case)
    hess = loss.hessian_diag(case.input, case.target, weight=weight)
    step = 1e-6
    expected = np.zeros_like(case.input)
    for index in np.ndindex(case.input.shape):
        up, down = case.input.copy(), case.input.copy()
        up[index] += step
        down[index] -= step
        g_up = loss.grad(up, case.target, weight=weight)
        g_down = loss.grad(down, case.target, weight=weight)
        expected[index] = (g_up[index] - g_down[index]) / (2 * step)
    np.testing.assert_allclose(hess, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_reduction_identities(cid, name, case_name):
    case = cases_for(name)[case_name]
    weight = _weight(case)
    none = make_loss(name, case.options, "none")(case.input, case.target, weight=weight)
    total = make_loss(name, case.options, "sum")(case.input, case.target, weight=weight)
    mean = make_loss(name, case.options, "mean")(case.input, case.target, weight=weight)
    effective = weight if case.option_weight is None else weight * case.option_weight
    assert none.shape == case.batch_shape
    np.testing.assert_allclose(total, np.sum(none), rtol=1e-12)
    np.testing.assert_allclose(mean, np.sum(none) / np.sum(effective), rtol=1e-12)
    by_normalizer = make_loss(name, case.options, "mean")(case.input, case.target, weight=weight,
                                                         normalizer=3.0)
    np.testing.assert_allclose(by_normalizer, np.sum(none) / 3.0, rtol=1e-12)
    unweighted = make_loss(name, case.options, "mean")(case.input, case.target)
    ones = np.ones(case.batch_shape) if case.option_weight is None else case.option_weight
    np.testing.assert_allclose(
        unweighted, np.sum(make_loss(name, case.options, "none")(case.input, case.target)) / np.sum(ones),
        rtol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_weight_is_linear(cid, name, case_name):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "sum")
    w1, w2 = _weight(case, 1), _weight(case, 2)
    v1, g1 = loss.value_and_grad(case.input, case.target, weight=w1)
    v2, g2 = loss.value_and_grad(case.input, case.target, weight=w2)
    v, g = loss.value_and_grad(case.input, case.target, weight=2.0 * w1 + 0.5 * w2)
    np.testing.assert_allclose(v, 2.0 * v1 + 0.5 * v2, rtol=1e-12)
    np.testing.assert_allclose(g, 2.0 * g1 + 0.5 * g2, rtol=1e-12, atol=1e-15)
    zero = loss(case.input, case.target, weight=np.zeros(case.batch_shape))
    assert float(zero) == 0.0


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_all_zero_weight_mean_is_zero_not_nan(cid, name, case_name):
    case = cases_for(name)[case_name]
    value, grad = make_loss(name, case.options, "mean").value_and_grad(
        case.input, case.target, weight=np.zeros(case.batch_shape))
    assert float(value) == 0.0
    assert np.all(grad == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_backends_agree_and_keep_library_and_dtype(backend, dtype, cid, name, case_name):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "mean")
    ref_value, ref_grad = loss.value_and_grad(case.input, case.target)
    ref_hess = loss.hessian_diag(case.input, case.target)
    x = to_backend(backend, case.input.astype(dtype))
    t = to_backend(backend, case.target)
    value, grad = loss.value_and_grad(x, t)
    hess = loss.hessian_diag(x, t)
    for result in (value, grad, hess):
        assert library_of(result) == library_of(x)
        assert result.dtype == dtype_of(backend, dtype)
    assert tuple(grad.shape) == case.input.shape
    tol = 1e-12 if dtype == "float64" else 2e-5
    value, grad, hess = to_numpy_all(value, grad, hess)
    np.testing.assert_allclose(value, ref_value, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(hess, ref_hess, rtol=tol, atol=tol)


@pytest.mark.parametrize(("backend_name", "dtype"),
                         [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"),
                          ("jax", "bfloat16")])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_half_precision_is_computed_in_float32(backend_name, dtype, cid, name, case_name, monkeypatch):
    if not backend_available(backend_name):
        pytest.skip(f"{backend_name} is not installed")
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "mean")
    x = to_backend(backend_name, case.input.astype(np.float32))
    half = x.astype(dtype_of(backend_name, dtype)) if backend_name != "torch" else \
        x.to(dtype_of(backend_name, dtype))
    value, grad = loss.value_and_grad(half, to_backend(backend_name, case.target))
    assert value.dtype == half.dtype and grad.dtype == half.dtype
    # the reference is float32 arithmetic on the same rounded input
    rounded = to_numpy(half.astype(dtype_of(backend_name, "float32")) if backend_name != "torch"
                       else half.float())
    rounded = rounded.astype(np.float32)
    if name == "categorical_cross_entropy":
        # bfloat16-rounded rows sum to 1 only within bfloat16's eps, which the half call allows and a
        # float32 call would refuse: the reference takes the same rows, unchecked
        import losskit._checks

        monkeypatch.setattr(losskit._checks, "rows_sum_to_one", lambda *args, **kwargs: True)  # (read: no NaN)
    ref_value, ref_grad = loss.value_and_grad(rounded, case.target)
    # one rounding of the float32 result to the half dtype: within half an ulp of the half dtype at the
    # float32 reference (plus a few float32 ulps, where another backend's float32 exp/log differ)
    _within_half_an_ulp(to_numpy(value), ref_value, dtype)
    _within_half_an_ulp(to_numpy(grad), ref_grad, dtype)


#: (bits of mantissa, smallest subnormal) of the half dtypes
_HALF = {"float16": (10, 2.0 ** -24), "bfloat16": (7, 2.0 ** -133)}


def _within_half_an_ulp(actual, reference32, dtype):
    mantissa, smallest = _HALF[dtype]
    ref = np.asarray(reference32, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    magnitude = np.abs(ref)
    exponent = np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0)))
    ulp = np.maximum(2.0 ** (exponent - mantissa), smallest)
    bound = 0.5 * ulp + 8 * float(np.finfo(np.float32).eps) * magnitude + 1e-30
    excess = np.abs(actual - ref) - bound
    assert np.all(excess <= 0), (f"{dtype}: off by {np.max(np.abs(actual - ref) / ulp):.2f} ulp of the half "
                                 f"dtype (bound: half an ulp of the float32 result)")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradient_matches_torch_autograd(cid, name, case_name, reduction):
    torch = pytest.importorskip("torch")
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, reduction)
    weight = _weight(case)
    x = torch.tensor(case.input, requires_grad=True)
    value = loss(x, torch.from_numpy(np.array(case.target)), weight=torch.from_numpy(weight))
    value.sum().backward()
    _, grad = loss.value_and_grad(case.input, case.target, weight=weight)
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradient_matches_jax_grad(cid, name, case_name):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "mean")
    weight = _weight(case)
    target = jnp.asarray(case.target)
    w = jnp.asarray(weight)
    # jax.grad through the core's forward, and the core's own value_and_grad, traced by one jit: a
    # compile costs more than the small ops it runs (op by op took 2x, two jits 19.8 s against 17.3 s
    # for the 157 cases on two workers)
    auto, jitted = jax.jit(lambda z: (jax.grad(lambda z: loss(z, target, weight=w))(z),
                                      loss.value_and_grad(z, target, weight=w)))(jnp.asarray(case.input))
    _, grad = loss.value_and_grad(case.input, case.target, weight=weight)
    np.testing.assert_allclose(np.asarray(auto), grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jitted[1]), grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_inputs_are_never_written(cid, name, case_name):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "none", impl="auto")
    x, t, w = (to_backend("numpy", a) for a in (case.input, case.target, _weight(case)))
    assert not x.flags.writeable  # a write inside would raise
    before = (x.copy(), t.copy(), w.copy())
    loss.value_and_grad(x, t, weight=w)
    loss.hessian_diag(x, t, weight=w)
    for a, b in zip((x, t, w), before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_function_equals_loss_object(cid, name, case_name):
    import losskit

    case = cases_for(name)[case_name]
    _, function = losskit.REGISTRY[name]
    weight = _weight(case)
    for reduction in REDUCTIONS:
        np.testing.assert_array_equal(
            function(case.input, case.target, weight=weight, reduction=reduction, **case.options),
            make_loss(name, case.options, reduction, impl="auto")(case.input, case.target, weight=weight))


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_lists_are_read_as_numpy(cid, name, case_name):
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "mean")
    value = loss(case.input.tolist(), case.target.tolist())
    assert isinstance(value, (np.ndarray, np.generic))
    np.testing.assert_allclose(value, loss(case.input, case.target), rtol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_device_is_preserved(cid, name, case_name):
    # torch's "meta" device stands in for an accelerator: a constant created on the default
    # device instead of the input's would raise a device-mismatch error here
    torch = pytest.importorskip("torch")
    case = cases_for(name)[case_name]
    loss = make_loss(name, case.options, "mean")
    x = torch.from_numpy(case.input).to("meta")
    t = torch.from_numpy(np.array(case.target)).to("meta")
    w = torch.from_numpy(_weight(case)).to("meta")
    value, grad = loss.value_and_grad(x, t, weight=w, normalizer=torch.tensor(2.0, device="meta"))
    hess = loss.hessian_diag(x, t, weight=w)
    assert value.device.type == grad.device.type == hess.device.type == "meta"
    assert tuple(grad.shape) == case.input.shape
