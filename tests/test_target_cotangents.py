"""docs/frameworks.md: "Float targets (soft labels, a teacher's probabilities), weights and the
normalizer get their true cotangents" in ``losskit.jax``.

The reference is never losskit's own forward: optax where its function is the same loss and its
autodiff is right, else the loss's formula from docs/losses.md written out in plain ``jnp`` here.
Targets hold exact 0s and 1s (a one-hot row, a 0/1 label), where a ``0 * log p`` written as
``where(coef == 0, 0, ...)`` would differentiate to a silent 0; weights hold an exact 0 (an example
weighted out still has d value / d weight = l_i / D).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
lj = pytest.importorskip("losskit.jax")

import jax.numpy as jnp  # noqa: E402

import losskit as lk  # noqa: E402
from losskit.losses import registry  # noqa: E402

jax.config.update("jax_enable_x64", True)
N, K = 5, 4
RNG = np.random.default_rng(20)
Z = RNG.normal(scale=1.5, size=(N, K))
ONE_HOT = np.eye(K)[[0, 1, 2, 3, 0]]
#: soft rows with exact 0s in them, summing to 1
SOFT_WITH_ZEROS = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.2, 0.3, 0.5], [1.0, 0.0, 0.0, 0.0],
                            [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.9, 0.1]])
BINARY = np.array([[1.0, 0.0, 0.3, 1.0], [0.0, 0.0, 1.0, 0.7], [1.0, 1.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.2],
                   [0.0, 1.0, 1.0, 0.0]])
PROBS_IN = 1 / (1 + np.exp(-Z))
SIMPLEX_IN = np.exp(Z) / np.exp(Z).sum(-1, keepdims=True)
REAL = RNG.normal(size=(N, K))
REAL[0, :2] = [0.0, 1.0]
POSITIVE = RNG.gamma(2.0, 1.0, size=(N, K))
STRICT_SOFT = np.exp(RNG.normal(size=(N, K)))
STRICT_SOFT /= STRICT_SOFT.sum(-1, keepdims=True)


def _sigmoid_focal(z, y, gamma=2.0, alpha=None):
    p = jax.nn.sigmoid(z)
    q = y * (1 - p) + (1 - y) * p  # 1 - p_t
    a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return a_t * q ** gamma * optax.sigmoid_binary_cross_entropy(z, y)


def _softmax_focal(z, y, gamma=2.0):
    lp = jax.nn.log_softmax(z)
    return -jnp.sum(y * (1 - jnp.exp(lp)) ** gamma * lp, axis=-1)


def _poly(z, y, eps=1.0):  # docs/losses.md: CE(z, y') + eps (1 - sum_k y'_k p_k)
    return optax.softmax_cross_entropy(z, y) + eps * (1 - jnp.sum(y * jax.nn.softmax(z), axis=-1))


def _distillation(z, t, temperature=2.0):
    q = jax.nn.softmax(t / temperature)
    return temperature ** 2 * jnp.sum(q * (jnp.log(q) - jax.nn.log_softmax(z / temperature)), axis=-1)


def _jsd(z, t, beta, temperature=1.0):
    """GKD's generalised JSD (Agarwal et al. 2024, eq. 1), TRL's endpoints, mixed in probability space."""
    p, q = jax.nn.softmax(z / temperature), jax.nn.softmax(t / temperature)
    if beta == 0.0:
        return jnp.sum(q * jnp.log(q / p), axis=-1)
    if beta == 1.0:
        return jnp.sum(p * jnp.log(p / q), axis=-1)
    m = beta * q + (1 - beta) * p
    return beta * jnp.sum(q * jnp.log(q / m), axis=-1) + (1 - beta) * jnp.sum(p * jnp.log(p / m), axis=-1)


def _tweedie(eta, y, power):
    mu, a, b = jnp.exp(eta), 1 - power, 2 - power
    return 2 * (y ** b / (a * b) - y * mu ** a / a + mu ** b / b)


def _gaussian(x, y):
    m, s = x[..., 0], x[..., 1]
    return (s + (y - m) ** 2 * jnp.exp(-s) + jnp.log(2 * jnp.pi)) / 2


def _asl(z, y, gamma_pos=1.0, gamma_neg=2.0, clip=0.05):
    """ASL (Ridnik et al. 2021) from the paper, with its focusing weights differentiated."""
    p = jax.nn.sigmoid(z)
    p_m = jnp.maximum(p - clip, 0.0)
    positive = -((1 - p) ** gamma_pos) * jnp.log(p)
    negative = -(p_m ** gamma_neg) * jnp.log(1 - p_m)
    return jnp.sum(y * positive + (1 - y) * negative, axis=-1)


def _pinball(x, y, quantiles):
    e = y[..., None] - x
    q = jnp.asarray(quantiles)
    return jnp.sum(jnp.maximum(q * e, (q - 1) * e), axis=-1)


#: name -> (options, input, float target, reference per-example loss (of the rows or elements),
#: whether an example is an element (weight of the input's shape) rather than a row)
REFERENCES = {
    "softmax_cross_entropy": ({}, Z, ONE_HOT, optax.softmax_cross_entropy, False),
    "softmax_cross_entropy-soft": ({}, Z, SOFT_WITH_ZEROS, optax.softmax_cross_entropy, False),
    "softmax_cross_entropy-smoothing": ({"label_smoothing": 0.2}, Z, ONE_HOT,
                                        lambda z, y: optax.softmax_cross_entropy(z, 0.8 * y + 0.2 / K), False),
    "categorical_cross_entropy": ({}, SIMPLEX_IN, ONE_HOT, lambda p, y: -jnp.sum(y * jnp.log(p), axis=-1), False),
    "binary_cross_entropy_with_logits": ({}, Z, BINARY, optax.sigmoid_binary_cross_entropy, True),
    "binary_cross_entropy_with_logits-pos_weight": (
        {"pos_weight": 2.5}, Z, BINARY,
        lambda z, y: -(2.5 * y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z)), True),
    "binary_cross_entropy": ({}, PROBS_IN, BINARY, lambda p, y: -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p)), True),
    "multilabel_cross_entropy": ({}, Z, BINARY,
                                 lambda z, y: jnp.sum(optax.sigmoid_binary_cross_entropy(z, y), axis=-1), False),
    # optax.sigmoid_focal_loss is not a reference at 0/1 labels: its logsumexp(b=labels) drops the
    # b = 0 term, so its own label gradient is wrong there; the formula is written out instead
    "sigmoid_focal_loss": ({"gamma": 2.0, "alpha": 0.25}, Z, BINARY,
                           lambda z, y: _sigmoid_focal(z, y, 2.0, 0.25), True),
    "multilabel_sigmoid_focal_loss": ({"gamma": 1.5}, Z, BINARY,
                                      lambda z, y: jnp.sum(_sigmoid_focal(z, y, 1.5), axis=-1), False),
    "softmax_focal_loss": ({"gamma": 2.0}, Z, SOFT_WITH_ZEROS, _softmax_focal, False),
    "poly_cross_entropy": ({"epsilon": 1.0}, Z, SOFT_WITH_ZEROS, _poly, False),
    # KL: d/dy of y log y is -inf at y = 0, so the targets here are strictly positive
    "kl_divergence": ({}, Z, STRICT_SOFT, lambda z, y: optax.kl_divergence(jax.nn.log_softmax(z), y), False),
    "distillation_loss": ({"temperature": 2.0}, Z, REAL, _distillation, False),
    "js_divergence": ({"beta": 0.3, "temperature": 2.0}, Z, REAL, lambda z, t: _jsd(z, t, 0.3, 2.0), False),
    "js_divergence-forward": ({"beta": 0.0}, Z, REAL, lambda z, t: _jsd(z, t, 0.0), False),
    "js_divergence-reverse": ({"beta": 1.0}, Z, REAL, lambda z, t: _jsd(z, t, 1.0), False),
    "mean_squared_error": ({}, Z, REAL, lambda x, y: jnp.mean(optax.squared_error(x, y), axis=-1), False),
    "absolute_error": ({}, Z, REAL, lambda x, y: jnp.mean(jnp.abs(x - y), axis=-1), False),
    "huber_loss": ({"delta": 0.5}, Z, REAL, lambda x, y: jnp.mean(optax.huber_loss(x, y, delta=0.5), axis=-1),
                   False),
    "smooth_l1_loss": ({"beta": 0.5}, Z, REAL,
                       lambda x, y: jnp.mean(optax.huber_loss(x, y, delta=0.5) / 0.5, axis=-1), False),
    "pseudo_huber_loss": ({"delta": 0.3}, Z, REAL,
                          lambda x, y: jnp.mean(0.09 * (jnp.sqrt(1 + ((x - y) / 0.3) ** 2) - 1), axis=-1), False),
    "log_cosh_loss": ({}, Z, REAL, lambda x, y: jnp.mean(optax.log_cosh(x, y), axis=-1), False),
    "quantile_loss": ({"quantiles": [0.1, 0.5, 0.9]}, Z[:, :3], REAL[:, 0],
                      lambda x, y: _pinball(x, y, [0.1, 0.5, 0.9]), False),
    "poisson_deviance": ({}, Z * 0.5, POSITIVE, lambda x, y: jnp.mean(2 * (y * jnp.log(y / jnp.exp(x)) - y
                                                                           + jnp.exp(x)), axis=-1), False),
    "gamma_deviance": ({}, Z * 0.5, POSITIVE, lambda x, y: jnp.mean(2 * (jnp.log(jnp.exp(x) / y) + y / jnp.exp(x)
                                                                         - 1), axis=-1), False),
    "tweedie_deviance": ({"power": 1.5}, Z * 0.5, POSITIVE, lambda x, y: jnp.mean(_tweedie(x, y, 1.5), axis=-1),
                         False),
    "gaussian_nll_loss": ({}, Z[:, :2] * 0.5, REAL[:, 0], _gaussian, False),
    "exponential_loss": ({}, Z, BINARY, lambda z, y: y * jnp.exp(-z) + (1 - y) * jnp.exp(z), True),
    "asymmetric_loss": ({"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.05}, Z, BINARY, _asl, False),
}

#: float targets read as a class label's sign (0/1 or -1/+1), not as a quantity: jax.grad in one is refused
#: (docs/frameworks.md; test below); integer-only targets get a float0 cotangent
NOT_QUANTITIES = {"hinge_loss", "squared_hinge_loss", "multilabel_hinge_loss", "multilabel_squared_hinge_loss",
                  "multiclass_hinge_loss"}


@pytest.mark.parametrize("name", sorted(NOT_QUANTITIES - {"multiclass_hinge_loss"}))
def test_a_differentiated_sign_target_is_refused_by_name(name):
    """The hinge losses' float target is a sign: jax.grad in it was a silent 0 (optax's hinge gives -s z, as it
    multiplies by the target as a number; found in review). Refused, as a differentiated option is; the logits'
    gradient with the target held constant is unchanged."""
    fn = lj.loss_fn(lk.losses.catalogue()[name][0]())
    z = jnp.asarray([[-2.0, 0.5], [2.0, -0.5]])
    s = jnp.asarray([[1.0, 1.0], [-1.0, -1.0]])
    for transform in (jax.grad, lambda f, argnums: jax.jit(jax.grad(f, argnums))):
        with pytest.raises(lk.LossInputError, match="^target: expected labels held constant"):
            transform(fn, 1)(z, s)
    assert np.isfinite(np.asarray(jax.grad(fn)(z, s))).all()


def test_every_loss_with_a_float_target_has_a_reference_here():
    covered = {key.split("-")[0] for key in REFERENCES}
    shipped = set(lk.losses.catalogue())
    assert covered | NOT_QUANTITIES == shipped, shipped - covered - NOT_QUANTITIES


@pytest.mark.parametrize("key", sorted(REFERENCES))
def test_target_and_weight_cotangents_equal_the_reference(key):
    options, x, target, per_example, elementwise = REFERENCES[key]
    name = key.split("-")[0]
    fn = getattr(lj, name)
    x = jnp.asarray(x)
    batch = x.shape if elementwise else x.shape[:-1]
    weight = np.random.default_rng(1).uniform(0.5, 2.0, size=batch)
    weight.flat[1] = 0.0  # weighted out: its cotangent is l_i / D - value / D, not 0
    target, weight = jnp.asarray(target), jnp.asarray(weight)

    def ours(target, weight):
        return fn(x, target, weight=weight, **options)

    def reference(target, weight):  # "mean": sum_i w_i l_i / sum_i w_i
        return jnp.sum(weight * per_example(x, target)) / jnp.sum(weight)

    np.testing.assert_allclose(ours(target, weight), reference(target, weight), rtol=1e-12)
    got = jax.jit(jax.grad(ours, argnums=(0, 1)))(target, weight)
    expected = jax.grad(reference, argnums=(0, 1))(target, weight)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-9, atol=1e-12, err_msg="target")
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-9, atol=1e-12, err_msg="weight")


def test_normalizer_cotangent_is_minus_the_sum_over_its_square():
    y = jnp.asarray(ONE_HOT)
    value, d_norm = jax.value_and_grad(lambda n: lj.softmax_cross_entropy(jnp.asarray(Z), y, normalizer=n))(3.0)
    total = float(jnp.sum(optax.softmax_cross_entropy(jnp.asarray(Z), y)))
    np.testing.assert_allclose(value, total / 3.0, rtol=1e-12)
    np.testing.assert_allclose(d_norm, -total / 9.0, rtol=1e-12)


@pytest.mark.parametrize("key", sorted(k for k in REFERENCES if "-" not in k))
def test_of_error_is_declared_exactly_where_the_target_gradient_is_minus_the_input_gradient(key):
    """``Loss.of_error`` (losskit.jax then gives the target ``-`` the input's cotangent, with no
    autodiff) is declared by exactly the losses whose reference has d l / d y = -d l / d x."""
    options, x, target, per_example, _ = REFERENCES[key]
    if np.shape(target) != np.shape(x):
        assert not registry.lookup(key).of_error
        return
    dx, dy = jax.grad(lambda x, y: jnp.sum(per_example(x, y)), argnums=(0, 1))(jnp.asarray(x), jnp.asarray(target))
    assert registry.lookup(key).of_error == bool(np.allclose(dy, -dx, rtol=1e-12, atol=1e-15))


def test_a_cotangent_nobody_asks_for_is_not_computed(monkeypatch):
    """Eager ``jax.grad`` in the logits with a float weight runs no autodiff through the core's
    forward (the weight's cotangent is not asked for); asking for it runs that forward once."""
    calls = []
    original = lk.SoftmaxCrossEntropy.__call__

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lk.SoftmaxCrossEntropy, "__call__", counted)
    z, y, w = jnp.asarray(Z), jnp.asarray(ONE_HOT), jnp.asarray(np.linspace(0.5, 1.5, N))
    jax.grad(lambda z: lj.softmax_cross_entropy(z, y, weight=w))(z)
    assert calls == []
    d_weight = jax.grad(lambda w: lj.softmax_cross_entropy(z, y, weight=w))(w)
    assert calls == [1]
    per_example = optax.softmax_cross_entropy(z, y)
    np.testing.assert_allclose(d_weight, (per_example - jnp.sum(w * per_example) / jnp.sum(w)) / jnp.sum(w),
                               rtol=1e-12)


@pytest.mark.parametrize("delta", [1e6, 1e12])
def test_pseudo_huber_target_cotangent_stays_finite_for_a_huge_delta_in_float32(delta):
    """float32, errors up to 2^40 delta and 1e30: the target's cotangent in losskit.jax and by
    ``jax.grad`` through the core's forward is finite and equals -(the input's), which is
    delta e / sqrt(delta^2 + e^2) / n (float64 closed form). It was NaN (d value / d q = a^2 h
    overflowed in the one-division value, with the switch to the linear tail at 2^30)."""
    magnitudes = [2.0 ** k * delta for k in range(0, 41, 4)] + [1e30]
    e = np.array([s * m for m in magnitudes for s in (-1.0, 1.0)], np.float32)
    z, y = jnp.asarray(e), jnp.zeros(e.shape, jnp.float32)
    e64 = e.astype(np.float64)
    exact = delta * e64 / np.sqrt(delta ** 2 + e64 ** 2) / e.size
    loss = lk.PseudoHuberLoss(delta=delta)
    for f in (lj.loss_fn(loss), lambda z, y: loss(z, y)):
        dz, dy = jax.grad(f, argnums=(0, 1))(z, y)
        np.testing.assert_allclose(np.asarray(dz, np.float64), exact, rtol=4e-7)
        np.testing.assert_allclose(np.asarray(dy, np.float64), -exact, rtol=4e-7)


def test_a_subclass_with_its_own_formula_does_not_inherit_of_error():
    """A user's subclass of a loss of the error whose value reads the target otherwise (a relative
    error) gets its target cotangent by autodiff, not -(the input's): the inherited declaration is
    dropped when the subclass writes its own formula, and kept when it writes none."""

    @lk.formula_function
    def huber_of(xp, e, delta):  # (a formula calls no super(): the compiled kernel has no parent class)
        small = xp.abs(e) <= delta
        return xp.where(small, 0.5 * e * e, delta * (xp.abs(e) - 0.5 * delta))

    class RelativeHuber(lk.HuberLoss):
        name = None

        def value(self, xp, z, y):
            return huber_of(xp, z / y - 1, self.delta)

        def derivative(self, xp, z, y):
            return xp.clip(z / y - 1, -self.delta, self.delta) / y

        def second_derivative(self, xp, z, y):
            return xp.where(xp.abs(z / y - 1) <= self.delta, 1.0, 0.0) / (y * y)

    class WiderHuber(lk.HuberLoss):
        name = None

    assert not RelativeHuber.of_error and WiderHuber.of_error and lk.HuberLoss.of_error
    loss = RelativeHuber(delta=0.5)
    z, y = jnp.asarray(REAL + 3.0), jnp.asarray(POSITIVE + 1.0)
    got = jax.grad(lj.loss_fn(loss), argnums=1)(z, y)
    expected = jax.grad(lambda y: jnp.mean(jnp.mean(optax.huber_loss(z / y, 1.0, delta=0.5), axis=-1)))(y)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
