"""losskit.jax: custom_vjp losses and heads under grad, jit and vmap, and an optax training run."""

from __future__ import annotations

import functools
import os
import re

import numpy as np
import pytest

from cases import all_cases, cases_for

jax = pytest.importorskip("jax")
lj = pytest.importorskip("losskit.jax")
pytest.importorskip("torch")  # the gradients' reference (autograd_reference)

import jax.numpy as jnp  # noqa: E402

import autograd_reference  # noqa: E402
import losskit as lk  # noqa: E402

CASES = all_cases()
IDS = [c[0] for c in CASES]


def _function(name):
    """``losskit.jax.<name>``; for a loss the module does not name yet, the same construction from
    ``loss_fn`` (see ``test_every_registered_loss_has_its_jax_function``)."""
    if hasattr(lj, name):
        return getattr(lj, name)
    cls = lk.REGISTRY[name][0]

    def fn(logits, target, *, weight=None, normalizer=None, **options):
        return lj.loss_fn(cls(impl="xp", **options))(logits, target, weight, normalizer)

    return fn


def test_every_registered_loss_has_its_jax_function():
    missing = [name for name in lk.losses.catalogue() if not hasattr(lj, name)]
    assert not missing, missing


#: losses whose float target is a label read as a sign (0/1 or -1/+1): its cotangent is truly 0
_SIGN_TARGETS = {name for name, (cls, _) in lk.REGISTRY.items() if getattr(cls, "target", None) == "sign"}


def _weight(case):
    return np.random.default_rng(3).uniform(0.2, 2.0, size=case.batch_shape)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_grad_and_jit_equal_the_core_gradient(cid, name, case_name, reduction):
    case = cases_for(name)[case_name]
    fn = _function(name)
    target, weight = jnp.asarray(case.target), jnp.asarray(_weight(case))
    upstream = jnp.asarray(np.random.default_rng(5).normal(size=case.batch_shape)) if reduction == "none" else 1.0

    def objective(z):
        return jnp.sum(fn(z, target, weight=weight, normalizer=2.5, reduction=reduction, **case.options) * upstream)

    core = lk.REGISTRY[name][0](reduction=reduction, impl="xp", **case.options)
    # reference: autodiff through the core's forward expression
    expected = autograd_reference.grad(core, case.input, case.target, weight=weight, normalizer=2.5,
                                       upstream=upstream)
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


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_float_targets_weights_and_normalizer_get_their_true_cotangents(cid, name, case_name):
    """Soft targets (a teacher's probabilities), weights and the normalizer: not a silent zero."""
    case = cases_for(name)[case_name]
    fn = _function(name)
    core = lk.REGISTRY[name][0](impl="xp", **case.options)
    z, target, weight = jnp.asarray(case.input), jnp.asarray(case.target), jnp.asarray(_weight(case))
    # (a sign target, the hinge losses', is held constant: differentiated it is refused, test_target_cotangents)
    float_target = jnp.issubdtype(target.dtype, jnp.floating) and name not in _SIGN_TARGETS
    argnums = (0, 1, 2) if float_target else (1, 2)

    def ours(target, weight, normalizer):
        return fn(z, target, weight=weight, normalizer=normalizer, **case.options)

    args = (target, weight, 2.5)
    got = jax.jit(jax.grad(ours, argnums=argnums, allow_int=True))(*args)
    # reference: autodiff through the core's forward expression
    expected = autograd_reference.cotangents(core, z, target, weight, 2.5, float_target=float_target)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    if float_target and name not in _SIGN_TARGETS:
        assert float(jnp.abs(got[0]).max()) > 0


def _target_gradients_against_optax(target):
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(10)
    z = jnp.asarray(rng.normal(size=target.shape))
    ours = jax.grad(lambda t: lj.softmax_cross_entropy(z, t))(target)
    theirs = jax.grad(lambda t: optax.softmax_cross_entropy(z, t).mean())(target)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    ours = jax.grad(lambda t: lj.binary_cross_entropy_with_logits(z, t))(target)
    theirs = jax.grad(lambda t: optax.sigmoid_binary_cross_entropy(z, t).mean())(target)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_soft_target_gradients_equal_optax():
    rng = np.random.default_rng(11)
    _target_gradients_against_optax(jnp.asarray(rng.dirichlet(np.ones(4), size=5)))


def test_one_hot_target_gradients_equal_optax():
    """At target entries of exactly 0 or 1: -log p_k / N (CE) and -z / N (BCE), not 0. Every other
    loss with a float target: tests/test_target_cotangents.py."""
    _target_gradients_against_optax(jnp.eye(4)[jnp.asarray([0, 1, 2, 3, 0])])


def test_reverse_over_reverse_second_derivative_matches_hessian_diag():
    z = jnp.asarray([0.3, -2.0, 4.0])
    t = jnp.asarray([1.0, 0.0, 0.25])
    hess = jax.jacrev(jax.grad(lambda z: lj.binary_cross_entropy_with_logits(z, t, pos_weight=2.0)))(z)
    np.testing.assert_allclose(jnp.diag(hess), lk.BinaryCrossEntropyWithLogits(pos_weight=2.0).hessian_diag(z, t),
                               rtol=1e-12)


_DELTA = 0.7
#: name -> (loss, errors, exact second derivative of one element in mpmath)
_CURVATURES = {
    "pseudo_huber": (lk.PseudoHuberLoss(delta=_DELTA, reduction="sum"), [0.3, -2.0, 40.0, -3e3, 1e6, 2e8, -1e12],
                     lambda mp, e, delta: (1 + (e / delta) ** 2) ** -1.5),
    # log-cosh runs its arithmetic-value path (_ArithmeticValue), whose tanh autodiffed to 1 - tanh^2 = 0
    "log_cosh": (lk.LogCoshLoss(reduction="sum"), [0.3, -5.0, 20.0, 30.0, -40.0],
                 lambda mp, e, delta: mp.sech(e) ** 2),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(_CURVATURES))
def test_reverse_over_reverse_takes_the_declared_second_derivative(name, dtype):
    """Reverse-over-reverse gives an elementwise loss's declared second derivative (mpmath), where
    autodiff through the gradient's formula was far off: pseudo-Huber's cancelled (relative error eps
    r^2, 1e12 eps at r = e / delta = 1e6), log-cosh's tanh gave 1 - tanh^2 = 0 for |e| > 19."""
    mpmath = pytest.importorskip("mpmath")
    loss, errors, second = _CURVATURES[name]
    e = np.array(errors, dtype)
    hess = jax.vmap(jax.grad(jax.grad(lambda z, y: lj.loss_fn(loss)(z[None], y[None]))))(
        jnp.asarray(e), jnp.zeros(e.shape, dtype))
    delta = mpmath.mpf(float(np.asarray(_DELTA, dtype)))
    exact = [float(second(mpmath, mpmath.mpf(float(v)), delta)) for v in e]
    tiny = float(np.finfo(dtype).tiny)  # float32 sech^2(40) is below the normal range (XLA flushes it)
    np.testing.assert_allclose(np.asarray(hess, np.float64), exact, rtol=8 * float(np.finfo(dtype).eps), atol=tiny)


def test_forward_mode_is_refused_by_jax_with_its_own_error():
    z, y = jnp.zeros((2, 3)), jnp.asarray([0, 2])
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda z: lj.softmax_cross_entropy(z, y), (z,), (jnp.ones_like(z),))


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_hessian_vector_product_equals_autodiff_of_the_reference(cid, name, case_name):
    """Reverse over our custom_vjp equals reverse-over-reverse autodiff through the core's forward expression."""
    case = cases_for(name)[case_name]
    fn = _function(name)
    target, weight = jnp.asarray(case.target), jnp.asarray(_weight(case))
    vector = jnp.asarray(np.random.default_rng(8).normal(size=case.input.shape))
    core = lk.REGISTRY[name][0](impl="xp", **case.options)
    z = jnp.asarray(case.input)
    # under jit: the same rules, and 4x faster than op by op (eager reverse-over-reverse: the two
    # tests above)
    ours = jax.jit(jax.grad(lambda z: jnp.vdot(jax.grad(lambda z: fn(z, target, weight=weight, **case.options))(z),
                                               vector)))(z)
    expected = autograd_reference.hessian_vector_product(core, z, target, vector, weight=weight)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


HEADS = {
    "binary": ({"pos_weight": 2.0}, (6, 1), lambda r: jnp.asarray((r.uniform(size=6) > 0.5).astype(np.float64))),
    "multiclass": ({"n_classes": 4, "label_smoothing": 0.1, "ignore_index": -1}, (6, 4),
                   lambda r: jnp.asarray([0, 3, -1, 2, 1, 0])),
    "multilabel": ({"n_labels": 4, "pos_weight": [1.0, 2.0, 0.5, 3.0]}, (6, 4),
                   lambda r: jnp.asarray((r.uniform(size=(6, 4)) > 0.5).astype(np.float64))),
    "regression": ({"n_outputs": 2}, (6, 2), lambda r: jnp.asarray(r.normal(size=(6, 2)))),
}


@pytest.mark.parametrize("task", list(HEADS))
def test_head_loss_is_differentiable_and_keeps_the_core_head(task):
    options, shape, make_target = HEADS[task]
    rng = np.random.default_rng(2)
    head = lj.head(task, **options)
    core = lk.head(task, **options)
    z, target = jnp.asarray(rng.normal(size=shape)), make_target(rng)
    weight = jnp.asarray(rng.uniform(0.5, 2.0, size=6))

    def objective(z):
        return head.loss(z, target, weight=weight, normalizer=3.0)

    # reference: jax's autodiff through the core head's loss expression
    expected = jax.grad(lambda z: core.loss(z, target, weight=weight, normalizer=3.0))(z)
    np.testing.assert_allclose(jax.jit(jax.grad(objective))(z), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(objective(z), core.loss(z, target, weight=weight, normalizer=3.0), rtol=1e-12)
    assert head.units == shape[1]
    np.testing.assert_array_equal(head.predict(z), core.predict(z))
    assert repr(head) == f"losskit.jax.head({core!r})"  # (was the default object repr)


def test_a_head_names_a_missing_or_string_target():
    """losskit.jax.head("binary").loss read ``target.ndim`` of None (AttributeError), and string labels reached
    jnp.asarray (JAX's TypeError, naming no argument; found in review)."""
    head = lj.head("binary")
    with pytest.raises(lk.LossInputError, match="^target: expected an array, got None"):
        head.loss(jnp.zeros(3), None)
    with pytest.raises(lk.LossInputError, match="^target: expected real numbers or bools, got a NumPy array of dtype "
                                                "<U1; encode labels first"):
        head.loss(jnp.zeros(2), np.array(["a", "b"]))


@pytest.mark.parametrize("name", ["softmax_focal_loss", "softmax_cross_entropy", "poly_cross_entropy",
                                  "multiclass_hinge_loss"])
def test_numpy_logits_and_labels_alone_give_the_core_value_without_a_warning(name):
    """Found at the end of a session: lj.softmax_focal_loss(NumPy logits, NumPy labels) raised
    TracerArrayConversionError (its terms, JAX arrays, reached NumPy's where in the reduction), and NumPy int64
    labels made JAX warn at every call where it has no int64 (here with x64 on: the warning is tested in a
    fresh process below)."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(5, 3)), np.array([0, 1, 2, 0, 2])
    expected = getattr(lk, name)(z, y)
    np.testing.assert_allclose(float(getattr(lj, name)(z, y)), float(expected), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(lambda z: getattr(lj, name)(z, y))(z), lk.REGISTRY[name][0]().grad(z, y),
                               rtol=1e-10, atol=1e-14)


def test_numpy_int64_labels_without_x64_give_no_warning():
    import subprocess
    import sys

    code = ("import warnings, numpy as np, jax, losskit.jax as lj; warnings.simplefilter('error'); "
            "assert not jax.config.jax_enable_x64; "
            "z, y = np.ones((4, 3), np.float32), np.array([0, 1, 2, 0]); "
            "[getattr(lj, n)(z, y) for n in ('softmax_cross_entropy', 'poly_cross_entropy', 'softmax_focal_loss')]")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_jax_hessian_works_and_equals_optaxs():
    """docs/frameworks.md: jax.hessian (forward over reverse) works through the custom_vjp, whose backward is
    differentiable (the docs said it did not), equal to the Hessian of optax's loss; forward mode through the
    loss itself raises JAX's own error."""
    optax = pytest.importorskip("optax")
    rng = np.random.default_rng(3)
    z, y = jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray([0, 3, 1])
    ours = jax.hessian(lambda z: lj.softmax_cross_entropy(z, y))(z)
    theirs = jax.hessian(lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean())(z)
    assert ours.shape == (3, 4, 3, 4)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-15)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(lambda z: lj.softmax_cross_entropy(z, y), (z,), (z,))


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


# -- a sure row keeps its tiny loss under XLA's flush-to-zero ------------------------------------------
#: rows whose loss is a normal number made only of terms that are subnormal on their own (float32:
#: e^-88 = 6.1e-39; float64: e^-709.5 = 7.3e-309), and one far below any dtype's range
_TINY_ROWS = [
    (np.float32, [88.0, 0.0, 0.0], 0),          # 2 e^-88 = 1.2e-38 (issue 15: came back as 0)
    (np.float32, [90.0, 1.0, 2.0, 3.0], 0),      # e^-89 + e^-88 + e^-87
    (np.float32, [0.0, 88.0, 0.5], 1),           # the label in the middle, one term normal
    (np.float64, [709.5, 0.0, 0.0, 0.0, 0.0], 0),  # 4 e^-709.5 = 2.9e-308
]


@pytest.mark.parametrize("dtype, row, label", _TINY_ROWS, ids=[f"{np.dtype(r[0]).name}-{r[1]}" for r in _TINY_ROWS])
@pytest.mark.parametrize("reduction", ["sum", "none", "mean"])
def test_softmax_ce_keeps_a_sure_rows_tiny_loss_under_jit(dtype, row, label, reduction):
    import mpmath

    mpmath.mp.dps = 50
    exact_row = [mpmath.mpf(float(v)) for v in np.asarray(row, dtype=dtype)]
    # lse - z_y = log1p(sum_{k != y} e^(z_k - z_y)), and the gradient at the label -sum_{k != y} p_k
    below = mpmath.fsum(mpmath.exp(v - exact_row[label]) for k, v in enumerate(exact_row) if k != label)
    weight = 4.0
    scale = weight if reduction != "mean" else 1.0  # mean: sum(w l) / sum(w)
    exact_value = scale * mpmath.log1p(below)
    exact_grad_label = -scale * below / (1 + below)
    fn = lj.loss_fn(lk.SoftmaxCrossEntropy(reduction=reduction))
    z = jnp.asarray([row], dtype=dtype)
    y, w = jnp.asarray([label]), jnp.asarray([weight], dtype=dtype)
    value, grad = jax.jit(jax.value_and_grad(lambda z: jnp.sum(fn(z, y, w))))(z)
    eps = float(np.finfo(dtype).eps)
    assert value.dtype == dtype and float(value) > 0, float(value)  # never 0 or -0.0
    assert abs(float(value) - float(exact_value)) <= 4 * eps * float(exact_value)
    assert abs(float(grad[0, label]) - float(exact_grad_label)) <= 8 * eps * abs(float(exact_grad_label))


# -- the benchmark's agreement check (benchmarks/jax_layer.py): losskit.jax against optax ------------
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy_with_logits", "huber_loss",
                                  "hinge_loss", "kl_divergence", "multiclass_hinge_loss", "pseudo_huber_loss"])
def test_jax_layer_benchmark_agrees_with_the_peer_in_float64(name):
    """The harness times nothing it has not checked: losskit.jax under jit(value_and_grad) on float32
    against optax (or the formula in jnp) run in float64 on the same inputs, within float32's 1e-4."""
    import sys
    from pathlib import Path

    optax = pytest.importorskip("optax")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks import jax_layer

    z, y = jax_layer._inputs(name, 4000, (8, 300), np.random.default_rng(0))
    assert z.dtype == np.float32
    impls, formula = jax_layer.implementations(name, jax, jnp, optax)
    jax_layer.check_agreement(name, impls, formula, z, y, jax, jnp)  # raises on a disagreement


# -- the row sweeps of KL divergence and distillation, and log-cosh's formula, under jit -------------
def _rows_and_targets(rng):
    """Rows of 7 logits with the edges the sweeps treat apart: a sure class (a logit 60 above the
    rest, its target one-hot), a logit of -inf where the target (or teacher) gives no mass, ties."""
    z = rng.normal(size=(6, 7)) * 3
    z[1] = [60.0, 0.0, -1.0, 2.0, 0.5, -3.0, 1.0]
    z[2, 4] = -np.inf
    z[3] = [2.0, 2.0, -1.0, 2.0, 0.0, 0.0, 1.0]  # three ties at the max
    probs = rng.dirichlet(np.ones(7), size=6)
    probs[1] = np.eye(7)[0]
    probs[2, 4] = 0.0
    probs[2] /= probs[2].sum()
    probs[4, [1, 5]] = 0.0
    probs[4] /= probs[4].sum()
    teacher = rng.normal(size=(6, 7)) * 3
    teacher[1] = [50.0, 0.0, 0.0, 1.0, -2.0, 0.0, 0.0]
    teacher[2, 4] = -np.inf  # the class the student rules out too
    teacher[4, [1, 5]] = -np.inf  # classes the teacher rules out cost nothing
    teacher[5] = z[5]  # the teacher's own distribution: divergence 0
    return z, probs, teacher


@pytest.mark.parametrize("name", ["kl_divergence", "distillation_loss"])
def test_kl_and_distillation_sweeps_equal_optax_in_float64(name):
    """Value and gradient under jit(value_and_grad), float64, against optax's formula differentiated by
    JAX (an independent reference), with weights."""
    optax = pytest.importorskip("optax")
    z, probs, teacher = _rows_and_targets(np.random.default_rng(12))
    weight = jnp.asarray(np.random.default_rng(13).uniform(0.5, 2.0, size=6))
    if name == "kl_divergence":
        target = jnp.asarray(probs)
        ours_fn = lj.loss_fn(lk.KLDivergence(reduction="sum"))

        def peer(z):
            return jnp.sum(weight * optax.losses.kl_divergence(jax.nn.log_softmax(z), target))
    else:
        target = jnp.asarray(teacher)
        ours_fn = lj.loss_fn(lk.DistillationLoss(temperature=2.0, reduction="sum"))

        def peer(z):
            q = jax.nn.softmax(target / 2.0)
            kl = optax.losses.kl_divergence(jax.nn.log_softmax(z / 2.0), q)
            return 4.0 * jnp.sum(weight * kl)

    value, grad = jax.jit(jax.value_and_grad(lambda z: ours_fn(z, target, weight)))(jnp.asarray(z))
    # optax's gradient at a logit of -inf is NaN (it differentiates log_softmax there): that row's
    # gradient is p sum(y) - y with p = 0, i.e. -y, checked on its own below
    finite = np.isfinite(z).all(axis=-1)
    peer_value, peer_grad = jax.value_and_grad(peer)(jnp.asarray(np.where(np.isfinite(z), z, -1e30)))
    np.testing.assert_allclose(float(value), float(peer_value), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad)[finite], np.asarray(peer_grad)[finite], rtol=1e-12, atol=1e-15)
    assert float(grad[2, 4]) == 0.0  # p sum(y) - y (KL) or T (p - q): both 0 there
    assert float(grad[1, 0]) != 0.0 and np.all(np.isfinite(np.asarray(grad)))


def test_distillation_gradient_equals_finite_differences_in_float64():
    z, _, teacher = _rows_and_targets(np.random.default_rng(14))
    z = z[[0, 3, 4, 5]]  # finite rows
    teacher = jnp.asarray(teacher[[0, 3, 4, 5]])
    fn = lj.loss_fn(lk.DistillationLoss(temperature=2.0, reduction="sum"))
    grad = np.asarray(jax.jit(jax.grad(lambda z: fn(z, teacher)))(jnp.asarray(z)))
    value = jax.jit(lambda z: fn(z, teacher))
    step = 1e-6
    numeric = np.zeros_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (float(value(jnp.asarray(up))) - float(value(jnp.asarray(down)))) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_kl_sweep_keeps_a_sure_rows_tiny_loss_under_jit():
    """float32 [88, 0, 0] against the one-hot target [1, 0, 0]: KL = log1p(2 e^-88) = 1.2e-38, a
    normal number made of two terms that XLA flushes to zero on their own (see the softmax CE test)."""
    import mpmath

    mpmath.mp.dps = 50
    fn = lj.loss_fn(lk.KLDivergence(reduction="sum"))
    z, target = jnp.asarray([[88.0, 0.0, 0.0]], jnp.float32), jnp.asarray([[1.0, 0.0, 0.0]], jnp.float32)
    value, grad = jax.jit(jax.value_and_grad(lambda z: fn(z, target)))(z)
    below = 2 * mpmath.exp(-88)
    exact_value, exact_grad = mpmath.log1p(below), -below / (1 + below)
    eps = float(np.finfo(np.float32).eps)
    assert float(value) > 0 and abs(float(value) - float(exact_value)) <= 4 * eps * float(exact_value)
    assert abs(float(grad[0, 0]) - float(exact_grad)) <= 8 * eps * abs(float(exact_grad))


#: rows of five logits that mix the KL sweep's two kinds of row in one batch: sure rows (normaliser
#: below 1.5, their terms below the max summed apart; the first one's loss made of terms XLA flushes
#: to zero), a row with three ties at the max (normaliser 3) and ordinary rows
_MIXED_ROWS = {np.float32: [[88.0, 0.0, 0.0, 0.0, 0.0], [20.0, 0.0, 1.0, -3.0, 2.0], [1.5, 0.0, -1.0, -2.0, -0.5],
                            [2.0, 2.0, -1.0, 2.0, 0.0], [0.3, -1.2, 2.5, 0.0, 1.1], [-4.0, 3.0, 2.9, -0.5, 0.0]],
               np.float64: [[709.5, 0.0, 0.0, 0.0, 0.0], [40.0, 0.0, 1.0, -3.0, 2.0], [1.5, 0.0, -1.0, -2.0, -0.5],
                            [2.0, 2.0, -1.0, 2.0, 0.0], [0.3, -1.2, 2.5, 0.0, 1.1], [-4.0, 3.0, 2.9, -0.5, 0.0]]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kl_sweep_on_a_batch_mixing_sure_and_ordinary_rows_against_mpmath(dtype):
    """Each row's value within 4 eps and each gradient entry within 8 eps (of max(|exact|, eps)) of
    mpmath, under jit, in one batch: a sure row is corrected on its own, the other rows keep the plain
    normaliser (a row with ties included: the re-sum of the flushed terms takes no ties)."""
    import mpmath

    mpmath.mp.dps = 50
    z = np.asarray(_MIXED_ROWS[dtype], dtype=dtype)
    rng = np.random.default_rng(21)
    target = rng.dirichlet(np.ones(5), size=len(z)).astype(dtype)
    target[:3] = np.eye(5)[0]  # the sure rows against their own class
    fn = lj.loss_fn(lk.KLDivergence(reduction="none"))
    value = np.asarray(jax.jit(lambda z: fn(z, jnp.asarray(target)))(jnp.asarray(z)), np.float64)
    grad = np.asarray(jax.jit(jax.grad(lambda z: jnp.sum(fn(z, jnp.asarray(target)))))(jnp.asarray(z)), np.float64)
    eps = float(np.finfo(dtype).eps)
    for i, (row, ys) in enumerate(zip(z.tolist(), target.tolist(), strict=True)):
        top = max(row)
        # lse - max = log1p(the terms other than one max): 4 e^-709.5 is not lost to the 1
        others = mpmath.fsum(mpmath.exp(mpmath.mpf(v) - top) for v in row) - 1 if row.count(top) > 1 else \
            mpmath.fsum(mpmath.exp(mpmath.mpf(v) - top) for v in row if v != top)
        log_norm = mpmath.log1p(others)
        total = mpmath.fsum(ys)
        # sum y log y - sum y log p, log p_k = (z_k - max) - log_norm
        exact = mpmath.fsum(y * mpmath.log(y) for y in map(mpmath.mpf, ys) if y) + mpmath.fsum(
            mpmath.mpf(y) * (log_norm - (mpmath.mpf(v) - top)) for y, v in zip(ys, row, strict=True))
        lse = top + log_norm
        exact = float(exact)
        assert exact > 0 and abs(value[i] - exact) <= 4 * eps * exact, (i, value[i], exact)
        for k, (v, y) in enumerate(zip(row, ys, strict=True)):
            g = float(mpmath.exp(v - lse) * total - y)
            assert abs(grad[i, k] - g) <= 8 * eps * max(abs(g), eps), (i, k, grad[i, k], g)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("epsilon", [1.0, -0.5])
def test_poly_sweep_equals_optax_in_float64(epsilon, smoothing):
    """Poly-1 with integer labels (softmax CE's row sweep plus the missing mass), value and gradient
    under jit(value_and_grad), float64, with weights, against optax's poly_loss_cross_entropy on the
    smoothed one-hot target differentiated by JAX; a label at the max, a sure row, ties included."""
    optax = pytest.importorskip("optax")
    z, _, _ = _rows_and_targets(np.random.default_rng(16))
    z = z[[0, 1, 3, 4, 5]]  # finite rows (a -inf row takes the reference: tested elsewhere)
    labels = jnp.asarray([2, 0, 1, 6, 3])
    weight = jnp.asarray(np.random.default_rng(17).uniform(0.5, 2.0, size=5))
    fn = lj.loss_fn(lk.PolyCrossEntropy(epsilon=epsilon, label_smoothing=smoothing, reduction="sum"))

    def peer(z):
        target = optax.smooth_labels(jax.nn.one_hot(labels, 7, dtype=z.dtype), smoothing)
        return jnp.sum(weight * optax.losses.poly_loss_cross_entropy(z, target, epsilon=epsilon))

    value, grad = jax.jit(jax.value_and_grad(lambda z: fn(z, labels, weight)))(jnp.asarray(z))
    peer_value, peer_grad = jax.value_and_grad(peer)(jnp.asarray(z))
    np.testing.assert_allclose(float(value), float(peer_value), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(peer_grad), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype, row, label", _TINY_ROWS, ids=[f"{np.dtype(r[0]).name}-{r[1]}" for r in _TINY_ROWS])
def test_poly_sweep_keeps_a_sure_rows_tiny_loss_under_jit(dtype, row, label):
    """Poly-1 (epsilon 2) at a sure row: CE plus 2 (1 - p_y), both made of the terms below the label
    (1 - p_y = b / (1 + b)), and the gradient at the label -(1 - p_y)(1 + 2 p_y), against mpmath."""
    import mpmath

    mpmath.mp.dps = 50
    exact_row = [mpmath.mpf(float(v)) for v in np.asarray(row, dtype=dtype)]
    below = mpmath.fsum(mpmath.exp(v - exact_row[label]) for k, v in enumerate(exact_row) if k != label)
    missing = below / (1 + below)
    exact_value = mpmath.log1p(below) + 2 * missing
    exact_grad_label = -missing * (1 + 2 / (1 + below))
    fn = lj.loss_fn(lk.PolyCrossEntropy(epsilon=2.0, reduction="sum"))
    value, grad = jax.jit(jax.value_and_grad(lambda z: fn(z, jnp.asarray([label]))))(jnp.asarray([row], dtype=dtype))
    eps = float(np.finfo(dtype).eps)
    assert value.dtype == dtype and float(value) > 0
    assert abs(float(value) - float(exact_value)) <= 4 * eps * float(exact_value)
    assert abs(float(grad[0, label]) - float(exact_grad_label)) <= 8 * eps * abs(float(exact_grad_label))


#: rows whose max is +inf, -inf or NaN (and two finite ones), with a label each: +inf at the label, +inf
#: elsewhere, two +inf, all -inf, a NaN, +inf beside a NaN, all +inf, a finite max with -inf at the label
_UNBOUNDED_ROWS = np.array([[1.0, 2.0, 3.0, 0.0], [np.inf, 1.0, -np.inf, 0.0], [np.inf, 1.0, -np.inf, 0.0],
                            [np.inf, np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0, 1.0], [-np.inf] * 4,
                            [np.nan, 0.0, 1.0, 2.0], [np.inf, np.nan, 0.0, 1.0], [np.inf] * 4,
                            [0.0, -np.inf, 1.0, 2.0]])
_UNBOUNDED_LABELS = np.array([1, 0, 1, 0, 2, 3, 0, 1, 2, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(("cls", "options"), [(lk.SoftmaxCrossEntropy, {}),
                                              (lk.SoftmaxCrossEntropy, {"label_smoothing": 0.1}),
                                              (lk.PolyCrossEntropy, {"epsilon": 1.0}),
                                              (lk.PolyCrossEntropy, {"epsilon": -0.5, "label_smoothing": 0.2}),
                                              (lk.SoftmaxFocalLoss, {"gamma": 2.0}),
                                              (lk.SoftmaxFocalLoss, {"gamma": 0.0, "alpha": 0.25})],
                         ids=["ce", "ce-smoothed", "poly", "poly-smoothed", "focal", "focal-gamma0"])
def test_sweep_rows_with_an_infinite_or_nan_max_equal_the_core_reference(cls, options, reduction, dtype):
    """The softmax CE and Poly-1 sweeps take rows whose max is +-inf or NaN without a branch (rows.shifted),
    softmax focal's sends such a batch to the reference (lax.cond): value and gradient under jit equal
    the core's reference on NumPy in float64 (its limits: 0 or +inf at a +inf row, the uniform limit of
    an all -inf or NaN row, +inf with smoothing beside a +inf logit), with a weight of 0 on a row of
    infinite loss. The last row's label logit is -inf below a finite max, which every sweep takes itself
    (focal's gradient there was NaN: 0 * inf in gamma p_y CE / q)."""
    weight = np.random.default_rng(21).uniform(0.5, 2.0, size=len(_UNBOUNDED_LABELS))
    weight[2] = 0.0
    core = cls(impl="xp", reduction=reduction, **options)
    with np.errstate(invalid="ignore"):
        expected_value, expected_grad = core.value_and_grad(_UNBOUNDED_ROWS, _UNBOUNDED_LABELS, weight=weight)
    fn = lj.loss_fn(core)
    labels, w = jnp.asarray(_UNBOUNDED_LABELS), jnp.asarray(weight, dtype=dtype)
    # the value and the gradient under one jit (one compile)
    value, grad = jax.jit(lambda z: (fn(z, labels, w), jax.grad(lambda z: jnp.sum(fn(z, labels, w)))(z)))(
        jnp.asarray(_UNBOUNDED_ROWS, dtype=dtype))
    rtol = 4 * float(np.finfo(dtype).eps)
    np.testing.assert_allclose(np.asarray(value, dtype=np.float64), expected_value, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(np.asarray(grad, dtype=np.float64), expected_grad, rtol=rtol, atol=rtol)
    # the rows of finite max alone (a batch with an infinite max may take the reference as a whole)
    finite_rows = [0, 9]
    z, y = _UNBOUNDED_ROWS[finite_rows], _UNBOUNDED_LABELS[finite_rows]
    expected_value, expected_grad = core.value_and_grad(z, y, weight=weight[finite_rows])
    fn_rows = jax.jit(jax.value_and_grad(lambda z: jnp.sum(fn(z, jnp.asarray(y), w[jnp.asarray(finite_rows)]))))
    value_rows, grad_rows = fn_rows(jnp.asarray(z, dtype=dtype))
    np.testing.assert_allclose(np.asarray(grad_rows, dtype=np.float64), expected_grad, rtol=rtol, atol=rtol)
    assert float(value_rows) == np.inf and np.sum(expected_value) == np.inf
    if reduction == "none":  # the limits by hand: a +inf logit at the label costs 0, one elsewhere +inf;
        # with smoothing the smoothed target's mass on the classes of probability 0 costs +inf (it was
        # NaN: lse - mean z taken as +inf - +inf)
        plain, smoothed = (float(value[1]), float(value[4])), options.get("label_smoothing")
        assert plain == ((np.inf, np.inf) if smoothed else (0.0, np.inf))
        assert float(value[9]) == np.inf and np.all(np.asarray(grad[2]) == 0)  # weight 0, infinite loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_crammer_singer_sweep_takes_the_first_maximiser_and_the_reference_limits(dtype):
    """The hinge's sweep (rows.crammer_singer) finds the maximiser as the least index of the row max, not
    by argmax: on rows of ties (every margin equal; two off the label; the label's z_y against another
    class's z_k + 1, where the first is the label and the gradient 0), value and gradient under jit
    equal the core's reference on NumPy bit for bit, weights and "none" included; and so do the limits
    it gives itself (no branch to the reference) where the last row holds +inf, NaN off or at the label,
    is all -inf, or has -inf at the label (+inf loss), beside a first row of weight 0."""
    from losskit.jax import rows

    z = np.array([[1.0, 1, 1, 1], [0, 2, 2, 0], [2.5, 1.5, 0, 0], [0, 3, 3, 3], [-1e30, -1e30, 5, 5]], dtype)
    y = np.array([0, 0, 0, 3, 1])
    weight = np.array([0.5, 1.0, 2.0, 1.5, 0.25], dtype)
    core = lk.MulticlassHingeLoss(impl="xp", reduction="none")
    sweep = rows.sweep_for(core, core.plan(jnp.asarray(z), jnp.asarray(y)))
    assert sweep is not None and sweep.limits
    fn = lj.loss_fn(core)
    run = jax.jit(lambda z, y, w: (fn(z, y, w), jax.grad(lambda z: jnp.sum(fn(z, y, w)))(z)))
    last_rows = ([-1, 2, np.inf, 7], [0, np.nan, 3, np.nan], [1, 2, 3, np.nan], [-np.inf] * 4, [4, -np.inf, 0, 1])
    zero_first = np.concatenate([[0.0], weight[1:]]).astype(dtype)
    for last, w in ((z[-1], weight), *((np.array(r, dtype), zero_first) for r in last_rows)):
        batch = np.concatenate([z[:-1], last[None]])
        with np.errstate(invalid="ignore"):
            expected_value, expected_grad = core.value_and_grad(batch, y, weight=w)
        value, grad = run(jnp.asarray(batch), jnp.asarray(y), jnp.asarray(w))
        np.testing.assert_array_equal(np.asarray(value), expected_value)
        np.testing.assert_array_equal(np.asarray(grad), expected_grad)
    # by hand: margins (1, 2, 2, 2), (0, 3, 3, 1), (2.5, 2.5, 1, 1), (1, 4, 4, 3), (-1e30 + 1, -1e30, 6, 6)
    first = np.array([1, 1, 0, 1, 2])
    by_hand = weight[:, None] * (np.eye(4, dtype=dtype)[first] - np.eye(4, dtype=dtype)[y])
    np.testing.assert_array_equal(np.asarray(run(jnp.asarray(z), jnp.asarray(y), jnp.asarray(weight))[1]), by_hand)


@pytest.mark.parametrize("name", ["kl_divergence", "softmax_cross_entropy"])
def test_sweeps_of_long_float32_rows_keep_float32_precision(name):
    """Rows of 32000 classes: XLA's own row loop added a row's terms one after another into a few
    lanes, 60-100 eps off, and the KL value (a difference of such sums) 140-177 eps off float64; summed
    in blocks with the blocks' rounding errors carried, every row's value is within 4 eps. (Softmax CE
    reads its sum through a log, so it stayed within 4 eps either way: held here all the same.)"""
    rng = np.random.default_rng(15)
    z = (rng.standard_normal((8, 32000)) * 2).astype(np.float32)
    if name == "kl_divergence":
        t = np.exp(rng.standard_normal((8, 32000)) * 2)
        target = (t / t.sum(-1, keepdims=True)).astype(np.float32)
        exact_target = target.astype(np.float64) / target.astype(np.float64).sum(-1, keepdims=True)
    else:
        target = exact_target = rng.integers(0, 32000, size=8)
    loss = lk.REGISTRY[name][0](reduction="none")
    value = np.asarray(jax.jit(lambda z, t: lj.loss_fn(loss)(z, t))(jnp.asarray(z), jnp.asarray(target)))
    exact = np.asarray(loss.replace(impl="xp")(z.astype(np.float64), exact_target))
    assert value.dtype == np.float32
    np.testing.assert_array_less(np.abs(value - exact) / exact, 4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_log_cosh_under_jit_against_mpmath_from_tiny_to_huge_errors(dtype):
    """Both sides of |e| = 1 (the series below, log1p(exp(-2|e|)) above), tiny and huge |e|."""
    import mpmath

    mpmath.mp.dps = 100  # cosh(1e-30) - 1 = 5e-61
    errors = np.array([1e-30, -1e-8, 3e-4, 0.5, -0.999, 1.0, 1.001, -3.0, 20.0, -88.0, 1e4, -3e37], dtype=dtype)
    fn = lj.loss_fn(lk.LogCoshLoss(reduction="none"))
    target = jnp.zeros(errors.shape, dtype)
    value = np.asarray(jax.jit(lambda e: fn(e, target))(jnp.asarray(errors)), np.float64)
    grad = np.asarray(jax.jit(jax.grad(lambda e: jnp.sum(fn(e, target))))(jnp.asarray(errors)), np.float64)
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    for e, v, g in zip(errors.tolist(), value, grad, strict=True):
        exact_v, exact_g = mpmath.log(mpmath.cosh(mpmath.mpf(e))), mpmath.tanh(mpmath.mpf(e))
        if float(exact_v) < tiny:  # XLA flushes a subnormal result to zero (docs/losses.md)
            assert 0 <= v <= tiny
        else:
            assert abs(v - float(exact_v)) <= 4 * eps * float(exact_v), (e, v, float(exact_v))
        assert abs(g - float(exact_g)) <= 8 * eps * abs(float(exact_g)), (e, g, float(exact_g))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_log_cosh_value_in_arithmetic_against_mpmath_on_both_sides_of_one(dtype):
    """The select-free value that XLA's sums take (NumPy and jit): within 4 eps of mpmath from tiny to
    huge errors, at |e| = 1 and one ulp either side (where its step switches branch), +-inf and NaN."""
    import mpmath

    from losskit.losses.formula import ArrayMath

    mpmath.mp.dps = 100
    one = dtype(1.0)
    errors = np.array([1e-30, -1e-8, 3e-4, 0.5, np.nextafter(one, 0), one, -np.nextafter(one, 2), 1.001, -3.0,
                       20.0, -88.0, 1e4, -3e37], dtype=dtype)
    loss = lk.LogCoshLoss()
    zero = np.zeros_like(errors)
    numpy_value = loss.value_in_arithmetic(ArrayMath(np, errors), errors, zero)
    jit_value = np.asarray(jax.jit(lambda e, t: loss.value_in_arithmetic(ArrayMath(jnp, e), e, t))(
        jnp.asarray(errors), jnp.asarray(zero)))
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    for value in (numpy_value, jit_value):
        assert value.dtype == dtype
        for e, v in zip(errors.tolist(), value.astype(np.float64), strict=True):
            exact = float(mpmath.log(mpmath.cosh(mpmath.mpf(e))))
            if exact < tiny:  # XLA flushes a subnormal result to zero (docs/losses.md)
                assert 0 <= v <= tiny
            else:
                assert abs(v - exact) <= 4 * eps * exact, (e, v, exact)
    special = np.array([np.inf, -np.inf, np.nan], dtype=dtype)
    value = loss.value_in_arithmetic(ArrayMath(np, special), special, np.zeros_like(special))
    assert value[0] == np.inf and value[1] == np.inf and np.isnan(value[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_log_one_plus_under_jit_within_two_eps_of_mpmath(dtype):
    """_shared.log_one_plus, which the JSD and distillation formulas take for log(1 + a): within 2 eps of
    mpmath on a > -1 under jit, where XLA's own float64 log1p was 120 eps off on [-0.4142, -0.3645] (38 eps
    on a JSD value of the catalogue grid, beta 0.5); NumPy's too."""
    import mpmath

    from losskit.losses._shared import log_one_plus
    from losskit.losses.formula import ArrayMath

    a = np.concatenate([np.linspace(-0.999, 3.0, 4001), np.linspace(-0.4142, -0.3645, 2001), [-1e-12, 1e-9]])
    a = a.astype(dtype)
    exact = np.array([float(mpmath.log1p(mpmath.mpf(float(v)))) for v in a])
    for xp, fn in ((jnp, jax.jit(lambda v: log_one_plus(ArrayMath(jnp, v), v))), (np, lambda v: log_one_plus(ArrayMath(np, v), v))):
        value = np.asarray(fn(xp.asarray(a)))
        assert value.dtype == dtype
        err = np.abs(value.astype(np.float64) - exact) / np.abs(exact) / float(np.finfo(dtype).eps)
        assert err.max() <= 2, (xp.__name__, float(a[err.argmax()]), float(err.max()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["kl_divergence", "log_cosh_loss", "softmax_cross_entropy", "poly_cross_entropy",
                                  "softmax_focal_loss", "distillation_loss(T=2)", "js_divergence(beta=0)",
                                  "js_divergence(beta=0.5)", "js_divergence(beta=1)"])
def test_xla_formulation_within_the_documented_bound_on_the_catalogue_grid(name, dtype):
    """tests/test_precision_catalogue.py's grid and mpmath references, run on losskit.jax under jit: 4
    eps on the value, 8 on the gradient; an exact value below the smallest normal number may come back
    as 0 (XLA on CPU flushes subnormals; docs/losses.md)."""
    import test_precision_catalogue as catalogue

    case = catalogue.CASE_BY_NAME[name]
    fn = lj.loss_fn(case.loss.replace(impl="xp"))
    worst = catalogue.Worst()
    for x, t, values, grads in catalogue.grid(name, dtype):
        # the Known misses of this path held apart, each for the part (value, gradient) it misses
        judged = catalogue.judged_examples(case, "xla", dtype, x, t, "regular")
        keep = judged["value"] | judged["grad"]
        if not keep.any():
            continue
        jx, jt = jnp.asarray(x[keep]), jnp.asarray(t[keep])
        value = np.asarray(jax.jit(lambda z, jt=jt: fn(z, jt))(jx))
        grad = np.asarray(jax.jit(jax.grad(lambda z, jt=jt: jnp.sum(fn(z, jt))))(jx))
        labels = [(xi.tolist(), ti.tolist()) for xi, ti in zip(x, t, strict=True)]
        catalogue._judge(value, grad, values, grads, judged, keep, labels, dtype, case.row, worst)
    info = np.finfo(dtype)
    assert worst.value <= catalogue.VALUE_EPS, (worst.value, worst.where)
    assert worst.grad <= catalogue.GRAD_EPS, (worst.grad, worst.where.get("grad"))
    assert worst.subnormal <= float(info.tiny / info.smallest_subnormal), worst.where


@pytest.mark.parametrize("cls", [lk.SoftmaxCrossEntropy, lk.KLDivergence])
def test_probability_targets_take_the_kl_sweep_exact_on_long_float32_rows(cls):
    """Softmax CE of probability targets runs the KL sweep without the target's entropy (it ran the reference's
    text, 0.62x optax). On rows of 32000 float32 logits its sums stay within a few eps of a float64 reference
    (XLA's own loop summed such a row 60-100 eps off)."""
    from losskit.jax import rows

    rng = np.random.default_rng(21)
    z = (rng.standard_normal((8, 32000)) * 3).astype(np.float32)
    t = np.exp(rng.standard_normal((8, 32000)) * 2)
    t = (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
    loss = cls(reduction="none")
    assert rows.sweep_for(loss, loss.plan(jnp.asarray(z), jnp.asarray(t))) is not None
    value, grad = jax.vmap(jax.value_and_grad(lambda zi, ti: lj.loss_fn(loss)(zi[None], ti[None])[0]))(
        jnp.asarray(z), jnp.asarray(t))
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    log_p = z64 - z64.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    expected = -(t64 * log_p).sum(axis=1) + (np.sum(t64 * np.log(t64), axis=1) if cls is lk.KLDivergence else 0)
    expected_grad = np.exp(log_p) * t64.sum(axis=1, keepdims=True) - t64
    eps = np.finfo(np.float32).eps
    assert np.max(np.abs(np.asarray(value, np.float64) - expected) / np.abs(expected)) < 8 * eps
    assert np.max(np.abs(np.asarray(grad, np.float64) - expected_grad)) < 8 * eps * np.abs(expected_grad).max()


@pytest.mark.parametrize("noises", [(1e-3, 0.1, 3.0), (0.1, 3.0)], ids=["with-tiny-values", "without"])
def test_distillation_sweep_on_long_float32_rows_near_their_teacher(noises):
    """Distillation under jit on a batch of 66 float32 rows of 32000 logits (the centred sweep in blocks of
    33 rows), each teacher the student plus noise of one of ``noises`` (a value near 1e-7, 1e-3 and far,
    T = 2), one row's teacher ruling out 100 classes (-inf): the value within 4 eps of a float64
    reference written from the definition (the first form subtracts two normalisers of size log K:
    2.1e-5 relative, 180 eps, before the centred sum; the XLA sweep kept the first form where the teacher
    rules a class out) and the gradient within 4 eps of T max(p, q) (an entry T (p - q) carries the
    rounding of p and q, each exact to an eps: that relative to the largest |p - q| is distillation's
    Known miss; at the rows' shared max, (1 - q) - (1 - p) in float32 cancelled two numbers near 1: 17
    eps of T max p, 2000 of max |p - q|). With a tiny value in the batch, w is summed; without, w is the first form's.
    At noise 1e-4 the float64 formula is itself 14 eps of float32 off: not a reference there."""
    rng = np.random.default_rng(22)
    z = (rng.standard_normal((66, 32000)) * 2).astype(np.float32)
    noise = np.resize(np.asarray(noises), 66)[:, None]
    t = (z + noise * rng.standard_normal(z.shape)).astype(np.float32)
    t[0, rng.choice(32000, 100, replace=False)] = -np.inf
    loss = lk.DistillationLoss(temperature=2.0, reduction="none")
    fn = lj.loss_fn(loss)
    value = np.asarray(jax.jit(fn)(jnp.asarray(z), jnp.asarray(t)), np.float64)
    grad = np.asarray(jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b))))(jnp.asarray(z), jnp.asarray(t)), np.float64)

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(z.astype(np.float64) / 2), log_softmax(t.astype(np.float64) / 2)
    q = np.exp(log_q)
    expected = 4 * np.sum(np.where(q > 0, q * (np.where(q > 0, log_q, 0.0) - log_p), 0.0), axis=1)
    expected_grad = 2 * (np.exp(log_p) - q)
    eps = np.finfo(np.float32).eps
    assert np.max(np.abs(value - expected) / expected) < 4 * eps
    scale = 2 * np.maximum(np.exp(log_p).max(axis=1), q.max(axis=1))
    assert np.max(np.abs(grad - expected_grad).max(axis=1) / scale) < 4 * eps


@pytest.mark.parametrize(("name", "shape"), [("softmax_cross_entropy", (17, 11)), ("huber_loss", (43,)),
                                             ("kl_divergence", (5, 19))])
def test_an_eager_call_runs_as_one_program_after_its_checks(name, shape):
    """An eager ``jax.grad`` (concrete CPU arrays) lowers its arithmetic as one program, not op by op (softmax CE
    72 programs, Huber 22 before: about 35 ms of XLA compile each; now 3 and 2, the backward's product
    among them), and nothing again at the same shape; its
    values are still checked, by the NumPy path (a label out of range raises as it does there)."""
    lowered = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        rng = np.random.default_rng(9)
        z, z2 = jnp.asarray(rng.normal(size=shape)), jnp.asarray(rng.normal(size=shape))
        if name == "softmax_cross_entropy":
            y = jnp.asarray(np.arange(shape[0]) % shape[1])
        elif name == "kl_divergence":
            y = jnp.asarray(rng.dirichlet(np.ones(shape[1]), size=shape[0]))
        else:
            y = jnp.asarray(rng.normal(size=shape))
        fn = getattr(lj, name)
        lowered.clear()
        first = jax.grad(lambda z: fn(z, y))(z)
        n_first = len(lowered)
        again = jax.grad(lambda z: fn(z, y))(z2)
        n_again = len(lowered) - n_first
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert n_first <= 6 and n_again == 0, (n_first, n_again)
    core = lk.REGISTRY[name][0]()
    np.testing.assert_allclose(first, core.grad(np.asarray(z), np.asarray(y)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(again, core.grad(np.asarray(z2), np.asarray(y)), rtol=1e-12, atol=1e-15)
    if name == "softmax_cross_entropy":
        with pytest.raises(lk.LossInputError, match="target"):
            fn(z, y + shape[1])


@pytest.mark.parametrize("name", ["linear_logprobs", "linear_preference_loss", "linear_grpo_loss", "linear_jsd_loss"])
def test_an_eager_grad_of_a_fused_linear_loss_runs_each_sweep_as_one_program(name):
    """Eagerly (``jax.grad`` without ``jit``) the fused linear forms ran their chunked sweeps op by op, each small op
    lowered and compiled at each new shape: here 178 programs for log-probs, 65 for DPO, 32 for GRPO, 98 for the JSD.
    Now one program a sweep (log-probs: the forward's and the vjp's; 11 in all with the test's own ops), and
    nothing again at the same shape; the gradients those of ``jit``, the known target's checks still raised."""
    rng = np.random.default_rng(21)
    hidden, classifier = jnp.asarray(rng.normal(size=(4, 13, 6))), jnp.asarray(rng.normal(size=(37, 6)) / 2)
    target = rng.integers(0, 37, (4, 13))
    target[:, :3] = -100
    fn = getattr(lj, name)
    extra = {"linear_preference_loss": {"ref_logps": jnp.asarray(rng.normal(size=4))},
             "linear_grpo_loss": {"old_logps": jnp.asarray(rng.normal(size=(4, 13)) - 3),
                                  "advantages": jnp.asarray(rng.normal(size=4))}}.get(name, {})

    def loss(hidden, classifier):
        if name == "linear_logprobs":
            return jnp.sum(fn(hidden, classifier, target) * jnp.arange(13.0))
        if name == "linear_jsd_loss":
            return fn(hidden, classifier, hidden[..., ::-1], classifier * 0.5, target)
        return fn(hidden, classifier, target, **extra)

    lowered = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    halved = hidden * 0.5
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        first = jax.grad(loss, argnums=(0, 1))(hidden, classifier)
        n_first = len(lowered)
        again = jax.grad(loss, argnums=(0, 1))(halved, classifier)
        n_again = len(lowered) - n_first
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert n_first <= 12 and n_again == 0, (n_first, n_again)
    jitted = jax.jit(jax.grad(loss, argnums=(0, 1)))
    for got, expected in ((first, jitted(hidden, classifier)), (again, jitted(halved, classifier))):
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)
    target[0, 5] = 37  # an id past the vocabulary: refused by name, as before
    with pytest.raises(lk.LossInputError, match="^target"):
        loss(hidden, classifier)


def test_the_fused_forms_programs_are_keyed_on_their_options_types_and_a_callers_function_runs_as_called():
    """Found in review of the programs above: ``True``, ``1`` and ``1.0`` hash alike, and a program traced (its
    options checked) for ``chunk_size=1`` served ``chunk_size=True``, which was refused before; a refused call's
    program refused the next valid one. And ``fused_linear`` of a function made per call (a partial) compiled a
    new program at every call: a caller's function runs op by op, as it did."""
    import functools

    from losskit.losses.linear import linear_cross_entropy_value_and_grad

    rng = np.random.default_rng(22)
    hidden, classifier = jnp.asarray(rng.normal(size=(2, 5, 4))), jnp.asarray(rng.normal(size=(11, 4)))
    target = jnp.asarray(rng.integers(0, 11, (2, 5)))
    teacher = (hidden[..., ::-1], classifier * 0.5)
    expected = lj.linear_jsd_loss(hidden, classifier, *teacher, target, chunk_size=1)
    for bad in (True, 1.0):
        with pytest.raises(lk.LossInputError, match="^chunk_size"):
            lj.linear_jsd_loss(hidden, classifier, *teacher, target, chunk_size=bad)
    with pytest.raises(lk.LossInputError, match="^chunk_size"):
        lj.linear_logprobs(hidden, classifier, target, chunk_size=True)
    np.testing.assert_array_equal(lj.linear_logprobs(hidden, classifier, target, chunk_size=1),
                                  lj.linear_logprobs(hidden, classifier, target, chunk_size=2))
    assert float(lj.linear_jsd_loss(hidden, classifier, *teacher, target, chunk_size=1)) == float(expected)
    lowered = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    flat = hidden.reshape(10, 4)
    values = []
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for _ in range(3):
            function = functools.partial(linear_cross_entropy_value_and_grad, reduction="mean")
            values.append(float(lj.fused_linear(function, flat, classifier, target.reshape(10))))
            lowered.append("call")
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert lowered[lowered.index("call") + 1:].count("call") == 2
    assert lowered[lowered.index("call") + 1:] == ["call", "call"]  # nothing lowered after the first call
    assert values[0] == values[1] == values[2]
    np.testing.assert_allclose(values[0], lk.linear_cross_entropy(np.asarray(flat), np.asarray(classifier),
                                                                  np.asarray(target).reshape(10)), rtol=1e-12)


def test_an_eager_call_of_ones_own_loss_sees_its_options():
    """A loss of one's own runs each object's options (its eager calls stay op by op: one program per class would
    keep the first object's). Its formula reads on self its options alone, fixed at construction (a class
    constant read on self is refused when the class is made: tests/test_own_loss.py), so a value set afterwards
    is refused rather than seen by one path and not another."""

    class Scaled(lk.ElementwiseLoss):
        name = "scaled_square_test"
        target = "value"
        factor = lk.option(1.0)

        def value(self, xp, z, y):
            return self.factor * (z - y) ** 2

        def derivative(self, xp, z, y):
            return 2 * self.factor * (z - y)

        def second_derivative(self, xp, z, y):
            return 2 * self.factor + 0 * z

    z, y = jnp.asarray(np.linspace(-1.0, 1.0, 9)), jnp.zeros(9)
    loss = Scaled()
    f = lj.loss_fn(loss)
    base, base_grad = float(f(z, y)), jax.grad(lambda z: f(z, y))(z)
    g = lj.loss_fn(Scaled(factor=3.0))
    assert float(g(z, y)) == pytest.approx(3 * base, rel=1e-14)
    np.testing.assert_allclose(jax.grad(lambda z: g(z, y))(z), 3 * base_grad, rtol=1e-14)
    assert float(f(z, y)) == base
    with pytest.raises(AttributeError, match="Scaled.factor is fixed at construction"):
        loss.factor = 5.0
    lk.REGISTRY.pop("scaled_square_test", None)


def test_an_eager_call_takes_a_new_normalizer_without_a_new_program_and_checks_numbers():
    """A number normalizer that changes per batch is an argument of the program, not a constant of it; a
    number weight or target keeps the op-by-op path and its checks (a negative weight raises)."""
    lowered = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    z, y = jnp.asarray(np.linspace(-2.0, 2.0, 23)), jnp.zeros(23)
    lj.huber_loss(z, y, normalizer=7.0)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        values = [float(lj.huber_loss(z, y, normalizer=n)) for n in (11.0, 12.0, 13)]
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert lowered == []
    total = float(lj.huber_loss(z, y, reduction="sum"))
    np.testing.assert_allclose(values, [total / 11, total / 12, total / 13], rtol=1e-14)
    with pytest.raises(lk.LossInputError, match="weight"):
        lj.huber_loss(jnp.asarray(0.5), jnp.asarray(0.0), weight=-2.0)
    assert float(lj.huber_loss(jnp.asarray(0.5), 0.0)) == pytest.approx(0.125)


@pytest.mark.parametrize("bad, given", [(0.0, "0.0"), (-2.0, "-2.0"), (float("inf"), "inf"), (float("nan"), "nan"),
                                        ("a", "str"), (1e-50, "1e-50")])
def test_a_bad_number_normalizer_is_refused_before_the_trace(bad, given):
    """Inside the custom_vjp a number is a traced array, which the plan cannot check: a 0 normalizer gave
    the sum, a negative one a negative loss, without a word. It is checked where it is still a number,
    under jit too."""
    z, y = jnp.zeros((4, 3), jnp.float32), jnp.array([0, 1, 2, 1])
    f = lj.loss_fn(lk.SoftmaxCrossEntropy())
    for call in (lambda: f(z, y, normalizer=bad), lambda: lj.softmax_cross_entropy(z, y, normalizer=bad),
                 lambda: jax.jit(lambda z: f(z, y, normalizer=bad))(z)):
        with pytest.raises(lk.LossInputError, match=f"normalizer: expected .*got .*{re.escape(given)}"):
            call()
    assert float(jax.jit(lambda z: f(z, y, normalizer=2.0))(z)) == pytest.approx(4 * np.log(3) / 2, rel=1e-6)


def test_grad_in_a_normalizer_that_is_checked_eagerly():
    """The eager check of a normalizer reads no float of a tracer: jax.grad in the normalizer works (it
    raised ConcretizationTypeError after the check was added), and equals -loss_sum / n**2."""
    z, y = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3))), jnp.array([0, 1, 2, 1])
    total = float(lk.softmax_cross_entropy(np.asarray(z), np.asarray(y), reduction="sum"))
    for f in (lambda n: lj.softmax_cross_entropy(z, y, normalizer=n),
              lambda n: lk.SoftmaxCrossEntropy(impl="xp")(z, y, normalizer=n)):
        assert float(jax.grad(f)(4.0)) == pytest.approx(-total / 16, rel=1e-6)


def test_arrays_of_another_library_are_named():
    """A torch tensor reached JAX's own TypeError ("... is not a valid JAX type"), naming no argument."""
    torch = pytest.importorskip("torch")
    with pytest.raises(lk.LossInputError, match=r"^logits: expected a JAX or NumPy array .*got torch\.Tensor"):
        lj.softmax_cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(lk.LossInputError, match=r"^target: expected a JAX or NumPy array"):
        lj.loss_fn(lk.HuberLoss())(jnp.zeros(4), torch.zeros(4))


@pytest.mark.parametrize("loss", [lk.SoftmaxCrossEntropy(), lk.SoftmaxCrossEntropy(ignore_index=-100, class_weight=[
    1.0, 2.0, 1.0, 0.5, 1.0]), lk.SoftmaxFocalLoss(), lk.PolyCrossEntropy(), lk.MulticlassHingeLoss()],
    ids=lambda loss: type(loss).__name__ + ("_options" if getattr(loss, "ignore_index", None) is not None else ""))
def test_a_label_out_of_range_under_jit_is_nan_not_another_class(loss):
    """Under jit no check can read a label: 7 of 5 classes was clipped to class 4 and -3 wrapped to class 2,
    a finite loss for a class the data never named. Now the call's value and gradient are NaN (optax's
    gather gives NaN too); valid and ignored labels are unchanged."""
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    step = jax.jit(jax.value_and_grad(lambda z, y: lj.loss_fn(loss)(z, y)))
    for bad in (7, -3):
        value, grad = step(z, jnp.asarray([0, bad, 1]))
        assert np.isnan(float(value)) and np.isnan(np.asarray(grad)).any(), bad
    good = np.array([0, 2, 1])
    value, grad = step(z, jnp.asarray(good))
    expected, expected_grad = loss.value_and_grad(np.asarray(z), good)
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-12, atol=1e-15)
    if getattr(loss, "ignore_index", None) is not None:
        ignored = np.array([0, -100, 1])
        np.testing.assert_allclose(float(step(z, jnp.asarray(ignored))[0]), float(loss(np.asarray(z), ignored)),
                                   rtol=1e-12)


@pytest.mark.parametrize("fn", [lk.softmax_cross_entropy, lk.poly_cross_entropy, lk.softmax_focal_loss,
                                lk.multiclass_hinge_loss, lk.kl_divergence], ids=lambda fn: fn.__name__)
def test_jax_grad_of_the_core_loss_with_a_label_out_of_range_is_nan_in_that_row(fn):
    """jax.grad through the core loss (not loss_fn): a label of 7 of 5 classes kept its NaN value but JAX's
    gather dropped its cotangent, so under "sum" the gradient was finite, the bad example's row 0 (softmax
    CE, KL): a step that read the gradient alone left the example out without a word (found in review)."""
    z = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    for reduction in ("sum", "mean"):
        value, grad = jax.jit(jax.value_and_grad(functools.partial(fn, reduction=reduction)))(z, jnp.asarray([0, 7, 1]))
        assert np.isnan(float(value)) and np.isnan(np.asarray(grad)[1]).any(), reduction  # (the hinge's: 2 classes)


def test_fused_linear_losses_under_jit_give_nan_for_an_id_outside_the_vocabulary():
    rng = np.random.default_rng(0)
    hidden, classifier = jnp.asarray(rng.normal(size=(4, 3, 2))), jnp.asarray(rng.normal(size=(5, 2)))
    target = np.array([[0, 1, 2], [1, 2, 3], [0, 0, 1], [3, 3, 3]])
    preference = jax.jit(lambda h, y: lj.linear_preference_loss(h, classifier, y, ref_logps=jnp.zeros(4)))
    jsd = jax.jit(lambda h, y: lj.linear_jsd_loss(h, classifier, h * 0.5, classifier, y))
    for fn in (preference, jsd):
        assert np.isfinite(float(fn(hidden, jnp.asarray(target))))
        for bad in (9, -2):
            wrong = target.copy()
            wrong[1, 2] = bad
            assert np.isnan(float(fn(hidden, jnp.asarray(wrong)))), (fn, bad)


def test_fused_linear_checks_a_known_targets_ids_with_the_functions_own_default_and_dense_targets_not_at_all():
    """Found in review: fused_linear checked a known target's ids against ignore_index -100 whatever the function's
    default (linear_cross_entropy's is None: a -100 closed over under jit gave NaN, and the errors named an
    ignore_index never set), and took the multi-label BCE's 0/1 rows for class ids (a valid target refused)."""
    from losskit.losses.linear import linear_binary_cross_entropy_value_and_grad, linear_cross_entropy_value_and_grad

    rng = np.random.default_rng(0)
    hidden, classifier = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(5, 3)))
    target = np.array([0, 1, -100, 2])
    with pytest.raises(lk.LossInputError, match=r"^target: expected class indices in \[0, 5\), got label -100"):
        jax.jit(lambda h: lj.fused_linear(linear_cross_entropy_value_and_grad, h, classifier, target))(hidden)
    kept = target != -100
    expected = lk.linear_cross_entropy(np.asarray(hidden)[kept], np.asarray(classifier), target[kept])
    got = jax.jit(lambda h: lj.fused_linear(linear_cross_entropy_value_and_grad, h, classifier, target,
                                            ignore_index=-100))(hidden)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-12)
    one = jnp.asarray(rng.normal(size=(1, 3)))
    labels = np.ones((4, 1))
    np.testing.assert_allclose(float(lj.fused_linear(linear_binary_cross_entropy_value_and_grad, hidden, one, labels)),
                               float(lk.linear_binary_cross_entropy(np.asarray(hidden), np.asarray(one), labels)),
                               rtol=1e-12)


def test_a_normalizer_of_zero_or_below_under_jit_is_nan_not_another_number():
    """Eagerly a normalizer of 0 is refused; under jit no check reads it, and the empty-batch guard turned it
    into 1: the sum, a plausible wrong number; then it divided as given: inf for 0, and for -2 a negative loss
    whose gradient pointed uphill (found in review). Now NaN, value and gradient, as a bad label is under jit
    (docs/semantics.md), in the core loss under jax.jit too."""
    z, y = jnp.zeros((2, 3)), jnp.asarray([0, 1])
    for fn in (lj.softmax_cross_entropy, lk.softmax_cross_entropy):
        step = jax.jit(jax.value_and_grad(lambda z, n, fn=fn: fn(z, y, normalizer=n)))
        for bad in (0.0, -2.0, float("inf")):
            value, grad = step(z, bad)
            assert np.isnan(float(value)) and np.isnan(np.asarray(grad)).all(), (fn, bad)
        assert float(step(z, 2.0)[0]) == pytest.approx(np.log(3), rel=1e-6)
    with pytest.raises(lk.LossInputError, match="^normalizer"):
        lj.softmax_cross_entropy(z, y, normalizer=0.0)


def test_python_numbers_give_a_jax_array_eagerly_as_under_jit_and_grad_does_not_warn():
    """Python numbers were planned on NumPy eagerly (a NumPy float64 where jit gave a JAX array) and grad warned
    of a float64 astype (found in review): they are made JAX arrays first, as lists and NumPy arrays are."""
    import warnings

    eager = lj.binary_cross_entropy_with_logits(2.0, 1.0)
    jitted = jax.jit(lj.binary_cross_entropy_with_logits)(2.0, 1.0)
    assert isinstance(eager, jax.Array) and eager.dtype == jitted.dtype
    np.testing.assert_allclose(float(eager), np.log1p(np.exp(-2.0)), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(float(jax.grad(lj.binary_cross_entropy_with_logits)(2.0, 1.0)),
                                   1 / (1 + np.exp(-2.0)) - 1, rtol=1e-6)


def test_lists_and_numpy_arrays_beside_jax_logits_work_eagerly_and_under_jit_and_grad():
    """A NumPy target beside JAX logits was refused eagerly as 'arrays of one library' (JAX hands a
    custom_vjp's NumPy argument on as its own literal type); a list target or weight raised a raw
    TracerArrayConversionError under jit and 'list of dtype object' under grad; lj.head(...).loss of a
    list an AttributeError (found in review). Each equals the call on JAX arrays."""
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(3, 4)))
    y, w = [0, 1, 2], [0.5, 1.0, 2.0]
    want = lj.softmax_cross_entropy(z, jnp.asarray(y), weight=jnp.asarray(w))
    want_grad = jax.grad(lambda a: lj.softmax_cross_entropy(a, jnp.asarray(y), weight=jnp.asarray(w)))(z)
    for target, weight in ((y, w), (np.asarray(y), np.asarray(w)), (tuple(y), tuple(w))):
        np.testing.assert_allclose(lj.softmax_cross_entropy(z, target, weight=weight), want, rtol=1e-15)
        np.testing.assert_allclose(jax.jit(lambda a, t=target, v=weight: lj.softmax_cross_entropy(a, t, weight=v))(z),
                                   want, rtol=1e-15)
        np.testing.assert_allclose(jax.grad(lambda a, t=target, v=weight: lj.softmax_cross_entropy(a, t, weight=v))(z),
                                   want_grad, rtol=1e-15)
    zb = jnp.asarray(rng.normal(size=3))
    np.testing.assert_allclose(lj.head("binary").loss(zb, [0, 1, 1]), lk.head("binary").loss(np.asarray(zb), [0, 1, 1]),
                               rtol=1e-12)


def test_differentiating_an_option_or_a_constant_input_is_refused_by_name():
    """jax.grad of a loss's array option (class weight, focal's per-class alpha) met JAX's UnexpectedTracerError,
    which names no argument (under jit(grad) and grad(jit) other errors); jax.grad of a fused loss's constant
    input (GRPO's advantages) returned a silent 0. Each is now a LossInputError naming it, under every
    composition; held constant with stop_gradient, and under jit and vmap, the call equals the core loss's.
    A distillation's teacher stays a constant by design."""
    rng = np.random.default_rng(0)
    z, y, cw = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray([0, 1, 2, 0]), jnp.asarray([1.0, 2.0, 0.5])
    for name, loss in (("class_weight", lambda c: lj.softmax_cross_entropy(z, y, class_weight=c)),
                       ("alpha", lambda c: lj.softmax_focal_loss(z, y, alpha=c))):
        for transformed in (jax.grad(loss), jax.jit(jax.grad(loss)), jax.grad(jax.jit(loss)),
                            lambda c, loss=loss: jax.vmap(jax.grad(loss))(jnp.stack([c, c]))):
            with pytest.raises(lk.LossInputError, match=f"^{name}: expected an array held constant"):
                transformed(cw)
        want = float(getattr(lk, "softmax_cross_entropy" if name == "class_weight" else "softmax_focal_loss")(
            np.asarray(z), np.asarray(y), **{name: np.asarray(cw)}))
        assert float(jax.jit(loss)(cw)) == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(jax.vmap(loss)(jnp.stack([cw, cw])), [want, want], rtol=1e-12)
        assert float(loss(jax.lax.stop_gradient(cw))) == pytest.approx(want, rel=1e-12)
    hidden = jnp.asarray(rng.normal(size=(4, 2, 3)))
    classifier, target = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray([[0, 1], [2, 0], [1, 1], [3, 4]])
    old, advantages = jnp.asarray(rng.normal(size=(4, 2))) - 2, jnp.asarray([1.0, -1.0, 0.5, 0.2])

    def grpo(h, a):
        return lj.linear_grpo_loss(h, classifier, target, old_logps=old, advantages=a)

    with pytest.raises(lk.LossInputError, match="^advantages: expected an array held constant"):
        jax.grad(grpo, argnums=1)(hidden, advantages)
    with pytest.raises(lk.LossInputError, match="^old_logps: expected an array held constant"):
        jax.grad(lambda o: lj.linear_grpo_loss(hidden, classifier, target, old_logps=o, advantages=advantages))(old)
    np.testing.assert_allclose(jax.grad(lambda h: grpo(h, jax.lax.stop_gradient(advantages)))(hidden),
                               jax.grad(grpo)(hidden, advantages), rtol=1e-15)
    # a distillation's teacher is constant by design (GKD trains the student): a shared layer differentiated
    # through both gets the student's gradient alone, as with the teacher held by stop_gradient
    def jsd(c, teacher):
        return lj.linear_jsd_loss(hidden[0], c, hidden[0], teacher)

    np.testing.assert_allclose(jax.grad(lambda c: jsd(c, c))(classifier),
                               jax.grad(lambda c: jsd(c, jax.lax.stop_gradient(c)))(classifier), rtol=1e-15)


def test_numpy_arrays_give_the_gradients_of_jax_arrays_in_target_weight_and_normalizer():
    """loss_fn takes NumPy arrays: made JAX's at the call, as jit makes its arguments. Kept NumPy, jax.grad in
    the target or the weight raised 'expected arrays of one library' (the backward's re-call met them beside
    tracers), and the normalizer's gradient was silently 0 (a NumPy namespace read the JAX normalizer as a
    number). Against the same call on JAX arrays, and the normalizer's against -value / n by hand."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    q = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    f = lj.loss_fn(lk.SoftmaxCrossEntropy())
    for transform in (lambda g: g, jax.jit):
        by_target = transform(jax.grad(lambda t: f(z, t, w)))(q)
        np.testing.assert_allclose(by_target, jax.grad(lambda t: f(jnp.asarray(z), t, jnp.asarray(w)))(
            jnp.asarray(q)), rtol=1e-6)
        by_weight = transform(jax.grad(lambda v: f(z, q, v)))(w)
        np.testing.assert_allclose(by_weight, jax.grad(lambda v: f(jnp.asarray(z), jnp.asarray(q), v))(
            jnp.asarray(w)), rtol=1e-6)
        assert np.abs(by_weight).max() > 1e-3
        by_normalizer = transform(jax.grad(lambda n: f(z, y, None, n)))(jnp.float32(2.0))
        value = float(f(jnp.asarray(z), jnp.asarray(y), None, 2.0))
        np.testing.assert_allclose(by_normalizer, -value / 2.0, rtol=1e-6)
    by_target = jax.grad(lambda t: lj.binary_cross_entropy_with_logits(z[:, 0], t))(q[:, 0])
    np.testing.assert_allclose(by_target, -z[:, 0] / 4, rtol=1e-6)  # d/dt of the mean of softplus(z) - t z
