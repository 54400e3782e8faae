"""Every task head takes any loss of its task (issue 8): by short name, by function name or as a
Loss object, with the loss's own options; quantile and Gaussian heads know their units."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.heads import TASK_LOSSES

N = 6
RNG = np.random.default_rng(0)


def _data(kind, name, units):
    """(logits, target) a head of ``kind`` with loss ``name`` takes."""
    if kind == "binary":
        return RNG.normal(size=(N, 1)), (RNG.uniform(size=N) > 0.5).astype(float)
    if kind == "multiclass":
        z = RNG.normal(size=(N, units))
        if name in ("kl",):
            return z, RNG.dirichlet(np.ones(units), size=N)
        if getattr(TASK_LOSSES[kind][name], "target", None) == "logits":  # distillation, JSD: a teacher's logits
            return z, RNG.normal(size=(N, units))
        return z, RNG.integers(0, units, size=N)
    if kind == "multilabel":
        return RNG.normal(size=(N, units)), (RNG.uniform(size=(N, units)) > 0.5).astype(float)
    if name == "quantile":
        return RNG.normal(size=(N, 3)), RNG.normal(size=N)
    if name == "gaussian_nll":
        return RNG.normal(size=(N, 2)), RNG.normal(size=N)
    if name in ("poisson", "tweedie"):
        return RNG.normal(scale=0.5, size=(N, 1)), RNG.poisson(2.0, size=N).astype(float)
    if name == "gamma":
        return RNG.normal(scale=0.5, size=(N, 1)), RNG.gamma(2.0, size=N)
    return RNG.normal(size=(N, 1)), RNG.normal(size=N)


PAIRS = [(kind, name) for kind, table in TASK_LOSSES.items() for name in table]


def _head(kind, name, by_function=False):
    loss = TASK_LOSSES[kind][name].name if by_function else name
    units = {"multiclass": {"n_classes": 4}, "multilabel": {"n_labels": 3}}.get(kind, {})
    extra = {"quantiles": [0.1, 0.5, 0.9]} if name == "quantile" else {}
    return lk.head(kind, loss=loss, **units, **extra)


@pytest.mark.parametrize(("kind", "name"), PAIRS, ids=[f"{k}-{n}" for k, n in PAIRS])
def test_head_with_any_loss_of_its_task_equals_that_core_loss(kind, name):
    head = _head(kind, name)
    assert type(head.loss_object) is TASK_LOSSES[kind][name]
    assert type(_head(kind, name, by_function=True).loss_object) is TASK_LOSSES[kind][name]
    z, y = _data(kind, name, head.units)
    core = TASK_LOSSES[kind][name](**({"quantiles": [0.1, 0.5, 0.9]} if name == "quantile" else {}))
    # single-unit heads take [N, 1] logits and give the core [N]
    z_core = z[:, 0] if head.units == 1 and z.shape[-1] == 1 else z
    value, grad = head.value_and_grad(z, y)
    ref_value, ref_grad = core.value_and_grad(z_core, y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad.reshape(z_core.shape), ref_grad, rtol=1e-12)
    assert grad.shape == z.shape
    np.testing.assert_allclose(head.hessian_diag(z, y).reshape(z_core.shape), core.hessian_diag(z_core, y),
                               rtol=1e-12)
    assert np.asarray(head.predict(z)).shape[0] == N


def test_the_issue_examples():
    F = pytest.importorskip("torch").nn.functional
    import torch

    z, y = RNG.normal(scale=3.0, size=(N, 1)), RNG.normal(size=N)
    head = lk.head("regression", loss="huber", delta=2.0)
    np.testing.assert_allclose(head.loss(z, y), F.huber_loss(torch.from_numpy(z[:, 0]), torch.from_numpy(y),
                                                             delta=2.0).item(), rtol=1e-12)
    focal = lk.head("binary", loss=lk.SigmoidFocalLoss(gamma=2))
    labels = (RNG.uniform(size=N) > 0.5).astype(float)
    np.testing.assert_allclose(focal.loss(z, labels), lk.sigmoid_focal_loss(z[:, 0], labels, gamma=2.0), rtol=1e-12)
    assert focal.predict(np.array([[0.3], [-0.2]])).tolist() == [1, 0]


def test_quantile_head_knows_its_units_and_predicts_its_quantiles():
    head = lk.head("regression", loss="quantile", quantiles=[0.1, 0.5, 0.9])
    assert isinstance(head, lk.QuantileHead) and head.units == 3 and head.quantiles == (0.1, 0.5, 0.9)
    z = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(head.predict(z), z)
    with pytest.raises(lk.LossInputError, match=r"^predictions: expected 3 output unit\(s\)"):
        head.loss(np.zeros((2, 2)), np.zeros(2))
    one = lk.QuantileHead(0.3)  # a single quantile keeps its [N, 1] unit axis
    assert one.loss(np.zeros((2, 1)), np.ones(2)) == pytest.approx(0.3)


def test_gaussian_head_predicts_mean_and_standard_deviation():
    head = lk.head("regression", loss="gaussian_nll")
    assert isinstance(head, lk.GaussianHead) and head.units == 2
    z = np.array([[1.5, np.log(9.0)], [-2.0, 0.0]])
    np.testing.assert_allclose(head.predict(z), [[1.5, 3.0], [-2.0, 1.0]], rtol=1e-15)


def test_deviance_heads_predict_the_mean_through_the_log_link():
    head = lk.head("regression", loss="tweedie", power=1.5)
    assert head.activation_name == "exp (log link)"
    np.testing.assert_allclose(head.predict(np.array([[0.0], [np.log(5.0)]])), [[1.0], [5.0]], rtol=1e-15)


def test_head_for_takes_a_loss():
    y = RNG.normal(size=50)
    assert isinstance(lk.head_for(y, loss="quantile", quantiles=[0.2, 0.8]), lk.QuantileHead)
    assert isinstance(lk.head_for((y > 0).astype(int), loss="hinge").loss_object, lk.HingeLoss)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: lk.head("binary", loss="huber"), "^loss: expected one of 'bce', 'focal'"),
    (lambda: lk.head("binary", loss=lk.HuberLoss()),
     "^loss: expected a loss of the binary task .*got HuberLoss, a loss of the regression task$"),
    # a loss of the task whose class is not registered: it said "a loss of the regression task", which it is
    (lambda: lk.head("regression", loss=type("MyHuber", (lk.HuberLoss,), {})()),
     "^loss: expected a registered Loss: its class declares a name .*got MyHuber, which declares none of its own$"),
    (lambda: lk.head("binary", loss="hinge", label_smoothing=0.1), "^label_smoothing: expected an option of HingeLoss"),
    (lambda: lk.head("regression", loss="huber", beta=1.0), "^beta: expected an option of RegressionHead"),
    (lambda: lk.head("binary", loss=lk.HingeLoss(), reduction="sum"), "^reduction: expected no loss option"),
    (lambda: lk.RegressionHead(loss="quantile"), "^loss: expected a loss of one value per unit.*QuantileHead"),
    (lambda: lk.head("binary", loss="focal", gamma=-1.0), "^gamma: expected a finite number >= 0"),
])
def test_a_loss_or_option_of_another_task_is_refused_by_name(call, message):
    with pytest.raises(lk.LossInputError, match=message):
        call()


def test_torch_head_modules_take_any_loss():
    torch = pytest.importorskip("torch")
    lt = pytest.importorskip("losskit.torch")
    z = torch.tensor(RNG.normal(size=(N, 1)), requires_grad=True)
    y = torch.from_numpy(RNG.normal(size=N))
    module = lt.RegressionHead(loss="huber", delta=0.5)
    module(z, y).backward()
    expected = torch.nn.functional.huber_loss(z.detach()[:, 0].clone().requires_grad_(), y, delta=0.5)
    zz = z.detach().clone().requires_grad_()
    torch.nn.functional.huber_loss(zz[:, 0], y, delta=0.5).backward()
    np.testing.assert_allclose(module(z, y).item(), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), zz.grad.numpy(), rtol=1e-12)
    focal = lt.BinaryHead(loss="focal", gamma=2.0)
    value = focal(torch.zeros(3, 1, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    assert value.item() == pytest.approx(0.25 * np.log(2.0))


def test_jax_heads_take_any_loss():
    jax = pytest.importorskip("jax")
    lj = pytest.importorskip("losskit.jax")
    import jax.numpy as jnp

    z, y = jnp.asarray(RNG.normal(size=(N, 3))), jnp.asarray(RNG.integers(0, 3, size=N))
    head = lj.head("multiclass", n_classes=3, loss="poly", epsilon=2.0)
    grad = jax.jit(jax.grad(lambda z: head.loss(z, y)))(z)
    np.testing.assert_allclose(grad, lk.PolyCrossEntropy(epsilon=2.0).grad(np.asarray(z), np.asarray(y)), rtol=1e-10)


def test_the_docs_example_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "heads.md").read_text()
    (block,) = re.findall(r"```py\n(.*?)```", text, re.S)
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("lk.head")]
    heads = [eval(line, {"lk": lk}) for line in lines]  # noqa: S307 - our own docs
    assert [type(h.loss_object).__name__ for h in heads] == ["HuberLoss", "SigmoidFocalLoss", "SoftmaxFocalLoss"]
    assert heads[0].loss_object.delta == 2.0 and heads[2].loss_object.label_smoothing == 0.1


def test_point_is_one_value_per_example():
    z = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert lk.head("regression", loss="quantile", quantiles=[0.1, 0.6, 0.9]).point(z).tolist() == [2.0, 5.0]
    assert lk.head("regression", loss="quantile", quantiles=[0.4, 0.6]).point(z[:, :2]).tolist() == [1.0, 4.0]
    assert lk.head("regression", loss="gaussian_nll").point(z[:, :2]).tolist() == [1.0, 4.0]
    plain = lk.head("regression", n_outputs=3)
    np.testing.assert_array_equal(plain.point(z), plain.predict(z))


def test_units_per_value_is_declared_by_the_losses_of_several_units_and_read_by_heads_and_gbdt():
    """The quantiles' count and the Gaussian NLL's (mean, log-variance) are the losses' own declaration
    (``Loss.units_per_value``), which the heads' units and a GBDT's margins per row read; every other
    loss of the catalogue takes one unit per target value."""
    assert lk.QuantileLoss(quantiles=[0.1, 0.5, 0.9]).units_per_value == 3
    assert lk.QuantileLoss().units_per_value == 1
    assert lk.GaussianNLL().units_per_value == 2
    several = {name for name, (cls, _) in lk.REGISTRY.items() if cls().units_per_value is not None}
    assert several == {"quantile_loss", "gaussian_nll_loss"}
    assert lk.QuantileHead([0.2, 0.4, 0.6, 0.8]).units == 4 and lk.GaussianHead().units == 2
    lx = pytest.importorskip("losskit.xgboost")
    with pytest.raises(lk.LossInputError, match="^margins: .*label as 4 columns"):
        lx.objective(lk.QuantileLoss(quantiles=[0.2, 0.4, 0.6, 0.8]))(np.zeros(3), np.zeros(3))


def test_the_docs_table_of_loss_names_is_the_heads_own():
    """docs/heads.md's `loss=` table lists each task's names as the heads take them (it lacked `exponential`
    and `asl`), the default first."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "heads.md").read_text()
    for kind, table in TASK_LOSSES.items():
        row = re.search(rf"^\| {kind} \| (.*) \|$", text, re.M).group(1)
        names = re.findall(r"`([a-z_0-9]+)`", row.split(" each ")[0])
        own = [name for name, cls in table.items() if cls.__module__.startswith("losskit.")]  # (not a test's)
        assert names[0] == own[0] and sorted(names) == sorted(own), (kind, names)
