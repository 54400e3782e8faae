"""losskit.jax: custom_vjp losses and heads under grad, jit and vmap, and an optax training run."""

from __future__ import annotations

import numpy as np
import pytest

from cases import all_cases, cases_for

jax = pytest.importorskip("jax")
lj = pytest.importorskip("losskit.jax")

import jax.numpy as jnp  # noqa: E402

import losskit as lk  # noqa: E402

CASES = all_cases()
IDS = [c[0] for c in CASES]


def _weight(case):
    return np.random.default_rng(3).uniform(0.2, 2.0, size=case.batch_shape)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_grad_and_jit_equal_the_core_gradient(cid, name, case_name, reduction):
    case = cases_for(name)[case_name]
    fn = getattr(lj, name)
    target, weight = jnp.asarray(case.target), jnp.asarray(_weight(case))
    upstream = jnp.asarray(np.random.default_rng(5).normal(size=case.batch_shape)) if reduction == "none" else 1.0

    def objective(z):
        return jnp.sum(fn(z, target, weight=weight, normalizer=2.5, reduction=reduction, **case.options) * upstream)

    core = lk.REGISTRY[name][0](reduction=reduction, impl="xp", **case.options)
    # reference: jax's own autodiff through the core's forward expression
    expected = jax.grad(lambda z: jnp.sum(core(z, target, weight=weight, normalizer=2.5) * upstream))(
        jnp.asarray(case.input))
    np.testing.assert_allclose(jax.grad(objective)(jnp.asarray(case.input)), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.grad(objective))(jnp.asarray(case.input)), expected,
                               rtol=1e-10, atol=1e-12)


def test_vmap_over_examples_matches_reduction_none():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(6, 4)))
    y = jnp.asarray(rng.integers(0, 4, size=6))
    per_example = jax.vmap(lambda zi, yi: lj.softmax_cross_entropy(zi[None], yi[None], label_smoothing=0.1))(z, y)
    np.testing.assert_allclose(per_example, lk.softmax_cross_entropy(z, y, label_smoothing=0.1, reduction="none"),
                               rtol=1e-12)
    grads = jax.vmap(jax.grad(lambda zi, yi: lj.softmax_cross_entropy(zi[None], yi[None])))(z, y)
    np.testing.assert_allclose(grads, lk.SoftmaxCrossEntropy(reduction="sum").grad(z, y), rtol=1e-12)


def test_integer_labels_get_no_cotangent():
    z = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)))
    y = jnp.asarray([0, 2, 3])
    grads = jax.grad(lambda z, y: lj.softmax_cross_entropy(z, y), argnums=(0, 1), allow_int=True)(z, y)
    assert grads[1].dtype == jax.dtypes.float0


def test_reverse_over_reverse_second_derivative_matches_hessian_diag():
    z = jnp.asarray([0.3, -2.0, 4.0])
    t = jnp.asarray([1.0, 0.0, 0.25])
    hess = jax.jacrev(jax.grad(lambda z: lj.binary_cross_entropy_with_logits(z, t, pos_weight=2.0)))(z)
    np.testing.assert_allclose(jnp.diag(hess), lk.BinaryCrossEntropyWithLogits(pos_weight=2.0).hessian_diag(z, t),
                               rtol=1e-12)


def test_head_loss_is_differentiable_and_keeps_the_core_head():
    head = lj.head("multiclass", n_classes=3, label_smoothing=0.1)
    z = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)))
    y = jnp.asarray([0, 1, 2, 1])
    np.testing.assert_allclose(jax.grad(lambda z: head.loss(z, y))(z),
                               lk.head("multiclass", n_classes=3, label_smoothing=0.1).grad(z, y), rtol=1e-12)
    assert head.units == 3
    np.testing.assert_array_equal(head.predict(z), np.argmax(np.asarray(z), axis=-1))


def test_optax_training_on_digits_reduces_the_loss():
    optax = pytest.importorskip("optax")
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = jnp.asarray(digits.data / 16.0, dtype=jnp.float32)
    y = jnp.asarray(digits.target)
    key = jax.random.PRNGKey(0)
    params = {"w": 0.1 * jax.random.normal(key, (64, 10), dtype=jnp.float32), "b": jnp.zeros(10, jnp.float32)}
    optimiser = optax.adam(0.05)
    state = optimiser.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: lj.softmax_cross_entropy(x @ p["w"] + p["b"], y))(params)
        updates, state = optimiser.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(40):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.25 * losses[0]
    accuracy = float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"], -1) == y))
    assert accuracy > 0.9
