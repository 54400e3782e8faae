"""losskit.torch: modules with the analytic backward, against torch autograd and torch.nn."""

from __future__ import annotations

import numpy as np
import pytest

from cases import all_cases, cases_for

torch = pytest.importorskip("torch")
lt = pytest.importorskip("losskit.torch")

import losskit as lk  # noqa: E402

CASES = all_cases()
IDS = [c[0] for c in CASES]


def _module(name, options, reduction):
    cls = {"binary_cross_entropy": lt.BinaryCrossEntropy,
           "binary_cross_entropy_with_logits": lt.BinaryCrossEntropyWithLogits,
           "categorical_cross_entropy": lt.CategoricalCrossEntropy,
           "softmax_cross_entropy": lt.SoftmaxCrossEntropy,
           "multilabel_cross_entropy": lt.MultilabelCrossEntropy,
           "mean_squared_error": lt.MeanSquaredError}[name]
    return cls(reduction=reduction, **options)


def _weight(case):
    return torch.from_numpy(np.random.default_rng(3).uniform(0.2, 2.0, size=case.batch_shape))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_module_value_and_gradient_equal_autograd_of_the_reference(cid, name, case_name, reduction):
    case = cases_for(name)[case_name]
    target = torch.from_numpy(np.array(case.target))
    weight = _weight(case)
    upstream = torch.from_numpy(np.random.default_rng(4).normal(size=case.batch_shape)) \
        if reduction == "none" else torch.tensor(1.7, dtype=torch.float64)
    # reference: torch autograd through the core's forward expression on tensors
    x_ref = torch.tensor(case.input, requires_grad=True)
    core = lk.REGISTRY[name][0](reduction=reduction, impl="xp", **case.options)
    ref = core(x_ref, target, weight=weight, normalizer=2.5)
    (ref * upstream).sum().backward()
    x = torch.tensor(case.input, requires_grad=True)
    value = _module(name, case.options, reduction)(x, target, weight, 2.5)
    (value * upstream).sum().backward()
    path = type(value.grad_fn).__name__
    torch_native = name == "softmax_cross_entropy" and case.input.ndim == 2 and case.target.ndim == 1
    assert path == ("SoftmaxCEFunctionBackward" if torch_native else "LossFunctionBackward")
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradcheck_float64(cid, name, case_name):
    case = cases_for(name)[case_name]
    target = torch.from_numpy(np.array(case.target))
    module = _module(name, case.options, "mean")
    x = torch.tensor(case.input, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: module(z, target, _weight(case)), (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_nn_losses_where_semantics_coincide(smoothing):
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(size=(16, 5)), requires_grad=True)
    y = torch.from_numpy(rng.integers(0, 5, size=16))
    y[3] = -100
    ours = lt.SoftmaxCrossEntropy(ignore_index=-100, label_smoothing=smoothing)(z, y)
    (g_ours,) = torch.autograd.grad(ours, z)
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(z, y)
    (g_theirs,) = torch.autograd.grad(theirs, z)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-14)
    t = (torch.rand(16, 5, dtype=torch.float64) > 0.5).double()
    pw = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    torch.testing.assert_close(lt.BinaryCrossEntropyWithLogits(pos_weight=pw)(z, t),
                               torch.nn.BCEWithLogitsLoss(pos_weight=pw)(z, t), rtol=1e-12, atol=0)
    torch.testing.assert_close(lt.MeanSquaredError()(z, t), torch.nn.MSELoss()(z, t), rtol=1e-12, atol=0)


def test_torch_compile_fullgraph_matches_eager():
    loss_fn = lt.SoftmaxCrossEntropy(label_smoothing=0.1, ignore_index=-100)
    linear = torch.nn.Linear(6, 4, dtype=torch.float64)

    def step(x, y):
        return loss_fn(linear(x), y)

    compiled = torch.compile(step, fullgraph=True, backend="inductor")
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, -100, 1, 2, 0])
    eager = step(x, y)
    eager.backward()
    eager_grad = linear.weight.grad.clone()
    linear.zero_grad()
    value = compiled(x, y)
    value.backward()
    torch.testing.assert_close(value, eager, rtol=1e-12, atol=0)
    torch.testing.assert_close(linear.weight.grad, eager_grad, rtol=1e-10, atol=1e-14)


def test_torch_compile_fullgraph_on_the_generic_path():
    loss_fn = lt.MultilabelCrossEntropy(pos_weight=[1.0, 2.0, 0.5], label_smoothing=0.1)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = (torch.rand(5, 3) > 0.5).double()
    compiled = torch.compile(lambda z: loss_fn(z * 2.0, t), fullgraph=True)
    value = compiled(x)
    value.backward()
    expected, grad = lk.MultilabelCrossEntropy(pos_weight=[1.0, 2.0, 0.5], label_smoothing=0.1).value_and_grad(
        x.detach() * 2.0, t)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad, 2.0 * grad, rtol=1e-10, atol=1e-14)


def test_double_backward_is_refused_with_a_clear_error():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    value = lt.SoftmaxCrossEntropy()(z, torch.tensor([0, 1, 2, 0]))
    (grad,) = torch.autograd.grad(value, z, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives.*hessian_diag"):
        grad.sum().backward()


def test_bad_options_and_inputs_raise_losskit_errors():
    with pytest.raises(lk.LossInputError, match="label_smoothing"):
        lt.SoftmaxCrossEntropy(label_smoothing=1.5)
    with pytest.raises(lk.LossInputError, match="target"):
        lt.SoftmaxCrossEntropy()(torch.randn(4, 3), torch.tensor([0, 1, 5, 0]))


def test_heads_as_modules():
    z = torch.randn(6, 1, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0, 1, 1, 0, 0], dtype=torch.float64)
    head = lt.BinaryHead()
    value = head(z, y)
    value.backward()
    core = lk.head("binary")
    ref_value, ref_grad = core.value_and_grad(z.detach(), y)
    torch.testing.assert_close(value.detach(), ref_value)
    torch.testing.assert_close(z.grad, ref_grad)
    assert head.units == 1
    torch.testing.assert_close(head.predict(z.detach()), core.predict(z.detach()))
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 2, 1, 0])
    multi = lt.MulticlassHead(4, label_smoothing=0.1)
    multi(logits, labels).backward()
    torch.testing.assert_close(logits.grad, lk.head("multiclass", n_classes=4, label_smoothing=0.1)
                               .grad(logits.detach(), labels))
    assert lt.MultilabelHead(4).units == 4 and lt.RegressionHead(2).units == 2


def test_training_loop_on_digits_falls_as_fast_as_nn_cross_entropy():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)

    def train(loss_fn):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(30):
            optimiser.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        return losses

    ours = train(lt.SoftmaxCrossEntropy())
    theirs = train(torch.nn.CrossEntropyLoss())
    assert ours[-1] < 0.3 * ours[0]
    # same math, same seed: the curves agree to float32 rounding
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_native_softmax_ce_matches_the_core_in_half_and_single_precision(dtype):
    z = (torch.randn(64, 50, dtype=torch.float32) * 4).to(dtype).requires_grad_(True)
    y = torch.randint(0, 50, (64,))
    y[::9] = -1
    module = lt.SoftmaxCrossEntropy(ignore_index=-1, label_smoothing=0.1, class_weight=torch.rand(50).tolist())
    value = module(z, y)
    value.backward()
    ref_value, ref_grad = module.core.value_and_grad(z.detach(), y)
    assert value.dtype == z.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(value.detach().float(), ref_value.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(z.grad.float(), ref_grad.float(), rtol=tol, atol=tol * 1e-2)


def test_torch_native_softmax_ce_falls_back_to_the_exact_limits_for_infinite_logits():
    z = torch.tensor([[float("inf"), 0.0, 1.0], [0.0, float("-inf"), 2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])
    value = lt.SoftmaxCrossEntropy()(z, y)
    value.backward()
    ref_value, ref_grad = lk.SoftmaxCrossEntropy().value_and_grad(z.detach(), y)
    torch.testing.assert_close(value.detach(), ref_value)
    torch.testing.assert_close(z.grad, ref_grad)
    assert torch.isfinite(z.grad).all()
