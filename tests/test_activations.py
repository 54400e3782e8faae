"""Activations against hand-worked values, 50-digit mpmath on extreme inputs, and the limits."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import losskit as lk
from conftest import library_of, to_backend, to_numpy

mpmath.mp.dps = 50

EXTREME = [-1e4, -745.0, -100.0, -40.0, -20.0, -1.0, -1e-8, 0.0, 1e-8, 1.0, 20.0, 40.0, 100.0, 745.0, 1e4]


def mp_sigmoid(z):
    return 1 / (1 + mpmath.exp(-mpmath.mpf(z)))


def _rel(actual, exact):
    exact = float(exact)
    if exact == 0.0:
        return abs(actual)
    return abs(actual - exact) / abs(exact)


def test_softmax_of_a_small_vector_by_hand():
    # softmax([1, 2, 3]) = e^k / (e + e^2 + e^3)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(lk.softmax(np.array([1.0, 2.0, 3.0])), e / e.sum(), rtol=1e-15)
    np.testing.assert_allclose(lk.softmax(np.array([1.0, 2.0, 3.0])),
                               [0.09003057317038046, 0.24472847105479764, 0.6652409557748219], rtol=1e-14)


def test_sigmoid_by_hand_and_limits():
    z = np.array([0.0, np.log(3.0), -np.log(3.0), np.inf, -np.inf])
    np.testing.assert_allclose(lk.sigmoid(z), [0.5, 0.75, 0.25, 1.0, 0.0], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_and_log_sigmoid_match_mpmath(dtype):
    tol = 4 * np.finfo(dtype).eps
    z = np.array(EXTREME, dtype=dtype)
    s, ls = lk.sigmoid(z), lk.log_sigmoid(z)
    for zi, si, lsi in zip(z, s, ls, strict=True):
        exact_s = mp_sigmoid(float(zi))
        exact_ls = -mpmath.log1p(mpmath.exp(-mpmath.mpf(float(zi))))  # no 1 - tiny in the reference
        # below the smallest normal number only absolute accuracy (one subnormal step) is meaningful
        slack = 2 * float(np.finfo(dtype).smallest_subnormal)
        assert abs(float(si) - float(exact_s)) <= tol * abs(float(exact_s)) + slack, (zi, si, exact_s)
        assert abs(float(lsi) - float(exact_ls)) <= tol * abs(float(exact_ls)) + slack, (zi, lsi, exact_ls)
    assert np.all(np.isfinite(ls))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logsumexp_and_log_softmax_match_mpmath(dtype):
    tol = 8 * np.finfo(dtype).eps
    rows = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2], [0.0, 1e-8, -1e-8], [30.0, 30.0, -5.0]],
                    dtype=dtype)
    lse = lk.logsumexp(rows, axis=-1)
    logp = lk.log_softmax(rows, axis=-1)
    for row, value, logp_row in zip(rows, lse, logp, strict=True):
        exact = mpmath.log(sum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        assert _rel(float(value), exact) < tol
        for v, lp in zip(row, logp_row, strict=True):
            exact_lp = mpmath.mpf(float(v)) - exact
            assert abs(float(lp) - float(exact_lp)) <= tol * max(1.0, abs(float(exact_lp)))


def test_softmax_limits_with_infinities():
    z = np.array([[np.inf, 1.0, -np.inf], [np.inf, np.inf, 0.0], [-np.inf, -np.inf, -np.inf],
                  [0.0, -np.inf, 0.0]])
    expected = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, 0.5]])
    np.testing.assert_allclose(lk.softmax(z), expected, rtol=1e-15)
    np.testing.assert_allclose(lk.log_softmax(z), np.log(expected), rtol=1e-15)
    np.testing.assert_array_equal(lk.logsumexp(z), [np.inf, np.inf, -np.inf, np.log(2.0)])


def test_axis_argument():
    z = np.random.default_rng(0).normal(size=(3, 4, 5))
    for axis in (0, 1, 2, -1):
        moved = np.moveaxis(z, axis, -1)
        expected = np.exp(moved) / np.exp(moved).sum(-1, keepdims=True)
        np.testing.assert_allclose(lk.softmax(z, axis=axis), np.moveaxis(expected, -1, axis), rtol=1e-14)
        np.testing.assert_allclose(lk.logsumexp(z, axis=axis), np.log(np.exp(z).sum(axis)), rtol=1e-14)
    assert lk.logsumexp(z, axis=1, keepdims=True).shape == (3, 1, 5)


def test_activations_keep_library_and_dtype(backend):
    z = to_backend(backend, np.linspace(-5, 5, 12, dtype=np.float32).reshape(3, 4))
    for fn in (lk.sigmoid, lk.log_sigmoid, lk.softmax, lk.log_softmax, lk.logsumexp):
        out = fn(z)
        assert library_of(out) == library_of(z)
        assert out.dtype == z.dtype
    np.testing.assert_allclose(to_numpy(lk.softmax(z)).sum(-1), 1.0, rtol=1e-6)


def test_half_precision_activations_match_float32():
    z = np.linspace(-30, 30, 101).astype(np.float16)
    out = lk.sigmoid(z)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out.astype(np.float32), lk.sigmoid(z.astype(np.float32)), rtol=1e-3, atol=1e-4)


def test_non_float_logits_are_refused():
    with pytest.raises(lk.LossInputError, match="logits"):
        lk.softmax(np.array([1, 2, 3]))
    with pytest.raises(lk.LossInputError, match="axis"):
        lk.softmax(np.zeros((2, 3)), axis=2)


def test_log_sigmoid_autodiff_is_one_minus_sigmoid_at_zero_too():
    """Under JAX's autodiff log_sigmoid's derivative at exactly z = 0 was 1 (minimum's gradient split at the tie
    plus |z|' = 1 there), where 1 - sigmoid(0) = 1/2: a zero-initialised output layer's every logit. torch, and
    every other z, were right; jax.nn.log_sigmoid is the reference."""
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    z = np.array([-40.0, -3.0, -1e-300, 0.0, 1e-300, 2.0, 40.0])
    expected = 1 / (1 + np.exp(z))  # 1 - sigmoid(z) = sigmoid(-z)
    ours = jax.vmap(jax.grad(lambda v: lk.log_sigmoid(v)))(jax.numpy.asarray(z))
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(jax.vmap(jax.grad(jax.nn.log_sigmoid))(z)), rtol=1e-15)
    t = torch.tensor(z, requires_grad=True)
    lk.log_sigmoid(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-15)


def test_none_and_a_keepdims_that_is_not_a_bool_are_refused_by_name():
    """None reached the array library ("'NoneType' object has no attribute 'dtype'") and keepdims="no" kept the
    axis (a non-empty string is true; found in review)."""
    for fn in (lk.sigmoid, lk.log_sigmoid, lk.softmax, lk.log_softmax, lk.logsumexp):
        with pytest.raises(lk.LossInputError, match="^logits: expected an array, got None"):
            fn(None)
    with pytest.raises(lk.LossInputError, match="^keepdims: expected True or False, got 'no'"):
        lk.logsumexp(np.zeros(3), keepdims="no")
