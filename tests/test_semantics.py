"""Every recipe and every documented difference in docs/semantics.md, against the peers themselves."""

from __future__ import annotations

import os

import numpy as np
import pytest

import losskit as lk

N, K = 7, 4


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    z = rng.normal(scale=2, size=(N, K))
    y = rng.integers(0, K, size=N)
    y[:K] = np.arange(K)
    q = np.exp(rng.normal(size=(N, K)))
    q /= q.sum(1, keepdims=True)
    return {
        "z": z, "y": y, "q": q,
        "t": (rng.uniform(size=(N, K)) > 0.5).astype(float),
        "w": rng.uniform(0.2, 3, size=N),
        "cw": rng.uniform(0.5, 2, size=K),
        "p": 1 / (1 + np.exp(-z)),
    }


def _one_hot(y):
    return np.eye(K)[y]


# -- PyTorch ----------------------------------------------------------------------------------------
@pytest.fixture
def F():
    torch = pytest.importorskip("torch")
    return torch.nn.functional


def _t(a):
    import torch

    return torch.from_numpy(np.asarray(a))


def test_torch_recipes(F, data):
    z, y, t, cw, w = data["z"], data["y"], data["t"], data["cw"], data["w"]
    y_ign = y.copy()
    y_ign[[1, 5]] = -100
    pairs = [
        (F.cross_entropy(_t(z), _t(y)), lk.softmax_cross_entropy(z, y)),
        (F.cross_entropy(_t(z), _t(y_ign)), lk.softmax_cross_entropy(z, y_ign, ignore_index=-100)),
        (F.cross_entropy(_t(z), _t(y), weight=_t(cw)), lk.softmax_cross_entropy(z, y, class_weight=cw)),
        (F.cross_entropy(_t(z), _t(y), label_smoothing=0.3), lk.softmax_cross_entropy(z, y, label_smoothing=0.3)),
        (F.binary_cross_entropy_with_logits(_t(z), _t(t), pos_weight=_t(cw)),
         lk.binary_cross_entropy_with_logits(z, t, pos_weight=cw)),
        (F.binary_cross_entropy_with_logits(_t(z), _t(t), weight=_t(w[:, None] * t + 0.5)),
         lk.binary_cross_entropy_with_logits(z, t, weight=w[:, None] * t + 0.5, normalizer=t.size)),
        (F.binary_cross_entropy(_t(data["p"]), _t(t)), lk.binary_cross_entropy(data["p"], t)),
        (F.mse_loss(_t(z), _t(t)), lk.mean_squared_error(z, t)),
        (F.binary_cross_entropy_with_logits(_t(z), _t(t)), lk.multilabel_cross_entropy(z, t) / K),
    ]
    z3 = np.random.default_rng(1).normal(size=(3, K, 5))
    y3 = np.random.default_rng(2).integers(0, K, size=(3, 5))
    pairs.append((F.cross_entropy(_t(z3), _t(y3)), lk.softmax_cross_entropy(z3, y3, axis=1)))
    for expected, actual in pairs:
        np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-12)


def test_torch_class_weight_with_label_smoothing_recipe_and_difference(F, data):
    z, y, cw, a = data["z"], data["y"], data["cw"], 0.2
    expected = F.cross_entropy(_t(z), _t(y), weight=_t(cw), label_smoothing=a).numpy()
    coef = (1 - a) * cw[y, None] * _one_hot(y) + (a / K) * cw
    s = coef.sum(-1)
    recipe = lk.softmax_cross_entropy(z, coef / s[:, None], weight=s, normalizer=cw[y].sum())
    np.testing.assert_allclose(recipe, expected, rtol=1e-12)
    # the documented difference: losskit weights the whole smoothed loss by cw[y_i]
    ours = lk.softmax_cross_entropy(z, y, class_weight=cw, label_smoothing=a)
    per_example = lk.softmax_cross_entropy(z, y, label_smoothing=a, reduction="none")
    np.testing.assert_allclose(ours, np.sum(cw[y] * per_example) / np.sum(cw[y]), rtol=1e-12)
    assert abs(float(ours) - float(expected)) > 1e-3


def test_torch_class_weight_with_probability_targets_recipe_and_difference(F, data):
    z, q, cw = data["z"], data["q"], data["cw"]
    expected = F.cross_entropy(_t(z), _t(q), weight=_t(cw)).numpy()
    coef = cw * q
    s = coef.sum(-1)
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, coef / s[:, None], weight=s, normalizer=N),
                               expected, rtol=1e-12)
    ours = lk.softmax_cross_entropy(z, q, class_weight=cw)
    per_example = lk.softmax_cross_entropy(z, q, reduction="none")
    np.testing.assert_allclose(ours, np.sum(s * per_example) / np.sum(s), rtol=1e-12)


def test_torch_all_ignored_mean_is_nan_but_ours_is_zero(F, data):
    y = np.full(N, -100)
    assert np.isnan(F.cross_entropy(_t(data["z"]), _t(y)).item())
    value, grad = lk.SoftmaxCrossEntropy(ignore_index=-100).value_and_grad(data["z"], y)
    assert float(value) == 0.0 and np.all(grad == 0)


def test_torch_ignores_minus_100_by_default_and_we_refuse_it(F, data):
    y = data["y"].copy()
    y[0] = -100
    assert np.isfinite(F.cross_entropy(_t(data["z"]), _t(y)).item())
    with pytest.raises(lk.LossInputError, match="label -100"):
        lk.softmax_cross_entropy(data["z"], y)


def test_torch_bce_weight_mean_divides_by_elements_ours_by_weights(F, data):
    z, t = data["z"], data["t"]
    w = np.broadcast_to(data["w"][:, None], z.shape).copy()
    torch_mean = F.binary_cross_entropy_with_logits(_t(z), _t(t), weight=_t(w)).numpy()
    total = lk.binary_cross_entropy_with_logits(z, t, weight=w, reduction="sum")
    np.testing.assert_allclose(torch_mean, total / z.size, rtol=1e-12)
    np.testing.assert_allclose(lk.binary_cross_entropy_with_logits(z, t, weight=w), total / w.sum(), rtol=1e-12)


def test_torch_mse_sum_is_d_times_ours(F, data):
    z, t = data["z"], data["t"]
    np.testing.assert_allclose(F.mse_loss(_t(z), _t(t), reduction="sum").numpy(),
                               K * lk.mean_squared_error(z, t, reduction="sum"), rtol=1e-12)


def test_torch_takes_unnormalised_probabilities_we_refuse_them(F):
    p = np.array([[0.2, 0.2, 0.2]])
    assert np.isfinite(F.nll_loss(_t(np.log(p)), _t(np.array([1]))).item())
    with pytest.raises(lk.LossInputError, match="sum to 1"):
        lk.categorical_cross_entropy(p, np.array([1]))


# -- Keras ------------------------------------------------------------------------------------------
@pytest.fixture
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


KERAS_TOL = 2e-6  # Keras computes in float32


def test_keras_recipes(keras, data):
    z, y, t, w = data["z"], data["y"], data["t"], data["w"]
    L = keras.losses
    pairs = [
        (L.SparseCategoricalCrossentropy(from_logits=True)(y, z, sample_weight=w),
         lk.softmax_cross_entropy(z, y, weight=w, normalizer=N)),
        (L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(_one_hot(y), z),
         lk.softmax_cross_entropy(z, y, label_smoothing=0.2)),
        (L.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(t, z),
         lk.multilabel_cross_entropy(z, t, label_smoothing=0.2) / K),
        (L.BinaryCrossentropy(from_logits=True)(t, z, sample_weight=w),
         lk.multilabel_cross_entropy(z, t, weight=w, normalizer=N * K)),
        (L.MeanSquaredError()(t, z, sample_weight=w), lk.mean_squared_error(z, t, weight=w, normalizer=N)),
    ]
    for expected, actual in pairs:
        np.testing.assert_allclose(actual, float(expected), rtol=KERAS_TOL)


def test_keras_ignore_class_averages_over_kept_examples_like_ours(keras, data):
    z, y = data["z"], data["y"].copy()
    y[[0, 3]] = -1
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, y, ignore_index=-1), float(loss(y, z)), rtol=KERAS_TOL)
    everything = np.full(N, -1)
    assert float(loss(everything, z)) == 0.0 == float(lk.softmax_cross_entropy(z, everything, ignore_index=-1))


def test_keras_clips_probabilities_where_we_floor_the_log(keras):
    p, t = np.array([[0.0, 1.0, 0.3]], np.float32), np.array([[1.0, 0.0, 1.0]], np.float32)
    expected = float(keras.losses.BinaryCrossentropy()(t, p))
    eps = np.float32(1e-7)  # Keras clips in float32: 1 - eps rounds there too
    clipped = lk.binary_cross_entropy(np.clip(p, eps, np.float32(1) - eps), t)
    np.testing.assert_allclose(clipped, expected, rtol=KERAS_TOL)
    assert float(lk.binary_cross_entropy(p, t)) > expected + 50  # the -100 floor, 100 per saturated term


# -- Optax ------------------------------------------------------------------------------------------
def test_optax_recipes(data):
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    z, y, q, t = data["z"], data["y"], data["q"], data["t"]
    j = jnp.asarray
    pairs = [
        (optax.softmax_cross_entropy_with_integer_labels(j(z), j(y)), lk.softmax_cross_entropy(z, y, reduction="none")),
        (optax.softmax_cross_entropy(j(z), j(q)), lk.softmax_cross_entropy(z, q, reduction="none")),
        (optax.softmax_cross_entropy(j(z), optax.smooth_labels(j(_one_hot(y)), 0.3)),
         lk.softmax_cross_entropy(z, y, label_smoothing=0.3, reduction="none")),
        (optax.sigmoid_binary_cross_entropy(j(z), j(t)), lk.binary_cross_entropy_with_logits(z, t, reduction="none")),
        (optax.squared_error(j(z[:, 0]), j(t[:, 0])), lk.mean_squared_error(z[:, 0], t[:, 0], reduction="none")),
        (optax.l2_loss(j(z[:, 0]), j(t[:, 0])), 0.5 * lk.mean_squared_error(z[:, 0], t[:, 0], reduction="none")),
    ]
    for expected, actual in pairs:
        np.testing.assert_allclose(actual, np.asarray(expected), rtol=1e-12)


# -- scikit-learn -----------------------------------------------------------------------------------
def test_sklearn_recipes(data):
    metrics = pytest.importorskip("sklearn.metrics")
    p = np.exp(data["z"])
    p /= p.sum(1, keepdims=True)
    y, w, t = data["y"], data["w"], data["t"]
    p1 = data["p"][:, 0]
    yb = (data["t"][:, 0] > 0).astype(int)
    pairs = [
        (metrics.log_loss(y, p, sample_weight=w), lk.categorical_cross_entropy(p, y, weight=w)),
        (metrics.log_loss(yb, p1), lk.binary_cross_entropy(p1, yb)),
        (metrics.log_loss(y, p, normalize=False), lk.categorical_cross_entropy(p, y, reduction="sum")),
        (metrics.mean_squared_error(t, data["z"], sample_weight=w), lk.mean_squared_error(data["z"], t, weight=w)),
    ]
    for expected, actual in pairs:
        np.testing.assert_allclose(actual, expected, rtol=1e-12)


def test_sklearn_clips_to_eps_where_we_floor_the_log():
    metrics = pytest.importorskip("sklearn.metrics")
    p, y = np.array([0.0, 1.0, 0.4]), np.array([1, 0, 1])
    eps = np.finfo(p.dtype).eps
    expected = metrics.log_loss(y, p)
    np.testing.assert_allclose(lk.binary_cross_entropy(np.clip(p, eps, 1 - eps), y), expected, rtol=1e-12)
    np.testing.assert_allclose(lk.binary_cross_entropy(p, y), (100 + 100 - np.log(0.4)) / 3, rtol=1e-12)


def test_float32_weights_whose_sum_overflows_give_the_weighted_mean():
    """Two float32 weights of 3e38 sum to inf: the scales w / inf were 0, so the mean and every gradient
    were silently 0. The weighted mean is sum(w l) / sum(w) computed in float64, and the gradient its
    rows over the same sum."""
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0], [2.0, -1.0, 0.5]], dtype=np.float32)
    y = np.array([0, 2, 1])
    w = np.array([3e38, 3e38, 1e38], dtype=np.float32)
    z64, w64 = z.astype(np.float64), w.astype(np.float64)
    log_p = z64 - np.log(np.exp(z64).sum(1, keepdims=True))
    expected = np.sum(w64 * -log_p[np.arange(3), y]) / w64.sum()
    grad = (np.exp(log_p) - np.eye(3)[y]) * (w64 / w64.sum())[:, None]
    with np.errstate(over="ignore"):
        value, got = lk.SoftmaxCrossEntropy().value_and_grad(z, y, weight=w)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        np.testing.assert_allclose(got, grad, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(lk.softmax_cross_entropy(z, y, weight=w, impl="xp"), expected, rtol=1e-6)
        np.testing.assert_allclose(lk.linear_cross_entropy(z, np.eye(3, dtype=np.float32), y, weight=w), expected,
                                   rtol=1e-6)
    # eager JAX gave NaN (XLA divides by multiplying with the reciprocal, and 1 / 3e38 is flushed to 0),
    # jit and Dask 0 (the overflow is not known before the run there)
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    f = lj.loss_fn(lk.SoftmaxCrossEntropy())
    args = (jnp.asarray(y), jnp.asarray(w))
    for value, g in (jax.value_and_grad(f)(jnp.asarray(z), *args),
                     jax.jit(jax.value_and_grad(f))(jnp.asarray(z), *args)):
        np.testing.assert_allclose(float(value), expected, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(g), grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(jax.jit(lambda z: lk.softmax_cross_entropy(z, *args[:1], weight=args[1]))(
        jnp.asarray(z))), expected, rtol=1e-6)
    da = pytest.importorskip("dask.array")
    np.testing.assert_allclose(float(lk.softmax_cross_entropy(da.from_array(z), da.from_array(y),
                                                              weight=da.from_array(w)).compute()), expected, rtol=1e-6)


# -- a NaN logit ---------------------------------------------------------------------------------------
_NAN_ROW_LOSSES = [("softmax_cross_entropy", "labels"), ("kl_divergence", "probs"), ("distillation_loss", "logits"),
                   ("js_divergence", "logits"), ("softmax_focal_loss", "labels"), ("poly_cross_entropy", "labels")]


def _nan_row_case(data, kind):
    z = data["z"].copy()
    z[2, 1] = np.nan
    target = {"labels": data["y"], "probs": data["q"], "logits": data["z"][::-1].copy()}[kind]
    return z, target


@pytest.mark.parametrize("impl", ["xp", "auto"])
@pytest.mark.parametrize("name, kind", _NAN_ROW_LOSSES)
def test_a_nan_logit_makes_its_row_nan_and_leaves_the_others(data, name, kind, impl):
    """docs/semantics.md: a row holding a NaN logit has a NaN loss and gradient (as in PyTorch, Keras and
    Optax); it was taken for a row of -inf logits and given the uniform limit (log K, a finite gradient)."""
    from losskit.losses import REGISTRY

    cls = REGISTRY[name][0]
    z, target = _nan_row_case(data, kind)
    loss = cls(reduction="none", impl=impl)
    value, grad = loss.value_and_grad(z, target)
    assert np.isnan(value[2]) and np.isnan(grad[2]).all()
    keep = np.arange(N) != 2
    clean_value, clean_grad = cls(reduction="none", impl="xp").value_and_grad(z[keep], target[keep])
    np.testing.assert_allclose(value[keep], clean_value, rtol=1e-12)
    np.testing.assert_allclose(grad[keep], clean_grad, rtol=1e-12, atol=1e-15)
    assert np.isnan(cls(impl=impl)(z, target))  # the mean too


@pytest.mark.parametrize("name, kind", _NAN_ROW_LOSSES)
def test_a_nan_logit_makes_its_row_nan_in_torch_and_jax(data, name, kind):
    from losskit.losses import REGISTRY

    cls = REGISTRY[name][0]
    z, target = _nan_row_case(data, kind)
    torch = pytest.importorskip("torch")
    lt = pytest.importorskip("losskit.torch")
    zt = torch.tensor(z, requires_grad=True)
    value = lt.module(cls(reduction="none"))(zt, torch.tensor(target))
    value.sum().backward()
    assert torch.isnan(value[2]) and torch.isnan(zt.grad[2]).all() and torch.isfinite(value[np.arange(N) != 2]).all()
    jax = pytest.importorskip("jax")
    lj = pytest.importorskip("losskit.jax")
    f = lj.loss_fn(cls(reduction="none"))
    value, vjp = jax.vjp(lambda a: f(a, jax.numpy.asarray(target)), jax.numpy.asarray(z))
    grad = vjp(jax.numpy.ones(N))[0]
    assert np.isnan(value[2]) and np.isnan(np.asarray(grad[2])).all() and np.isfinite(np.asarray(value)[np.arange(N) != 2]).all()


def test_a_target_outside_the_domain_is_refused_where_the_peers_take_it():
    """docs/semantics.md: losskit refuses a BCE target of 1.5 and a Poisson target of -1 by name (NaN where no
    check can read them: tests/test_errors.py); PyTorch and optax compute a finite number from them; scikit-learn
    refuses the negative count."""
    torch = pytest.importorskip("torch")
    z, bad_label, bad_count = np.array([0.3, -0.7]), np.array([1.5, 1.0]), np.array([-1.0, 2.0])
    with pytest.raises(lk.LossInputError, match="^target: "):
        lk.binary_cross_entropy_with_logits(z, bad_label)
    with pytest.raises(lk.LossInputError, match="^target: "):
        lk.poisson_deviance(z, bad_count)
    t = torch.from_numpy
    assert np.isfinite(torch.nn.functional.binary_cross_entropy_with_logits(t(z), t(bad_label)).item())
    assert np.isfinite(torch.nn.functional.poisson_nll_loss(t(z), t(bad_count), log_input=True).item())
    optax = pytest.importorskip("optax")
    assert np.isfinite(np.asarray(optax.sigmoid_binary_cross_entropy(z, bad_label))).all()
    metrics = pytest.importorskip("sklearn.metrics")
    with pytest.raises(ValueError):
        metrics.mean_poisson_deviance(bad_count, np.exp(z))


def test_a_bad_soft_target_or_negative_weight_is_refused_where_the_peers_take_it():
    """docs/semantics.md: losskit refuses a soft-target row summing to 1.5 and a negative weight by name (NaN
    where no check can read them: tests/test_errors.py); PyTorch and optax compute a finite number from the
    row, and PyTorch from a negative class weight."""
    torch = pytest.importorskip("torch")
    z, soft = np.array([[0.3, -1.2, 2.0]]), np.array([[0.5, 0.5, 0.5]])
    with pytest.raises(lk.LossInputError, match="^target: "):
        lk.softmax_cross_entropy(z, soft)
    with pytest.raises(lk.LossInputError, match="^weight: "):
        lk.softmax_cross_entropy(z, np.array([0]), weight=np.array([-1.0]))
    t = torch.from_numpy
    assert np.isfinite(torch.nn.functional.cross_entropy(t(z), t(soft)).item())
    value = torch.nn.functional.cross_entropy(t(z), t(np.array([0])), weight=t(np.array([-1.0, 1.0, 1.0])),
                                              reduction="sum").item()
    assert np.isfinite(value) and value < 0
    optax = pytest.importorskip("optax")
    assert np.isfinite(np.asarray(optax.softmax_cross_entropy(z, soft))).all()


def test_an_option_set_after_construction_is_refused_where_torch_takes_it():
    """docs/semantics.md: losskit refuses an option set on a loss object after construction (naming replace);
    a PyTorch loss module reads its attribute at the next call."""
    torch = pytest.importorskip("torch")
    loss = lk.SoftmaxCrossEntropy()
    with pytest.raises(AttributeError, match=r"loss\.replace\(reduction=\.\.\.\)"):
        loss.reduction = "sum"
    z, y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    module = torch.nn.CrossEntropyLoss()
    module.reduction = "sum"
    assert module(z, y).item() == pytest.approx(4 * np.log(3), rel=1e-6)


def test_review_of_the_shared_semantics_edge_cases():
    """Five defects found in review, each against an independent reference:
    - float32 squared errors that fit, whose sum over a row does not: the reference path's mean was inf (the
      compiled kernel's, and the true mean, finite);
    - an option set after construction to a list raised "unhashable type" (the documented AttributeError
      naming replace), and True over 1 was taken as unchanged;
    - a weight times a class weight overflowing float32 gave a silent NaN mean: refused naming weight;
    - out= of the input's library but another type (an ndarray for a memmap) was refused;
    - float32 weights whose sum overflows let NumPy's overflow warning escape the reference path."""
    import warnings

    z = np.array([[1.5e19, 1.5e19], [1.0, 2.0]], np.float32)
    for impl in ("xp", "fused"):
        got = lk.MeanSquaredError(impl=impl, reduction="none")(z, np.zeros_like(z))
        np.testing.assert_allclose(got, [2.25e38, 2.5], rtol=1e-6)
    loss = lk.SoftmaxCrossEntropy(ignore_index=1)
    with pytest.raises(AttributeError, match="replace"):
        loss.class_weight = [1.0, 2.0, 3.0]
    with pytest.raises(AttributeError, match="replace"):
        loss.ignore_index = True
    rng = np.random.default_rng(11)
    logits, labels = rng.normal(size=(4, 3)).astype(np.float32), np.array([0, 1, 2, 1])
    with pytest.raises(lk.LossInputError, match=r"^weight: expected weights whose products with the class weights "
                                                r"fit float32"):
        lk.SoftmaxCrossEntropy(class_weight=[1e10, 1, 1])(logits, labels, weight=np.array([1e30, 1, 1, 1], np.float32))
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        mapped = np.memmap(f"{folder}/z.dat", dtype=np.float64, mode="w+", shape=(4, 3))
        mapped[:] = logits
        out = np.empty((4, 3))
        value, grad = lk.SoftmaxCrossEntropy().value_and_grad(mapped, labels, out=out)
        expected = lk.SoftmaxCrossEntropy().value_and_grad(np.asarray(mapped).copy(), labels)
        assert grad is out and value == expected[0] and np.array_equal(out, expected[1])
        del mapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = lk.SoftmaxCrossEntropy(impl="xp")(logits[:2], labels[:2], weight=np.array([3e38, 3e38], np.float32))
    z64 = logits[:2].astype(np.float64)
    log_p = z64 - np.log(np.exp(z64).sum(1, keepdims=True))
    assert float(value) == pytest.approx(float(np.mean(-log_p[[0, 1], labels[:2]])), rel=1e-6)


def test_a_bad_target_with_out_as_the_input_is_named_as_the_target():
    """With out=x on a call of 2^18 elements or more, a target outside the loss's domain is found after the
    gradient was written in place: the error named `out`, where every other path names `target` (found in
    review). It names the target, and says the input was overwritten."""
    rng = np.random.default_rng(12)
    z = rng.normal(size=(600, 1000)).astype(np.float32)
    t = (z > 0).astype(np.float32)
    t[5, 5] = 1.5
    with pytest.raises(lk.LossInputError, match=r"^target: expected .*\(the input given as out= now holds partial "
                                                r"gradients\)$"):
        lk.BinaryCrossEntropyWithLogits().value_and_grad(z, t, out=z)
