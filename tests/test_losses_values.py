"""Loss values against hand-worked examples, 50-digit mpmath, and the peers themselves."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
import mp_reference as mp

LOGITS = [-1e4, -700.0, -100.0, -40.0, -20.0, -3.0, -1e-8, 0.0, 1e-8, 3.0, 20.0, 40.0, 100.0, 700.0, 1e4]
PROBS = [0.0, 1e-300, 1e-40, 1e-8, 0.3, 0.5, 1 - 1e-8, 1.0]


def _close(actual, exact, tol, dtype):
    slack = 2 * float(np.finfo(dtype).smallest_subnormal)
    return abs(float(actual) - float(exact)) <= tol * abs(float(exact)) + slack


# -- worked by hand -------------------------------------------------------------------------------
def test_bce_is_minus_log_p_for_y1_and_minus_log_one_minus_p_for_y0():
    p = np.array([0.9, 0.2, 0.5])
    np.testing.assert_allclose(lk.binary_cross_entropy(p, np.ones(3), reduction="none"), -np.log(p))
    np.testing.assert_allclose(lk.binary_cross_entropy(p, np.zeros(3), reduction="none"), -np.log(1 - p))


def test_softmax_cross_entropy_by_hand():
    # logits log([1, 2, 5]) give probabilities [1/8, 2/8, 5/8]
    z = np.log(np.array([[1.0, 2.0, 5.0]]))
    assert float(lk.softmax_cross_entropy(z, np.array([2]))) == pytest.approx(-np.log(5 / 8), rel=1e-15)
    assert float(lk.softmax_cross_entropy(z, np.array([[0.5, 0.5, 0.0]]))) == pytest.approx(
        -(0.5 * np.log(1 / 8) + 0.5 * np.log(2 / 8)), rel=1e-15)
    # smoothing a = 0.3 over K = 3: y' = [0.1, 0.1, 0.8]
    smoothed = lk.softmax_cross_entropy(z, np.array([2]), label_smoothing=0.3)
    assert float(smoothed) == pytest.approx(-(0.1 * np.log(1 / 8) + 0.1 * np.log(2 / 8) + 0.8 * np.log(5 / 8)))
    _, grad = lk.SoftmaxCrossEntropy().value_and_grad(z, np.array([2]))
    np.testing.assert_allclose(grad, [[1 / 8, 2 / 8, 5 / 8 - 1]], rtol=1e-14)


def test_weighted_mean_and_ignore_by_hand():
    z = np.zeros((3, 2))  # every example's loss is log 2
    y = np.array([0, 1, -1])
    value = lk.softmax_cross_entropy(z, y, ignore_index=-1, class_weight=[1.0, 3.0], weight=[2.0, 1.0, 5.0])
    # weights 2*1, 1*3, 0: mean = (2 + 3) log 2 / 5
    assert float(value) == pytest.approx(np.log(2.0), rel=1e-15)
    summed = lk.softmax_cross_entropy(z, y, ignore_index=-1, class_weight=[1.0, 3.0], reduction="sum")
    assert float(summed) == pytest.approx(4 * np.log(2.0), rel=1e-15)


def test_mse_and_multilabel_by_hand():
    assert float(lk.mean_squared_error(np.array([[1.0, 3.0], [0.0, 0.0]]), np.zeros((2, 2)))) == 2.5
    # two rows of three labels at z = 0: each label costs log 2, a row 3 log 2
    assert float(lk.multilabel_cross_entropy(np.zeros((2, 3)), np.ones((2, 3)))) == pytest.approx(3 * np.log(2))
    # pos_weight 2 doubles the positive term: BCE(z=0, y=1) = 2 log 2
    assert float(lk.binary_cross_entropy_with_logits(np.zeros(1), np.ones(1), pos_weight=2.0)) == \
        pytest.approx(2 * np.log(2))


def test_binary_label_smoothing_by_hand():
    # a = 0.2: y = 1 becomes 0.9
    value = lk.binary_cross_entropy(np.array([0.7]), np.array([1.0]), label_smoothing=0.2)
    assert float(value) == pytest.approx(-(0.9 * np.log(0.7) + 0.1 * np.log(0.3)), rel=1e-15)


# -- 50-digit mpmath on extreme inputs -------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-14), (np.float32, 2e-6)])
@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
def test_bce_with_logits_matches_mpmath(dtype, tol, target):
    z = np.array(LOGITS, dtype=dtype)
    y = np.full_like(z, target)
    loss = lk.BinaryCrossEntropyWithLogits(pos_weight=1.5, reduction="none", impl="xp")
    value, grad = loss(z, y), loss.grad(z, y)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    for zi, v, g in zip(z, value, grad, strict=True):
        assert _close(v, mp.bce_logits(float(zi), target, 1.5), tol, dtype), (zi, v)
        assert _close(g, mp.bce_logits_grad(float(zi), target, 1.5), tol, dtype), (zi, g)


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-14), (np.float32, 2e-6)])
def test_bce_from_probabilities_matches_mpmath_with_the_log_floor(dtype, tol):
    p = np.array(PROBS, dtype=dtype)  # 1e-300 rounds to 0 in float32: the reference sees the same
    for target in (0.0, 1.0, 0.25):
        value = lk.binary_cross_entropy(p, np.full_like(p, target), reduction="none", impl="xp")
        assert np.all(np.isfinite(value))
        for pi, v in zip(p, value, strict=True):
            assert _close(v, mp.bce_probs(float(pi), target), tol, dtype), (pi, target, v)


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-13), (np.float32, 4e-6)])
def test_softmax_cross_entropy_matches_mpmath(dtype, tol):
    rows = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2], [0.0, 1e-8, -1e-8], [700, -700, 0],
                     [30.0, 30.0, -5.0], [-3.0, 1.0, 2.0]], dtype=dtype)
    for label in range(3):
        labels = np.full(len(rows), label)
        loss = lk.SoftmaxCrossEntropy(reduction="none", impl="xp")
        value, grad = loss(rows, labels), loss.grad(rows, labels)
        for row, v, g in zip(rows, value, grad, strict=True):
            assert _close(v, mp.softmax_ce([float(r) for r in row], label), tol, dtype)
            for gk, ek in zip(g, mp.softmax_ce_grad([float(r) for r in row], label), strict=True):
                assert abs(float(gk) - float(ek)) <= tol * max(abs(float(ek)), 1e-30) + 1e-300, (row, gk, ek)


def test_infinite_logits_give_the_exact_limits():
    z = np.array([np.inf, -np.inf, np.inf, -np.inf])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    value, grad = lk.BinaryCrossEntropyWithLogits(reduction="none").value_and_grad(z, y)
    np.testing.assert_array_equal(value, [0.0, 0.0, np.inf, np.inf])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])
    rows = np.array([[np.inf, 0.0, 0.0], [0.0, -np.inf, 1.0]])
    value, grad = lk.SoftmaxCrossEntropy(reduction="none").value_and_grad(rows, np.array([0, 0]))
    assert value[0] == 0.0 and np.isfinite(value[1])
    np.testing.assert_array_equal(grad[0], [0.0, 0.0, 0.0])
    assert np.all(np.isfinite(grad))
    # label smoothing puts a / K on classes of probability 0 beside the +inf: +inf, and the gradient
    # p - y' = (1 - a + a/K, a/K, a/K) subtracted from (1, 0, 0); it was NaN (lse - mean z as inf - inf)
    # for softmax CE, Poly-1 and KL where softmax focal at gamma 0 gave +inf
    a = 0.3
    for loss in (lk.SoftmaxCrossEntropy(label_smoothing=a, reduction="none"),
                 lk.PolyCrossEntropy(epsilon=1.0, label_smoothing=a, reduction="none"),
                 lk.SoftmaxFocalLoss(gamma=0.0, label_smoothing=a, reduction="none")):
        for impl in ("auto", "xp"):
            with np.errstate(invalid="ignore"):
                value, grad = loss.replace(impl=impl).value_and_grad(rows, np.array([0, 0]))
            assert value[0] == np.inf, (type(loss).__name__, impl)
            if isinstance(loss, lk.SoftmaxCrossEntropy) and not isinstance(loss, lk.PolyCrossEntropy):
                np.testing.assert_allclose(grad[0], [a - a / 3, -a / 3, -a / 3], rtol=1e-15)
    assert float(lk.kl_divergence(rows[:1], np.array([[0.5, 0.5, 0.0]]))) == np.inf


# -- the peers as references -----------------------------------------------------------------------
def _rng():
    return np.random.default_rng(42)


def test_matches_torch_binary_losses():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = _rng()
    z = rng.normal(scale=3, size=(8, 5))
    y = (rng.uniform(size=(8, 5)) > 0.5).astype(float)
    w = rng.uniform(0.1, 2, size=(8, 5))
    pw = rng.uniform(0.5, 3, size=5)
    t = torch.from_numpy
    for reduction in ("none", "sum", "mean"):
        expected = F.binary_cross_entropy_with_logits(t(z), t(y), pos_weight=t(pw), reduction=reduction)
        np.testing.assert_allclose(
            lk.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction=reduction), expected.numpy(),
            rtol=1e-12)
        p = 1 / (1 + np.exp(-z))
        expected = F.binary_cross_entropy(t(p), t(y), reduction=reduction)
        np.testing.assert_allclose(lk.binary_cross_entropy(p, y, reduction=reduction), expected.numpy(),
                                   rtol=1e-12)
    # torch's elementwise weight with "sum" equals losskit's per-element weight
    expected = F.binary_cross_entropy_with_logits(t(z), t(y), weight=t(w), reduction="sum")
    np.testing.assert_allclose(lk.binary_cross_entropy_with_logits(z, y, weight=w, reduction="sum"),
                               expected.numpy(), rtol=1e-12)
    # the -100 floor: p = 0 with y = 1
    np.testing.assert_allclose(lk.binary_cross_entropy(np.array([0.0, 1.0]), np.array([1.0, 0.0]),
                                                       reduction="none"),
                               F.binary_cross_entropy(t(np.array([0.0, 1.0])), t(np.array([1.0, 0.0])),
                                                      reduction="none").numpy())


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_matches_torch_cross_entropy(smoothing):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = _rng()
    z = rng.normal(scale=3, size=(10, 6))
    y = rng.integers(0, 6, size=10)
    y[[2, 7]] = -100
    cw = rng.uniform(0.5, 2, size=6)
    t = torch.from_numpy
    for reduction in ("none", "sum", "mean"):
        expected = F.cross_entropy(t(z), t(y), ignore_index=-100, label_smoothing=smoothing,
                                   reduction=reduction)
        actual = lk.softmax_cross_entropy(z, y, ignore_index=-100, label_smoothing=smoothing,
                                          reduction=reduction)
        np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-12, atol=1e-15)
    if smoothing == 0.0:  # with smoothing torch weights each smoothing term by its class (semantics.md)
        for reduction in ("none", "sum", "mean"):
            expected = F.cross_entropy(t(z), t(y), weight=t(cw), ignore_index=-100, reduction=reduction)
            actual = lk.softmax_cross_entropy(z, y, class_weight=cw, ignore_index=-100, reduction=reduction)
            np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-12, atol=1e-15)
    # soft targets, and the class axis at 1 (torch's layout for (N, C, d))
    soft = np.exp(rng.normal(size=(10, 6)))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, soft, label_smoothing=smoothing),
                               F.cross_entropy(t(z), t(soft), label_smoothing=smoothing).numpy(), rtol=1e-12)
    z3 = rng.normal(size=(4, 6, 5))
    y3 = rng.integers(0, 6, size=(4, 5))
    np.testing.assert_allclose(lk.softmax_cross_entropy(z3, y3, axis=1, label_smoothing=smoothing),
                               F.cross_entropy(t(z3), t(y3), label_smoothing=smoothing).numpy(), rtol=1e-12)


def test_matches_torch_mse():
    torch = pytest.importorskip("torch")
    rng = _rng()
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    for reduction in ("sum", "mean"):
        expected = torch.nn.functional.mse_loss(torch.from_numpy(a), torch.from_numpy(b), reduction=reduction)
        scale = 3.0 if reduction == "sum" else 1.0  # losskit's example is a row: its loss is the row mean
        np.testing.assert_allclose(lk.mean_squared_error(a, b, reduction=reduction) * scale, expected.numpy(),
                                   rtol=1e-12)
    expected = torch.nn.functional.mse_loss(torch.from_numpy(a[:, 0]), torch.from_numpy(b[:, 0]), reduction="none")
    np.testing.assert_allclose(lk.mean_squared_error(a[:, 0], b[:, 0], reduction="none"), expected.numpy())


def test_matches_optax():
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    rng = _rng()
    z = rng.normal(scale=3, size=(9, 4))
    y = rng.integers(0, 4, size=9)
    soft = np.exp(rng.normal(size=(9, 4)))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(
        lk.softmax_cross_entropy(z, y, reduction="none"),
        np.asarray(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z), jnp.asarray(y))), rtol=1e-12)
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, soft, reduction="none"),
                               np.asarray(optax.softmax_cross_entropy(jnp.asarray(z), jnp.asarray(soft))),
                               rtol=1e-12)
    smoothed = np.asarray(optax.smooth_labels(jnp.asarray(np.eye(4)[y]), 0.2))
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, y, label_smoothing=0.2, reduction="none"),
                               np.asarray(optax.softmax_cross_entropy(jnp.asarray(z), jnp.asarray(smoothed))),
                               rtol=1e-12)
    b = (rng.uniform(size=(9, 4)) > 0.5).astype(float)
    np.testing.assert_allclose(lk.binary_cross_entropy_with_logits(z, b, reduction="none"),
                               np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(z), jnp.asarray(b))),
                               rtol=1e-12)
    np.testing.assert_allclose(lk.mean_squared_error(z[:, 0], b[:, 0], reduction="none"),
                               np.asarray(optax.squared_error(jnp.asarray(z[:, 0]), jnp.asarray(b[:, 0]))),
                               rtol=1e-12)


def test_matches_sklearn_log_loss():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = _rng()
    p = rng.uniform(0.01, 0.99, size=50)
    y = (rng.uniform(size=50) > 0.5).astype(int)
    w = rng.uniform(0.1, 3, size=50)
    np.testing.assert_allclose(lk.binary_cross_entropy(p, y, weight=w),
                               metrics.log_loss(y, p, sample_weight=w), rtol=1e-12)
    probs = np.exp(rng.normal(size=(50, 3)))
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, 3, size=50)
    labels[:3] = [0, 1, 2]
    np.testing.assert_allclose(lk.categorical_cross_entropy(probs, labels, weight=w),
                               metrics.log_loss(labels, probs, sample_weight=w), rtol=1e-12)
    np.testing.assert_allclose(lk.categorical_cross_entropy(probs, labels, reduction="sum"),
                               metrics.log_loss(labels, probs, normalize=False), rtol=1e-12)


def test_replace_keeps_the_options_and_checks_the_changes():
    loss = lk.HuberLoss(delta=2.0)
    per_example = loss.replace(reduction="none")
    assert type(per_example) is lk.HuberLoss and per_example.delta == 2.0 and per_example.reduction == "none"
    assert loss.reduction == "mean"  # the original is unchanged
    with pytest.raises(lk.LossInputError, match="delta"):
        loss.replace(delta=-1.0)


@pytest.mark.parametrize("impl", ["xp", "fused"])
@pytest.mark.parametrize("make, z, y", [
    (lambda impl: lk.AbsoluteError(impl=impl), [3e38, 3e38], [0.0, 0.0]),
    (lambda impl: lk.HuberLoss(impl=impl), [3e38, -3e38], [0.0, 0.0]),
    (lambda impl: lk.BinaryCrossEntropyWithLogits(impl=impl), [-3e38, -3e38], [1.0, 1.0]),
])
def test_a_float32_mean_near_the_largest_number_is_finite_on_every_path(make, z, y, impl):
    """The mean of two float32 losses of 3e38 is 3e38: the reference summed first (inf) where the compiled
    kernels scale each row; a first call, answered by the reference while its kernel compiles, gave inf."""
    z, y = np.float32(z), np.float32(y)
    with np.errstate(over="ignore"):
        value = make(impl)(z, y)
    assert value.dtype == np.float32 and float(value) == pytest.approx(3e38, rel=1e-6)


def test_a_float32_mean_near_the_largest_number_is_finite_on_jax_and_torch_cpu_arrays():
    """As above, on JAX and torch CPU arrays (the reference path): the guard asked for a device named "cpu",
    and JAX's is "cpu:0" (found in review: inf where NumPy gives 2.25e38)."""
    errors = np.full(2, 1.5e19, np.float32)
    for library in ("jax.numpy", "torch"):
        lib = pytest.importorskip(library)
        array = lib.asarray(errors)
        value = lk.mean_squared_error(array, array * 0)
        assert float(value) == pytest.approx(2.25e38, rel=1e-6), library


def test_the_forms_on_logits_and_on_probabilities_name_each_other():
    """A loss on logits and its form on probabilities are declared as one pair (``probability_form`` /
    ``logits_form``), each read from the class's own namespace."""
    pairs = {cls: cls.__dict__["probability_form"] for cls, _ in lk.REGISTRY.values()
             if cls.__dict__.get("probability_form") is not None}
    assert pairs == {lk.BinaryCrossEntropyWithLogits: lk.BinaryCrossEntropy,
                     lk.SoftmaxCrossEntropy: lk.CategoricalCrossEntropy}
    assert all(probs.__dict__["logits_form"] is logits for logits, probs in pairs.items())
