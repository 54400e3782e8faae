"""Issue 8's losses against their peers (torch, optax, Keras, scikit-learn), closed forms and mpmath,
and their bad options. Values are compared with ``reduction="none"`` unless a test says otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import losskit as lk

N, K = 40, 5
KERAS_TOL = 2e-6  # Keras computes in float32


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def F():
    torch = pytest.importorskip("torch")
    return torch.nn.functional


@pytest.fixture
def keras():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def _t(a):
    import torch

    return torch.from_numpy(np.asarray(a))


def _jnp(a):
    import jax.numpy as jnp

    return jnp.asarray(a)


# -- binary and multi-label -------------------------------------------------------------------------
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (2.0, 0.25), (0.5, 0.8), (0.0, None), (3.5, 0.5)])
def test_sigmoid_focal_matches_optax(gamma, alpha):
    optax = pytest.importorskip("optax")
    rng = _rng()
    z = rng.normal(scale=3.0, size=(N, K))
    for y in ((rng.uniform(size=(N, K)) > 0.5).astype(float), rng.uniform(size=(N, K))):
        theirs = np.asarray(optax.sigmoid_focal_loss(_jnp(z), _jnp(y), alpha=alpha, gamma=gamma))
        ours = lk.sigmoid_focal_loss(z, y, gamma=gamma, alpha=alpha, reduction="none")
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(lk.multilabel_sigmoid_focal_loss(z, y, gamma=gamma, alpha=alpha,
                                                                    reduction="none"),
                                   theirs.sum(-1), rtol=1e-10)


def test_sigmoid_focal_gradient_far_out_is_exact_where_autodiff_of_the_naive_form_is_not():
    """z = 40 with y = 1: the loss is (1-p)^2 BCE ~ e^-120; the naive (1-p) rounds to 0 there."""
    import mpmath

    mpmath.mp.dps = 50
    for z, y, gamma in ((40.0, 1.0, 2.0), (-30.0, 0.0, 0.5), (25.0, 0.0, 2.0), (1e-3, 1.0, 0.25)):
        loss, grad = lk.SigmoidFocalLoss(gamma=gamma, reduction="sum").value_and_grad(np.array([z]), np.array([y]))
        hess = lk.SigmoidFocalLoss(gamma=gamma, reduction="sum").hessian_diag(np.array([z]), np.array([y]))

        def f(x, y=y, gamma=gamma):
            p = 1 / (1 + mpmath.exp(-x))
            q = y * (1 - p) + (1 - y) * p
            return -(q ** gamma) * (y * mpmath.log(p) + (1 - y) * mpmath.log(1 - p))

        zz = mpmath.mpf(z)
        assert float(loss) == pytest.approx(float(f(zz)), rel=1e-13)
        assert float(grad[0]) == pytest.approx(float(mpmath.diff(f, zz)), rel=1e-12)
        assert float(hess[0]) == pytest.approx(float(mpmath.diff(f, zz, 2)), rel=1e-11)


def test_hinge_and_squared_hinge_match_keras(keras):
    rng = _rng(1)
    z = rng.normal(scale=2.0, size=(N, 1)).astype(np.float32)
    y01 = (rng.uniform(size=(N, 1)) > 0.5).astype(np.float32)
    for labels in (y01, 2 * y01 - 1):
        for ours, theirs in ((lk.hinge_loss, keras.losses.Hinge(reduction=None)),
                             (lk.squared_hinge_loss, keras.losses.SquaredHinge(reduction=None))):
            np.testing.assert_allclose(ours(z[:, 0].astype(float), labels[:, 0], reduction="none"),
                                       np.asarray(theirs(labels, z)), rtol=KERAS_TOL, atol=1e-6)
    # Keras averages over the last axis; the multi-label form sums over it
    zk = rng.normal(size=(N, K)).astype(np.float32)
    yk = (rng.uniform(size=(N, K)) > 0.5).astype(np.float32)
    np.testing.assert_allclose(lk.multilabel_hinge_loss(zk.astype(float), yk, reduction="none") / K,
                               np.asarray(keras.losses.Hinge(reduction=None)(yk, zk)), rtol=KERAS_TOL)


def test_hinge_refuses_other_labels():
    with pytest.raises(lk.LossInputError, match="target: expected labels 0/1 or -1/\\+1"):
        lk.hinge_loss(np.zeros(3), np.array([0.0, 0.5, 1.0]))


# -- multi-class ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.5, 1.0), (0.0, 0.25), (4.0, 0.6)])
def test_softmax_focal_matches_keras(keras, gamma, alpha):
    rng = _rng(2)
    z = rng.normal(scale=1.5, size=(N, K)).astype(np.float32)
    y = rng.integers(0, K, size=N)
    soft = rng.dirichlet(np.ones(K), size=N).astype(np.float32)
    loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=True, reduction=None)
    for target, keras_target in ((y, np.eye(K, dtype=np.float32)[y]), (soft, soft)):
        ours = lk.softmax_focal_loss(z.astype(float), target, gamma=gamma, alpha=alpha, reduction="none")
        np.testing.assert_allclose(ours, np.asarray(loss(keras_target, z)), rtol=1e-5, atol=1e-7)


def test_softmax_focal_per_class_alpha_and_gradient_against_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = _rng(3)
    z = rng.normal(scale=2.0, size=(N, K))
    y = rng.integers(0, K, size=N)
    alpha = [0.5, 1.0, 2.0, 0.25, 1.5]
    x = torch.tensor(z, requires_grad=True)
    p = torch.softmax(x, -1)
    chosen = p[torch.arange(N), torch.from_numpy(y)]
    expected = (-torch.tensor(alpha, dtype=torch.float64)[torch.from_numpy(y)] * (1 - chosen) ** 0.7
                * torch.log(chosen))
    expected.sum().backward()
    value, grad = lk.SoftmaxFocalLoss(gamma=0.7, alpha=alpha, reduction="sum").value_and_grad(z, y)
    np.testing.assert_allclose(value, expected.sum().item(), rtol=1e-12)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-9, atol=1e-14)


def test_softmax_focal_is_exact_for_a_confident_row():
    import mpmath

    mpmath.mp.dps = 50
    z = np.array([[30.0, 0.0, -5.0]])
    for gamma in (0.5, 2.0):
        value, grad = lk.SoftmaxFocalLoss(gamma=gamma, reduction="sum").value_and_grad(z, np.array([0]))
        zs = [mpmath.mpf(v) for v in z[0]]
        total = mpmath.fsum(mpmath.exp(v) for v in zs)
        p0 = mpmath.exp(zs[0]) / total
        expected = -((1 - p0) ** gamma) * mpmath.log(p0)
        assert float(value) == pytest.approx(float(expected), rel=1e-12)
        hess = lk.SoftmaxFocalLoss(gamma=gamma, reduction="sum").hessian_diag(z, np.array([0]))

        def loss_of(j, x, gamma=gamma, zs=zs):
            row = [x if k == j else zs[k] for k in range(3)]
            p0 = mpmath.exp(row[0]) / mpmath.fsum(mpmath.exp(v) for v in row)
            return -((1 - p0) ** gamma) * mpmath.log(p0)

        for j in range(3):
            exact_grad = mpmath.diff(lambda x, j=j: loss_of(j, x), zs[j])
            exact_hess = mpmath.diff(lambda x, j=j: loss_of(j, x), zs[j], 2)
            assert grad[0, j] == pytest.approx(float(exact_grad), rel=1e-11)
            assert hess[0, j] == pytest.approx(float(exact_hess), rel=1e-9)


@pytest.mark.parametrize("epsilon", [1.0, -0.5, 3.0])
def test_poly_cross_entropy_is_ce_plus_epsilon_one_minus_p(F, epsilon):
    rng = _rng(4)
    z = rng.normal(scale=2.0, size=(N, K))
    y = rng.integers(0, K, size=N)
    pt = F.softmax(_t(z), -1)[np.arange(N), y].numpy()
    expected = F.cross_entropy(_t(z), _t(y), reduction="none").numpy() + epsilon * (1 - pt)
    np.testing.assert_allclose(lk.poly_cross_entropy(z, y, epsilon=epsilon, reduction="none"), expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "kl_divergence", "distillation_loss", "poly_cross_entropy"])
def test_the_hessian_at_a_sure_rows_top_class_is_exact(name):
    """p (1 - p) rounded 1 - p to 0 at a sure row's top class (0 where mpmath gives 8.5e-18), and Poly-1 with
    epsilon = -1 gave -8.5e-18 where its Hessian is 2 p q^2 = +1.4e-34 (found in review). Against 50-digit
    mpmath of the closed forms: p_0 (1 - p_0); for Poly-1 at the label p q (p (1 + eps) + q (1 - eps))."""
    import mpmath

    mpmath.mp.dps = 50
    z = np.array([[25.0, 0.0, 1.0], [40.0, 0.0, 0.0]])
    options = {"epsilon": -1.0} if name == "poly_cross_entropy" else {}
    loss = lk.REGISTRY[name][0](reduction="none", **options)
    target = z * 0.0 if name == "distillation_loss" else (
        np.eye(3)[[0, 0]] if name == "kl_divergence" else np.array([0, 0]))
    hess = loss.hessian_diag(z, target)
    for row, got in zip(z, hess[:, 0], strict=True):
        e = [mpmath.exp(mpmath.mpf(v)) for v in row]
        p = e[0] / sum(e)
        q = (e[1] + e[2]) / sum(e)
        if name == "poly_cross_entropy":
            want = p * q * (p * 0 + 2 * q)  # eps = -1: p (1 + eps) = 0, q (1 - eps) = 2q
        elif name == "distillation_loss":
            want = p * q  # teacher of zeros: T = 1, the student's own p (1 - p)
        else:
            want = p * q
        assert abs(got - float(want)) <= 8 * np.finfo(float).eps * float(want), (got, float(want))


def test_multiclass_hinge_matches_optax():
    optax = pytest.importorskip("optax")
    rng = _rng(5)
    z = rng.normal(size=(N, K))
    y = rng.integers(0, K, size=N)
    theirs = np.asarray(optax.losses.multiclass_hinge_loss(_jnp(z), _jnp(y)))
    np.testing.assert_allclose(lk.multiclass_hinge_loss(z, y, reduction="none"), theirs, rtol=1e-12, atol=1e-15)
    import jax

    grad_theirs = jax.grad(lambda s: optax.losses.multiclass_hinge_loss(s, _jnp(y)).sum())(_jnp(z))
    np.testing.assert_allclose(lk.MulticlassHingeLoss(reduction="sum").grad(z, y), np.asarray(grad_theirs), atol=0)


@pytest.mark.parametrize("impl", ["auto", "xp"])
def test_multiclass_hinge_at_infinite_scores_is_its_limit(impl):
    """max(shifted) - z_y was inf - inf = NaN for a label score of +inf (found in review). By the
    definition max(0, max_k (z_k + 1 - z_y)): 0 where the label's score is +inf, +inf where it is -inf
    and the others finite; the gradient e_top - e_y (0 where the margin holds)."""
    loss = lk.MulticlassHingeLoss(reduction="none", impl=impl)
    z = np.array([[np.inf, 0.5, 0.0], [-np.inf, 0.5, 0.0], [2.0, 0.5, 0.0]])
    y = np.array([0, 0, 0])
    with np.errstate(invalid="ignore"):
        value, grad = loss.value_and_grad(z, y)
    np.testing.assert_array_equal(value, [0.0, np.inf, 0.0])
    np.testing.assert_array_equal(grad, [[0, 0, 0], [-1, 1, 0], [0, 0, 0]])
    jax = pytest.importorskip("jax")  # losskit.jax's row sweep (the diff review: it still gave NaN)
    import jax.numpy as jnp

    import losskit.jax as lj

    for fn in (lj.multiclass_hinge_loss, jax.jit(lj.multiclass_hinge_loss, static_argnames=("reduction",))):
        np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(z), jnp.asarray(y), reduction="none")), value)


def test_multiclass_hinge_refuses_probabilities():
    with pytest.raises(lk.LossInputError, match="target: expected integer class indices"):
        lk.multiclass_hinge_loss(np.zeros((2, 3)), np.full((2, 3), 1 / 3))


def test_kl_divergence_matches_torch_kl_div(F):
    rng = _rng(6)
    z = rng.normal(scale=2.0, size=(N, K))
    t = rng.dirichlet(np.ones(K), size=N)
    t[0] = [0.0, 0.0, 1.0, 0.0, 0.0]  # 0 log 0 = 0
    log_p = F.log_softmax(_t(z), -1)
    np.testing.assert_allclose(lk.kl_divergence(z, t), F.kl_div(log_p, _t(t), reduction="batchmean").item(),
                               rtol=1e-12)
    np.testing.assert_allclose(lk.kl_divergence(z, t, reduction="none"),
                               F.kl_div(log_p, _t(t), reduction="none").sum(-1).numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_distillation_is_t2_kl_of_tempered_softmaxes(F, temperature):
    import torch

    rng = _rng(7)
    z = rng.normal(scale=3.0, size=(N, K))
    teacher = rng.normal(scale=3.0, size=(N, K))
    x = torch.tensor(z, requires_grad=True)
    expected = temperature ** 2 * F.kl_div(F.log_softmax(x / temperature, -1),
                                           F.softmax(_t(teacher) / temperature, -1), reduction="batchmean")
    expected.backward()
    value, grad = lk.DistillationLoss(temperature=temperature).value_and_grad(z, teacher)
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_distillation_teacher_minus_inf_is_a_class_of_probability_zero():
    z = np.array([[0.3, -1.0, 2.0]])
    teacher = np.array([[1.0, -np.inf, 0.5]])
    value, grad = lk.DistillationLoss(temperature=2.0).value_and_grad(z, teacher)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    two = lk.distillation_loss(z[:, [0, 2]], teacher[:, [0, 2]], temperature=2.0)
    assert float(value) > float(two)  # the student still puts mass on the excluded class


# -- regression -------------------------------------------------------------------------------------
@pytest.mark.parametrize("param", [0.3, 1.0, 2.5])
def test_robust_losses_match_torch(F, param):
    rng = _rng(8)
    yhat, y = rng.normal(scale=2.0, size=(N, 3)), rng.normal(scale=2.0, size=(N, 3))
    pairs = [
        (lk.absolute_error(yhat, y), F.l1_loss(_t(yhat), _t(y))),
        (lk.huber_loss(yhat, y, delta=param), F.huber_loss(_t(yhat), _t(y), delta=param)),
        (lk.smooth_l1_loss(yhat, y, beta=param), F.smooth_l1_loss(_t(yhat), _t(y), beta=param)),
        (lk.smooth_l1_loss(yhat, y, beta=0.0), F.smooth_l1_loss(_t(yhat), _t(y), beta=0.0)),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.item(), rtol=1e-12)
    np.testing.assert_allclose(lk.huber_loss(yhat[:, 0], y[:, 0], delta=param, reduction="none"),
                               F.huber_loss(_t(yhat[:, 0]), _t(y[:, 0]), delta=param, reduction="none").numpy(),
                               rtol=1e-12)


def test_log_cosh_matches_keras(keras):
    rng = _rng(9)
    yhat, y = rng.normal(scale=3.0, size=(N, 3)).astype(np.float32), rng.normal(size=(N, 3)).astype(np.float32)
    theirs = np.asarray(keras.losses.LogCosh(reduction=None)(y, yhat))
    np.testing.assert_allclose(lk.log_cosh_loss(yhat.astype(float), y, reduction="none"), theirs, rtol=1e-5, atol=1e-7)


def test_log_cosh_and_pseudo_huber_are_exact_for_tiny_and_huge_errors():
    import mpmath

    mpmath.mp.dps = 50
    e = np.array([1e-9, 1e-4, 0.3, 0.99, 1.01, 7.0, 40.0, 1e10])
    ours = lk.log_cosh_loss(e, np.zeros_like(e), reduction="none")
    expected = [float(mpmath.log(mpmath.cosh(mpmath.mpf(v)))) for v in e]
    np.testing.assert_allclose(ours, expected, rtol=4e-16)
    delta = 1.7
    ours = lk.pseudo_huber_loss(e, np.zeros_like(e), delta=delta, reduction="none")
    d = mpmath.mpf(delta)
    expected = [float(d ** 2 * (mpmath.sqrt(1 + (mpmath.mpf(v) / d) ** 2) - 1)) for v in e]
    np.testing.assert_allclose(ours, expected, rtol=4e-16)
    assert np.isfinite(lk.pseudo_huber_loss(np.array([1e300]), np.array([0.0])))


def test_pseudo_huber_matches_xgboost_metric():
    xgb = pytest.importorskip("xgboost")
    rng = _rng(10)
    yhat, y = rng.normal(scale=2.0, size=200), rng.normal(scale=2.0, size=200)
    data = xgb.DMatrix(np.zeros((200, 1)), label=y, base_margin=yhat)
    booster = xgb.train({"objective": "reg:pseudohubererror", "huber_slope": 1.5, "eval_metric": "mphe",
                         "nthread": 1}, data, num_boost_round=0)
    metric = float(booster.eval(data).split(":")[1])
    np.testing.assert_allclose(lk.pseudo_huber_loss(yhat, y, delta=1.5), metric, rtol=1e-5)


def test_quantile_matches_sklearn_mean_pinball_loss_per_quantile():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = _rng(11)
    quantiles = [0.05, 0.5, 0.8]
    yhat, y, w = rng.normal(size=(N, 3)), rng.normal(size=N), rng.uniform(0.2, 2.0, size=N)
    expected = sum(metrics.mean_pinball_loss(y, yhat[:, j], alpha=q, sample_weight=w) for j, q in enumerate(quantiles))
    np.testing.assert_allclose(lk.quantile_loss(yhat, y, quantiles=quantiles, weight=w), expected, rtol=1e-12)
    for j, q in enumerate(quantiles):
        np.testing.assert_allclose(lk.quantile_loss(yhat[:, j:j + 1], y, quantiles=q),
                                   metrics.mean_pinball_loss(y, yhat[:, j], alpha=q), rtol=1e-12)


@pytest.mark.parametrize("power", [-1.0, 0.0, 1.0, 1.2, 1.5, 2.0, 3.0])
def test_deviances_match_sklearn(power):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = _rng(12)
    eta = rng.normal(scale=0.7, size=200)
    if power >= 2:
        y = rng.gamma(2.0, 1.5, size=200)
    elif power >= 1:
        y = np.where(rng.uniform(size=200) < 0.3, 0.0, rng.poisson(2.0, size=200).astype(float))
    else:
        y = rng.normal(size=200)
    w = rng.uniform(0.2, 2.0, size=200)
    expected = metrics.mean_tweedie_deviance(y, np.exp(eta), power=power, sample_weight=w)
    np.testing.assert_allclose(lk.tweedie_deviance(eta, y, power=power, weight=w), expected, rtol=1e-11)
    if power == 1.0:
        np.testing.assert_allclose(lk.poisson_deviance(eta, y), metrics.mean_poisson_deviance(y, np.exp(eta)),
                                   rtol=1e-11)
    if power == 2.0:
        np.testing.assert_allclose(lk.gamma_deviance(eta, y), metrics.mean_gamma_deviance(y, np.exp(eta)),
                                   rtol=1e-11)


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0, 3.0, -1.0])
def test_deviance_is_exact_near_the_optimum(power):
    """At mu = y (1 + 1e-7) the deviance is ~1e-14 y^(2-p): the direct formula has no digit left."""
    import mpmath

    mpmath.mp.dps = 50
    y = np.array([0.7, 3.0, 250.0])
    eta = np.log(y) + np.array([1e-7, -3e-5, 0.02])
    ours = lk.tweedie_deviance(eta, y, power=power, reduction="none")
    p = mpmath.mpf(power)
    for o, yi, ei in zip(ours, y, eta, strict=True):
        mu, yy = mpmath.exp(mpmath.mpf(ei)), mpmath.mpf(yi)
        if power == 1:
            exact = 2 * (yy * mpmath.log(yy / mu) - yy + mu)
        elif power == 2:
            exact = 2 * (mpmath.log(mu / yy) + yy / mu - 1)
        else:
            exact = 2 * (yy ** (2 - p) / ((1 - p) * (2 - p)) - yy * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))
        assert o == pytest.approx(float(exact), rel=1e-12)


def test_gaussian_nll_matches_torch(F):
    rng = _rng(13)
    mean, log_var, y = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    predictions = np.stack([mean, log_var], axis=-1)
    theirs = F.gaussian_nll_loss(_t(mean), _t(y), _t(np.exp(log_var)), full=True, reduction="none")
    np.testing.assert_allclose(lk.gaussian_nll_loss(predictions, y, reduction="none"), theirs.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lk.gaussian_nll_loss(predictions, y),
                               F.gaussian_nll_loss(_t(mean), _t(y), _t(np.exp(log_var)), full=True).item(),
                               rtol=1e-12)



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gaussian_nll_kernel_matches_torch_autograd(F, dtype):
    """The compiled kernel (``impl="fused"``) against ``F.gaussian_nll_loss(m, y, exp(s), full=True)``
    differentiated by autograd through m and s: weighted mean and per example, torch in the same dtype."""
    import torch

    rng = _rng(14)
    n = 1001
    z = np.stack([rng.normal(size=n) * 3, rng.uniform(-5, 5, size=n)], axis=-1).astype(dtype)
    y, w = (rng.normal(size=n) * 3).astype(dtype), rng.uniform(0.2, 2.0, size=n).astype(dtype)
    tz = torch.tensor(z, requires_grad=True)
    per_example = F.gaussian_nll_loss(tz[:, 0], _t(y), tz[:, 1].exp(), full=True, reduction="none")
    theirs = (_t(w) * per_example).sum() / _t(w).sum()
    theirs.backward()
    rtol = {np.float64: 1e-12, np.float32: 2e-5}[dtype]
    value, grad = lk.GaussianNLL(impl="fused").value_and_grad(z, y, weight=w)
    np.testing.assert_allclose(value, theirs.item(), rtol=rtol)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=rtol, atol=rtol * float(np.abs(tz.grad).max()))
    none = lk.GaussianNLL(impl="fused", reduction="none")(z, y)
    np.testing.assert_allclose(none, per_example.detach().numpy(), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("impl", ["auto", "xp"])
@pytest.mark.parametrize(("dtype", "log_var"), [(np.float32, -200.0), (np.float64, -1500.0)])
def test_gaussian_nll_of_an_exact_mean_where_the_variance_root_overflows_is_its_exact_value(impl, dtype, log_var):
    """r = (y - m) e^(-s/2) was 0 * inf = NaN for an exact mean where e^(-s/2) overflows (found in review).
    Worked by hand: an exact mean costs (s + log 2 pi) / 2, gradient (0, 1/2); and d/dy = (y - m) e^(-s) = 0
    (under JAX's autodiff of the target, which a where after the product left NaN: the diff review)."""
    loss = lk.GaussianNLL(reduction="none", impl=impl)
    value, grad = loss.value_and_grad(np.array([[1.0, log_var]], dtype), np.array([1.0], dtype))
    np.testing.assert_allclose(value, [(log_var + np.log(2 * np.pi)) / 2], rtol=1e-6)
    np.testing.assert_array_equal(grad, [[0.0, 0.5]])
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import losskit.jax as lj

    d_target = jax.grad(lambda y: lj.gaussian_nll_loss(jnp.asarray([[1.0, log_var]], dtype), y), )(
        jnp.asarray([1.0], dtype))
    np.testing.assert_array_equal(np.asarray(d_target), [0.0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_quantile_kernel_matches_sklearn_mean_pinball_loss(dtype):
    """The compiled kernel's weighted mean is the sum over the quantiles of scikit-learn's
    ``mean_pinball_loss`` (float64, on the same rounded inputs); its gradient the closed form
    ``w_i / sum(w) * (-q_j if yhat < y else 1 - q_j)``."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = _rng(15)
    quantiles, n = [0.1, 0.5, 0.9], 1001
    yhat, y = rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=n).astype(dtype)
    yhat[::50, 1] = y[::50]  # ties: the gradient 1 - q there
    w = rng.uniform(0.2, 2.0, size=n).astype(dtype)
    value, grad = lk.QuantileLoss(impl="fused", quantiles=quantiles).value_and_grad(yhat, y, weight=w)
    y64, yhat64, w64 = y.astype(np.float64), yhat.astype(np.float64), w.astype(np.float64)
    expected = sum(metrics.mean_pinball_loss(y64, yhat64[:, j], alpha=q, sample_weight=w64)
                   for j, q in enumerate(quantiles))
    rtol = {np.float64: 1e-12, np.float32: 2e-6}[dtype]
    np.testing.assert_allclose(value, expected, rtol=rtol)
    q = np.asarray(quantiles, dtype=dtype)
    by_hand = np.where(yhat < y[:, None], -q, 1 - q) * (w64 / w64.sum())[:, None]
    np.testing.assert_allclose(grad, by_hand, rtol=rtol, atol=0)


# -- options and targets that are refused ----------------------------------------------------------
@pytest.mark.parametrize(("build", "option"), [
    (lambda: lk.SigmoidFocalLoss(gamma=-0.5), "gamma"),
    (lambda: lk.SoftmaxFocalLoss(gamma=-1), "gamma"),
    (lambda: lk.SigmoidFocalLoss(alpha=1.5), "alpha"),
    (lambda: lk.SoftmaxFocalLoss(alpha=[1.0, -1.0]), "alpha"),
    (lambda: lk.QuantileLoss(quantiles=[0.5, 1.0]), "quantiles"),
    (lambda: lk.QuantileLoss(quantiles=0.0), "quantiles"),
    (lambda: lk.QuantileLoss(quantiles=[]), "quantiles"),
    (lambda: lk.TweedieDeviance(power=0.5), "power"),
    (lambda: lk.HuberLoss(delta=0.0), "delta"),
    (lambda: lk.PseudoHuberLoss(delta=-1.0), "delta"),
    (lambda: lk.SmoothL1Loss(beta=-0.1), "beta"),
    (lambda: lk.DistillationLoss(temperature=0.0), "temperature"),
    (lambda: lk.PolyCrossEntropy(epsilon=float("nan")), "epsilon"),
    (lambda: lk.PolyCrossEntropy(epsilon="1"), "epsilon"),
])
def test_bad_options_raise_naming_the_option(build, option):
    with pytest.raises(lk.LossInputError, match=f"^{option}: expected"):
        build()


def test_targets_outside_a_deviance_domain_raise():
    with pytest.raises(lk.LossInputError, match=r"^target: expected positive values \(y > 0\) for GammaDeviance"):
        lk.gamma_deviance(np.zeros(3), np.array([1.0, 0.0, 2.0]))
    with pytest.raises(lk.LossInputError, match=r"^target: expected non-negative values"):
        lk.poisson_deviance(np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(lk.LossInputError, match=r"^target: expected positive values"):
        lk.tweedie_deviance(np.zeros(2), np.array([1.0, 0.0]), power=3.0)
    assert np.isfinite(lk.tweedie_deviance(np.zeros(2), np.array([-1.0, 2.0]), power=0.0))


def test_unit_shapes_are_checked():
    with pytest.raises(lk.LossInputError, match=r"^predictions: expected shape \[\.\.\., 3\]"):
        lk.quantile_loss(np.zeros((4, 2)), np.zeros(4), quantiles=[0.1, 0.5, 0.9])
    with pytest.raises(lk.LossInputError, match=r"^predictions: expected shape \[\.\.\., 2\]"):
        lk.gaussian_nll_loss(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(lk.LossInputError, match="^target: expected the teacher's logits"):
        lk.distillation_loss(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
