"""losskit.torch: modules with the analytic backward, against torch autograd and torch.nn."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cases import all_cases, cases_for

torch = pytest.importorskip("torch")
lt = pytest.importorskip("losskit.torch")

import losskit as lk  # noqa: E402

CASES = all_cases()
IDS = [c[0] for c in CASES]


def _module(name, options, reduction):
    # every registered loss has its module (a user's own included), with the loss's options
    return lt.module(lk.REGISTRY[name][0](reduction=reduction, **options))


#: piecewise-linear losses: their Hessian is 0 where defined (torch's double backward through the
#: reference finds no second-order graph, read as 0); also checked apart below
_PIECEWISE_LINEAR = {name for name, (cls, _) in lk.losses.catalogue().items() if cls.hessian is lk.Hessian.ZERO}


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
    # one op for every loss: an eager call on CPU tensors takes the op's eager form (see _EagerValueAndGrad)
    assert type(value.grad_fn).__name__ == "_EagerValueAndGradBackward"
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradcheck_float64(cid, name, case_name):
    case = cases_for(name)[case_name]
    target = torch.from_numpy(np.array(case.target))
    module = _module(name, case.options, "mean")
    x = torch.tensor(case.input, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: module(z, target, _weight(case)), (x,), eps=1e-6, atol=1e-7)


def test_third_derivative_of_a_catalogue_loss_is_refused():
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(lt.DistillationLoss(temperature=2.0)(z, teacher), z, create_graph=True)
    (hvp,) = torch.autograd.grad(grad.sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="third and higher derivatives"):
        torch.autograd.grad(hvp.sum(), z)


@pytest.mark.parametrize("name", sorted(_PIECEWISE_LINEAR))
def test_piecewise_linear_losses_have_a_zero_hvp(name):
    case = next(iter(cases_for(name).values()))
    module = _module(name, case.options, "mean")
    x = torch.tensor(case.input, requires_grad=True)
    (grad,) = torch.autograd.grad(module(x, torch.from_numpy(np.array(case.target))), x, create_graph=True)
    (hvp,) = torch.autograd.grad((grad * torch.ones_like(grad)).sum(), x)
    assert torch.count_nonzero(hvp) == 0


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


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_drop_in_for_nn_losses_with_their_options(reduction):
    """Where PyTorch's and losskit's semantics coincide, the numbers and gradients are PyTorch's."""
    rng = np.random.default_rng(1)
    cw = torch.tensor([0.5, 1.0, 2.0, 3.0, 1.5], dtype=torch.float64)
    z = torch.tensor(rng.normal(size=(12, 5)), requires_grad=True)
    y = torch.from_numpy(rng.integers(0, 5, size=12))
    y[[2, 7]] = -100
    pairs = [
        # class weights without smoothing: PyTorch's weighted mean is sum w_y l / sum w_y, as ours
        (lt.SoftmaxCrossEntropy(class_weight=cw, ignore_index=-100, reduction=reduction),
         torch.nn.CrossEntropyLoss(weight=cw, ignore_index=-100, reduction=reduction), z, y),
    ]
    z4 = torch.tensor(rng.normal(size=(3, 5, 2, 4)), requires_grad=True)
    y4 = torch.from_numpy(rng.integers(0, 5, size=(3, 2, 4)))
    pairs.append((lt.SoftmaxCrossEntropy(axis=1, label_smoothing=0.2, reduction=reduction),  # (N, C, d1, d2)
                  torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction=reduction), z4, y4))
    probs = torch.tensor(rng.normal(size=(12, 5))).softmax(-1)
    pairs.append((lt.SoftmaxCrossEntropy(reduction=reduction), torch.nn.CrossEntropyLoss(reduction=reduction),
                  z, probs))  # probability targets
    p = torch.tensor(rng.uniform(0.05, 0.95, size=(12, 5)), requires_grad=True)
    t = torch.from_numpy((rng.uniform(size=(12, 5)) > 0.5).astype(np.float64))
    pairs.append((lt.BinaryCrossEntropy(reduction=reduction), torch.nn.BCELoss(reduction=reduction), p, t))
    pairs.append((lt.BinaryCrossEntropyWithLogits(pos_weight=torch.linspace(0.5, 2.0, 5, dtype=torch.float64),
                                                  reduction=reduction),
                  torch.nn.BCEWithLogitsLoss(pos_weight=torch.linspace(0.5, 2.0, 5, dtype=torch.float64),
                                             reduction=reduction), z, t))
    # MSE over a 1-D input: each element an example, as nn.MSELoss
    pairs.append((lt.MeanSquaredError(reduction=reduction), torch.nn.MSELoss(reduction=reduction), z[:, 0], t[:, 0]))
    for ours_fn, theirs_fn, inputs, target in pairs:
        ours, theirs = ours_fn(inputs, target), theirs_fn(inputs, target)
        upstream = torch.linspace(0.5, 1.5, ours.numel(), dtype=torch.float64).reshape(ours.shape)
        (g_ours,) = torch.autograd.grad((ours * upstream).sum(), inputs)
        (g_theirs,) = torch.autograd.grad((theirs * upstream).sum(), inputs)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14, msg=f"{ours_fn!r}: value")
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-14, msg=f"{ours_fn!r}: grad")


def test_the_saved_logits_serve_a_double_backward_and_are_guarded_against_in_place_changes():
    """The op keeps its input (docs/frameworks.md): logits made by a layer and held by nothing but the graph still
    give the exact Hessian-vector product of a double backward, a second backward over a retained graph the same
    gradient, and changing them in place before backward is refused by torch's saved-tensor check (where
    F.cross_entropy, which keeps its log-softmax, goes on)."""
    import torch.nn.functional as F

    torch.manual_seed(3)
    hidden = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    classifier = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 1, 3, 0])
    criterion = lt.SoftmaxCrossEntropy()
    (g,) = torch.autograd.grad(criterion(hidden @ classifier.T, y), hidden, create_graph=True)
    (hv,) = torch.autograd.grad(g.sum(), hidden)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(hidden @ classifier.T, y), hidden, create_graph=True)
    (hv_ref,) = torch.autograd.grad(g_ref.sum(), hidden)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-14)
    loss = criterion(hidden @ classifier.T, y)
    first = torch.autograd.grad(loss, hidden, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(loss, hidden)[0], first, rtol=0, atol=0)
    logits = hidden.detach() @ classifier.T
    logits.requires_grad_(True)
    for fn, refused in ((criterion, True), (lambda z, y: F.cross_entropy(z, y), False)):
        z = logits * 1.0
        loss = fn(z, y)
        z.mul_(0)
        if refused:
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward()
        else:
            loss.backward()


def test_an_option_tensor_on_the_meta_device_is_refused_by_name():
    """A class or positive weight on ``meta`` holds no numbers to read: torch's "Cannot copy out of meta tensor"
    named no option (found in review)."""
    with pytest.raises(lk.LossInputError, match="^class_weight: expected a tensor holding its values.*meta device"):
        lt.SoftmaxCrossEntropy(class_weight=torch.ones(5, device="meta"))
    with pytest.raises(lk.LossInputError, match="^pos_weight: expected a tensor holding its values.*meta device"):
        lt.BinaryCrossEntropyWithLogits(pos_weight=torch.ones(3, device="meta"))


def test_all_ignored_batch_has_mean_zero_where_pytorch_gives_nan():
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.full((3,), -100)
    ours = lt.SoftmaxCrossEntropy(ignore_index=-100)(z, y)
    ours.backward()
    assert float(ours.detach()) == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    assert torch.isnan(torch.nn.functional.cross_entropy(z.detach(), y))


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


def test_a_parameter_input_gives_the_plain_tensors_bits_with_a_weighted_mean():
    """A Parameter took the op's path on the tensors, where the weighted mean's denominator is torch's sum
    of the weights, not NumPy's: 36 of 100 seeds differed in the last bit. A Parameter's memory is viewed
    as a plain tensor's is now, so both run the same NumPy arithmetic (value and gradient)."""
    crit = lt.SoftmaxCrossEntropy()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=(6, 3))
        y, w = torch.from_numpy(rng.integers(0, 3, 6)), torch.from_numpy(rng.uniform(0.2, 2.0, 6))
        plain, param = torch.tensor(z, requires_grad=True), torch.nn.Parameter(torch.tensor(z))
        values = [crit(x, y, w) for x in (plain, param)]
        for value in values:
            value.backward()
        assert torch.equal(values[0].detach(), values[1].detach()), seed
        assert torch.equal(plain.grad, param.grad), seed
        expected = lk.softmax_cross_entropy(z, y.numpy(), weight=w.numpy())  # the core on NumPy
        assert float(values[1]) == float(expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("name", ["softmax_cross_entropy", "binary_cross_entropy_with_logits", "huber_loss",
                                  "kl_divergence"])
def test_an_eager_cpu_call_equals_the_custom_op_and_the_core_on_tensors_to_the_bit(name, reduction, dtype):
    """An eager call on CPU tensors runs the op's eager form on NumPy views (no dispatcher, no torch op per
    check); the custom op (what torch.compile's graph calls) and the core on the tensors themselves
    must give the same bits, value and gradient, with a weight and a normalizer."""
    rng = np.random.default_rng(11)
    z = rng.normal(size=(6, 5)) * 3
    target = {"softmax_cross_entropy": rng.integers(0, 5, size=6),
              "binary_cross_entropy_with_logits": (rng.uniform(size=(6, 5)) > 0.5) * 1.0,
              "huber_loss": rng.normal(size=(6, 5)),
              "kl_divergence": rng.dirichlet(np.ones(5), size=6)}[name]
    module = lt.module(lk.REGISTRY[name][0](reduction=reduction, label_smoothing=0.1) if name in (
        "softmax_cross_entropy", "binary_cross_entropy_with_logits") else lk.REGISTRY[name][0](reduction=reduction))
    batch_shape = (6, 5) if module.core.example_axis(2) is None else (6,)
    weight = torch.from_numpy(rng.uniform(0.5, 2.0, size=batch_shape)).to(dtype)
    target = torch.from_numpy(target)
    if target.is_floating_point():
        target = target.to(dtype)
    upstream = torch.from_numpy(rng.normal(size=batch_shape if reduction == "none" else ())).to(dtype)
    x = torch.tensor(z, dtype=dtype, requires_grad=True)
    value = module(x, target, weight, 2.5)
    assert type(value.grad_fn).__name__ == "_EagerValueAndGradBackward"
    (value * upstream).sum().backward()
    # the custom op, called as torch.compile's graph calls it
    op_value, op_grad = torch.ops.losskit.value_and_grad(module._name, module._options, x.detach(), target, weight,
                                                         2.5)
    # the core on the tensors themselves: its plan and checks in torch ops, the kernels through DLPack
    core = module.core
    core_value, core_grad = core.compute(core.plan(x.detach(), target, weight=weight, normalizer=2.5), 1)
    axis = core.example_axis(x.ndim)
    scaled = core_grad * (upstream.unsqueeze(axis) if upstream.ndim and axis is not None else upstream)
    for expected_value in (op_value, core_value):
        assert value.dtype == expected_value.dtype == dtype and value.shape == expected_value.shape
        assert torch.equal(value.detach(), expected_value)
    assert torch.equal(op_grad, core_grad) and torch.equal(x.grad, scaled)


def test_half_precision_runs_the_core_on_the_tensors():
    """float16/bfloat16 (NumPy has no bfloat16) are not viewed as NumPy: the core runs on the tensors (in
    float32) and gives softmax CE's closed-form gradient at zero logits, (1/K - onehot) / N."""
    y = torch.tensor([0, 2])
    for dtype in (torch.float16, torch.bfloat16):
        x = torch.zeros(2, 3, dtype=dtype, requires_grad=True)
        assert lt._numpy_views(x, y, None) is None
        value = lt.SoftmaxCrossEntropy()(x, y)
        assert value.dtype == dtype
        value.backward()
        torch.testing.assert_close(x.grad.float(), (torch.full((2, 3), 1 / 3) - torch.eye(3)[[0, 2]]) / 2,
                                   rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("make", [lambda: lt.SoftmaxCrossEntropy(), lambda: lt.MulticlassHead(10)])
def test_a_float16_gradient_is_rounded_once_after_the_loss_scale(make):
    """Outside autocast a float16 loss saved its gradient in float16 and backward scaled it: a mean over 16,384
    examples puts each gradient near 1/N, among float16's subnormals, so a GradScaler's scale (here 1024) came
    too late (found in review). The gradient is kept in float32 until scaled, and rounded once, as torch's own
    float16 cross-entropy rounds it: within float16's rounding of the float64 gradient times the scale."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(16_384, 10))
    y = torch.from_numpy(rng.integers(0, 10, 16_384))
    x = torch.tensor(z, dtype=torch.float16, requires_grad=True)
    value = make()(x, y)
    assert value.dtype == torch.float16
    (value * 1024).backward()
    z16 = torch.tensor(z, dtype=torch.float16).double()  # the float16 logits the loss saw
    expected = (torch.softmax(z16, 1) - torch.nn.functional.one_hot(y, 10).double()) / 16_384 * 1024
    torch.testing.assert_close(x.grad.double(), expected, rtol=2 ** -10, atol=2 ** -24 * 2)


def test_torch_func_transforms_are_not_supported_yet_and_say_so():
    """docs/frameworks.md says torch.func over a loss module raises torch's own error (the custom op has
    no functorch rule); when torch or losskit adds one, this fails and the docs change."""
    y = torch.tensor([0, 2])
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.grad(lambda z: lt.SoftmaxCrossEntropy()(z, y))(torch.zeros(2, 3, dtype=torch.float64))
    # vmap of the value alone (no gradient transform) works: per example, torch's reduction="none"
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    labels = torch.randint(0, 3, (5, 2))
    batched = torch.func.vmap(lambda a, b: lt.SoftmaxCrossEntropy()(a, b))(z, labels)
    expected = torch.nn.functional.cross_entropy(z.reshape(10, 3), labels.reshape(10), reduction="none")
    torch.testing.assert_close(batched, expected.reshape(5, 2).mean(1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("size", [4, 9])  # 16 positions after the class axis (its rows copied), 81 (columns)
def test_torch_compile_fullgraph_with_the_class_axis_1(size):
    """``axis=1`` of ``(N, C, H, W)`` under ``torch.compile(fullgraph=True)``: the op's gradient has the
    strides its fake gives (``empty_like(input)``), which the compiled graph checks (found in review: a
    row kernel's gradient restored to the caller's layout is a channels-last view, and the graph refused
    it, before and after the columns kernel)."""
    loss_fn = lt.SoftmaxCrossEntropy(axis=1, label_smoothing=0.1)
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, size, size))
    value = torch.compile(lambda z: loss_fn(z * 2.0, y), fullgraph=True)(x)
    value.backward()
    expected, grad = lk.SoftmaxCrossEntropy(axis=1, label_smoothing=0.1, impl="xp").value_and_grad(
        x.detach() * 2.0, y)
    torch.testing.assert_close(value.detach(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad, 2.0 * grad, rtol=1e-10, atol=1e-14)


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


def _second_order(fn, case, reduction):
    """``(d <grad, v> / d input, d <grad, v> / d upstream)`` of ``sum(fn(input) * upstream)``."""
    rng = np.random.default_rng(6)
    vector = torch.from_numpy(rng.normal(size=case.input.shape))
    upstream = torch.tensor(rng.normal(size=case.batch_shape) if reduction == "none" else 1.7, requires_grad=True)
    x = torch.tensor(case.input, requires_grad=True)
    (grad,) = torch.autograd.grad((fn(x) * upstream).sum(), x, create_graph=True)
    # a piecewise-linear loss's gradient does not depend on the input: that derivative is 0, not an error
    return torch.autograd.grad((grad * vector).sum(), (x, upstream), allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_double_backward_equals_autograd_of_the_reference(cid, name, case_name, reduction):
    case = cases_for(name)[case_name]
    target, weight = torch.from_numpy(np.array(case.target)), _weight(case)
    core = lk.REGISTRY[name][0](reduction=reduction, impl="xp", **case.options)
    module = _module(name, case.options, reduction)
    # reference: torch autograd twice through the core's forward expression on tensors
    hvp_ref, upstream_ref = _second_order(lambda x: core(x, target, weight=weight, normalizer=2.5), case, reduction)
    hvp, upstream = _second_order(lambda x: module(x, target, weight, 2.5), case, reduction)
    torch.testing.assert_close(hvp, hvp_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(upstream, upstream_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("cid", "name", "case_name"), CASES, ids=IDS)
def test_gradgradcheck_float64(cid, name, case_name):
    case = cases_for(name)[case_name]
    target = torch.from_numpy(np.array(case.target))
    module = _module(name, case.options, "mean")
    x = torch.tensor(case.input, requires_grad=True)
    # fast mode (PyTorch's own CI's): finite differences of v^T J u for random u, v rather than of every
    # entry, 7x faster here. Its relative tolerance is tighter than the entrywise default (1e-3), so
    # that a relative error in one entry still shows in the sum: a Huber second derivative made 1% wrong
    # failed all 5 cases (so did entrywise), 0.01% wrong 4 of 5 (entrywise: none). Its atol applies to
    # the sum, scaled by sum(u) sum(v): an absolute error below about 1e-5 in a tiny entry can pass
    # (test_double_backward_equals_autograd_of_the_reference holds every entry to 1e-10). eps 1e-7: u
    # perturbs all the inputs at once, and a probability row must still sum to 1 within 1e-6. The upstream
    # gradient is given, seeded: gradgradcheck draws it from torch's global generator otherwise
    upstream = torch.tensor(1.7, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(lambda z: module(z, target, _weight(case)), (x,), (upstream,), eps=1e-7,
                                        atol=1e-8, rtol=1e-6, fast_mode=True)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "ignore_index": -100},
                                     {"weight": [0.5, 1.0, 2.0, 3.0, 1.5], "reduction": "sum"}])
def test_double_backward_matches_f_cross_entropy(options):
    """A gradient penalty (double backprop) through the torch-native path, against PyTorch's own."""
    options = dict(options)
    class_weight = options.pop("weight", None)
    z = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.tensor([0, 1, 4, 2, -100, 3, 1])
    y = y if "ignore_index" in options else y.clamp(min=0)
    fn_ours = lt.SoftmaxCrossEntropy(class_weight=class_weight, **options)
    fn_theirs = functools.partial(torch.nn.functional.cross_entropy, **options,
                                  weight=None if class_weight is None else torch.tensor(class_weight,
                                                                                       dtype=torch.float64))

    def penalised_gradient(fn):
        x = z.clone().requires_grad_(True)
        value = fn(x, y)
        (grad,) = torch.autograd.grad(value, x, create_graph=True)
        (value + grad.pow(2).sum()).backward()
        return x.grad

    torch.testing.assert_close(penalised_gradient(fn_ours), penalised_gradient(fn_theirs), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("module", [lt.SoftmaxCrossEntropy(), lt.SoftmaxCrossEntropy(axis=0),
                                    lt.MeanSquaredError()], ids=["torch-native", "generic-softmax", "generic-mse"])
def test_third_derivative_is_refused_with_a_clear_error(module):
    z = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    value = module(z, torch.tensor([0, 1, 2, 0]) if isinstance(module, lt.SoftmaxCrossEntropy) else torch.zeros(4, 4,
                                                                                                      dtype=torch.float64))
    (grad,) = torch.autograd.grad(value, z, create_graph=True)
    (hvp,) = torch.autograd.grad(grad.pow(2).sum(), z, create_graph=True)
    assert torch.isfinite(hvp).all()
    with pytest.raises(RuntimeError, match="third and higher derivatives.*not supported"):
        hvp.sum().backward()


def test_second_order_at_infinite_logits_gives_the_limit():
    """The torch-native path falls back to the core for +-inf rows; its Hessian there is the limit."""
    z = torch.tensor([[float("inf"), 0.0, 1.0], [0.5, -1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])
    (grad,) = torch.autograd.grad(lt.SoftmaxCrossEntropy(reduction="sum")(z, y), z, create_graph=True)
    vector = torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]], dtype=torch.float64)
    (hvp,) = torch.autograd.grad((grad * vector).sum(), z)
    # row 0: softmax is exactly one-hot, so diag(p) - p p^T = 0; row 1: finite, as PyTorch's
    torch.testing.assert_close(hvp[0], torch.zeros(3, dtype=torch.float64), rtol=0, atol=0)
    finite = z.detach()[1:].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(finite, y[1:], reduction="sum"), finite,
                               create_graph=True)
    (expected,) = torch.autograd.grad((g * vector[1:]).sum(), finite)
    torch.testing.assert_close(hvp[1:], expected, rtol=1e-12, atol=1e-14)


def test_a_target_that_requires_grad_is_refused_not_silently_left_without_gradient():
    z = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True).softmax(-1)
    with pytest.raises(lk.LossInputError, match="target: expected a tensor that does not require grad"):
        lt.SoftmaxCrossEntropy()(z, teacher)
    with pytest.raises(lk.LossInputError, match="weight"):
        lt.MulticlassHead(4)(z, torch.tensor([0, 1, 2]), torch.ones(3, requires_grad=True))
    value = lt.SoftmaxCrossEntropy()(z, teacher.detach())  # the documented way out
    value.backward()
    assert z.grad is not None
    with torch.no_grad():  # evaluation: nothing to refuse
        lt.SoftmaxCrossEntropy()(z, teacher)


def test_bad_options_and_inputs_raise_losskit_errors():
    with pytest.raises(lk.LossInputError, match="label_smoothing"):
        lt.SoftmaxCrossEntropy(label_smoothing=1.5)
    with pytest.raises(lk.LossInputError, match="target"):
        lt.SoftmaxCrossEntropy()(torch.randn(4, 3), torch.tensor([0, 1, 5, 0]))


HEADS = {
    "binary": (lambda: lt.BinaryHead(pos_weight=2.0), (6, 1), lambda r: torch.from_numpy(
        (r.uniform(size=6) > 0.5).astype(np.float64))),
    "multiclass": (lambda: lt.MulticlassHead(4, label_smoothing=0.1, ignore_index=-1, class_weight=[1.0, 2.0, 0.5, 1.0]),
                   (6, 4), lambda r: torch.tensor([0, 3, -1, 2, 1, 0])),
    "multilabel": (lambda: lt.MultilabelHead(4, pos_weight=[1.0, 2.0, 0.5, 3.0]), (6, 4),
                   lambda r: torch.from_numpy((r.uniform(size=(6, 4)) > 0.5).astype(np.float64))),
    "regression": (lambda: lt.RegressionHead(2), (6, 2), lambda r: torch.from_numpy(r.normal(size=(6, 2)))),
}


@pytest.mark.parametrize("task", list(HEADS))
def test_head_modules_equal_the_core_heads(task):
    make, shape, make_target = HEADS[task]
    rng = np.random.default_rng(7)
    head = make()
    z = torch.from_numpy(rng.normal(size=shape)).requires_grad_(True)
    target, weight = make_target(rng), torch.from_numpy(rng.uniform(0.5, 2.0, size=6))
    value = head(z, target, weight, 3.0)
    value.backward()
    # reference: torch autograd through the core head's loss expression on tensors
    z_ref = z.detach().clone().requires_grad_(True)
    ref_value = head.head.loss(z_ref, target, weight=weight, normalizer=3.0)
    ref_value.backward()
    assert type(head.head).__name__ == type(head).__name__ and head.units == shape[1]
    assert type(value.grad_fn).__name__ != type(ref_value.grad_fn).__name__  # two different backward paths
    torch.testing.assert_close(value.detach(), ref_value.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-10, atol=1e-14)
    if task != "regression":
        torch.testing.assert_close(head.predict_proba(z.detach()), head.head.predict_proba(z.detach()))
    torch.testing.assert_close(head.predict(z.detach()), head.head.predict(z.detach()))


@pytest.mark.parametrize("task", list(HEADS))
def test_head_modules_under_torch_compile_fullgraph(task):
    make, shape, make_target = HEADS[task]
    rng = np.random.default_rng(9)
    head, target = make(), make_target(rng)
    linear = torch.nn.Linear(3, shape[1], dtype=torch.float64)
    x, weight = torch.from_numpy(rng.normal(size=(6, 3))), torch.from_numpy(rng.uniform(0.5, 2.0, size=6))

    def step(x):
        return head(linear(x), target, weight)

    value = torch.compile(step, fullgraph=True)(x)
    value.backward()
    compiled_grad = linear.weight.grad.clone()
    linear.zero_grad()
    eager = step(x)
    eager.backward()
    torch.testing.assert_close(value, eager, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(compiled_grad, linear.weight.grad, rtol=1e-10, atol=1e-14)


def test_head_module_checks_its_units():
    with pytest.raises(lk.LossInputError, match="logits"):
        lt.MulticlassHead(4)(torch.randn(3, 5), torch.tensor([0, 1, 2]))


def test_head_modules_name_a_missing_target_and_offer_predict_proba_where_the_core_head_has_it():
    """A single-unit head's module read ``target.ndim`` first (AttributeError on None), and every head module had a
    ``predict_proba`` that a regression head's raised AttributeError from (found in review)."""
    for module in (lt.BinaryHead(), lt.RegressionHead()):
        with pytest.raises(lk.LossInputError, match="^target: expected an array, got None"):
            module(torch.zeros(3), None)
    assert not hasattr(lt.RegressionHead(), "predict_proba") and not hasattr(lt.GaussianHead(), "predict_proba")
    torch.testing.assert_close(lt.BinaryHead().predict_proba(torch.tensor([0.0, 2.0])),
                               torch.sigmoid(torch.tensor([0.0, 2.0])))
    # its repr shows its options (it was 'BinaryHead()' whatever they were)
    assert repr(lt.BinaryHead(pos_weight=2.0)) == f"BinaryHead({repr(lk.BinaryHead(pos_weight=2.0))[11:-1]})"
    assert "pos_weight=2.0" in repr(lt.BinaryHead(pos_weight=2.0))


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


NATIVE_CASES = [
    (lk.SoftmaxCrossEntropy, {"label_smoothing": 0.1, "ignore_index": -1, "class_weight": [1.0, 2.0, 0.5, 1.0, 3.0]},
     lambda g: torch.tensor([0, 4, -1, 2, 3, 1, 1, 0])),
    (lk.BinaryCrossEntropyWithLogits, {"pos_weight": [1.0, 2.0, 0.5, 1.0, 3.0], "label_smoothing": 0.2},
     lambda g: torch.rand(8, 5, generator=g, dtype=torch.float64)),
    (lk.MultilabelCrossEntropy, {"pos_weight": 2.0}, lambda g: (torch.rand(8, 5, generator=g) > 0.5).double()),
    (lk.MeanSquaredError, {}, lambda g: torch.randn(8, 5, generator=g, dtype=torch.float64)),
]


@pytest.mark.parametrize(("cls", "options", "make_target"), NATIVE_CASES, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_torch_native_kernels_equal_the_core_reference(cls, options, make_target, reduction):
    from losskit.torch import _native

    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64) * 6
    target = make_target(g)
    loss = cls(reduction=reduction, **options)
    plan = loss.plan(z, target, weight=torch.rand(8, generator=g, dtype=torch.float64) if cls is not
                     lk.BinaryCrossEntropyWithLogits else None, normalizer=None)
    value, grad = _native.value_and_grad(loss, plan, True)
    ref_value, ref_grad = loss.reference(plan, 1)
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_torch_native_softmax_ce_takes_a_class_axis_other_than_the_last(reduction, monkeypatch):
    """``axis=1`` of ``(N, C, H, W)`` (segmentation on CUDA): the torch-native kernel, never the core's
    array-API path, with the reference's value and its gradient in the caller's layout (contiguous); on
    the meta device through the module too."""
    from losskit.torch import _native

    g = torch.Generator().manual_seed(5)
    z = torch.randn(3, 5, 4, 6, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 5, (3, 4, 6), generator=g)
    y[0, 0] = -1
    loss = lk.SoftmaxCrossEntropy(axis=1, reduction=reduction, label_smoothing=0.1, ignore_index=-1,
                                  class_weight=[1.0, 2.0, 0.5, 1.0, 3.0])
    plan = loss.plan(z, y, weight=torch.rand(3, 4, 6, generator=g, dtype=torch.float64))
    value, grad = _native.value_and_grad(loss, plan, True)
    ref_value, ref_grad = loss.reference(plan, 1)
    assert grad.shape == z.shape and grad.is_contiguous()
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)

    def refuse(self, plan, order):
        raise AssertionError("the array-API reference ran")

    monkeypatch.setattr(lk.SoftmaxCrossEntropy, "reference", refuse)
    meta = torch.zeros(3, 5, 4, 6, device="meta", requires_grad=True)
    lt.SoftmaxCrossEntropy(axis=1, reduction=reduction)(meta, y.clamp(min=0).to("meta")).sum().backward()
    assert meta.grad.shape == (3, 5, 4, 6)


@pytest.mark.parametrize(("cls", "options", "make_target"), NATIVE_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_non_cpu_tensors_take_the_torch_native_path_never_the_core(cls, options, make_target, monkeypatch):
    """The op's body on the meta device (what CUDA tensors take): the torch-native kernel answers and the
    core's array-API path must not run. (A module call on meta tensors runs the op's shape-only fake, which
    tested nothing; the native kernels' values are tested on CPU tensors above.)"""
    def refuse(self, plan, order):
        raise AssertionError("the array-API reference ran")

    monkeypatch.setattr(cls, "reference", refuse)
    loss = cls(**options)
    target = make_target(torch.Generator().manual_seed(0)).to("meta")
    z = torch.zeros(8, 5, device="meta")
    value, grad = lt._value_and_grad(loss, z, target, None, None, True)
    assert value.device.type == grad.device.type == "meta" and value.shape == () and grad.shape == (8, 5)


def test_a_copy_of_a_loss_module_keeps_its_class_and_state():
    """A first form of pickling a user's own loss module rebuilt every module from its options: a subclass
    with a Parameter lost it (and its class) in deepcopy, and eval mode came back as train. Catalogue modules
    and their subclasses now copy by reference as any nn.Module; a user's loss module is made again and
    given its whole state."""
    import copy
    import pickle
    import sys
    from pathlib import Path

    import torch

    import losskit.torch as lt

    sys.path.insert(0, str(Path(__file__).parent))
    from own_losses import ScaledCauchyLoss

    class Tempered(lt.SoftmaxCrossEntropy):
        def __init__(self):
            super().__init__(label_smoothing=0.1)
            self.log_t = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, z, y):
            return super().forward(z / self.log_t.exp(), y)

    z, y = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1])
    crit = Tempered()
    again = copy.deepcopy(crit)
    assert type(again) is Tempered and len(list(again.parameters())) == 1
    assert float(again(z, y)) == float(crit(z, y))
    assert copy.deepcopy(lt.MeanSquaredError().eval()).training is False
    own = lt.module(ScaledCauchyLoss(scale=2.5)).eval()
    own.tag = "kept"
    for made in (pickle.loads(pickle.dumps(own)), copy.deepcopy(own)):
        assert made.training is False and made.tag == "kept"
        assert float(made(torch.zeros(3), torch.ones(3))) == float(own(torch.zeros(3), torch.ones(3)))


def test_misused_module_arguments_are_named():
    import torch

    import losskit.torch as lt

    x, y = torch.randn(6, 3, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2])
    crit = lt.SoftmaxCrossEntropy()
    for kwargs, name in (({"target": [0, 1, 2, 0, 1, 2]}, "target"),
                         ({"target": y, "normalizer": torch.tensor([3.0, 4.0])}, "normalizer"),
                         ({"target": y, "normalizer": "a"}, "normalizer"),
                         ({"target": y, "normalizer": torch.tensor(3.0, requires_grad=True)}, "normalizer")):
        with pytest.raises(lk.LossInputError, match=f"^{name}: "):
            crit(x, **kwargs)
    assert float(crit(x, y, normalizer=torch.tensor(3.0))) == float(crit(x, y, normalizer=np.array(3.0))) == \
        float(crit(x, y, normalizer=3))


def test_loss_modules_show_their_options_as_torchs_losses_do():
    """Code written for nn.CrossEntropyLoss reads criterion.reduction (and ignore_index, label_smoothing): the
    modules had them only under .core.options. Read-only: an assignment raises rather than being ignored."""
    import torch

    import losskit.torch as lt

    ce = lt.SoftmaxCrossEntropy(label_smoothing=0.1, ignore_index=-100, reduction="sum")
    reference = torch.nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=-100, reduction="sum")
    assert (ce.reduction, ce.ignore_index, ce.label_smoothing) == \
        (reference.reduction, reference.ignore_index, reference.label_smoothing)
    assert lt.MeanSquaredError().reduction == "mean"
    with pytest.raises(AttributeError, match="ignore_index"):
        lt.MeanSquaredError().ignore_index  # noqa: B018
    with pytest.raises(AttributeError):
        ce.reduction = "mean"


# -- the review of 2026-12-06 ------------------------------------------------------------------------------


def test_a_users_loss_redefined_under_its_name_runs_its_new_formula():
    """A notebook cell run twice defines the loss class anew under the same name (the registry allows it):
    the module ran the first formula still (the op's core loss was cached by name)."""
    def define(power):
        class RedefinedLoss(lk.ElementwiseLoss):
            name = "redefined_power_loss"
            target = "value"

            def value(self, xp, z, y):
                return xp.abs(z - y) ** power

            def derivative(self, xp, z, y):
                return power * xp.abs(z - y) ** (power - 1) * xp.sign(z - y)

            def second_derivative(self, xp, z, y):
                return power * (power - 1) * xp.abs(z - y) ** (power - 2)

        return RedefinedLoss

    z, y = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    assert lt.module(define(2)())(z, y).item() == pytest.approx((1 + 4 + 9) / 3)
    new = lt.module(define(1)())
    x = z.clone().requires_grad_()
    value = new(x, y)
    value.backward()
    assert value.item() == pytest.approx(2.0)  # mean |e|, hand-worked
    torch.testing.assert_close(x.grad, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_a_normalizer_that_changes_between_compiled_steps_is_an_argument_not_a_constant():
    """torch.compile(fullgraph=True) traces a Python normalizer that changes between calls as a symbol:
    probing it as an array (hasattr ndim) failed the trace at the second value."""
    import torch.nn.functional as F

    criterion = lt.SoftmaxCrossEntropy()
    step = torch.compile(lambda z, y, n: criterion(z, y, normalizer=n), fullgraph=True, backend="aot_eager")
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(6, 5, generator=g), torch.randint(0, 5, (6,), generator=g)
    for n in (2.0, 3.0, 5.0):
        torch.testing.assert_close(step(z, y, n), F.cross_entropy(z, y, reduction="sum") / n)


def test_module_arguments_are_refused_by_name_and_batched_backward_works():
    """A target or weight on another device than the input raised torch's error from an op the user never
    called; a class_weight that requires grad was read once as numbers (no gradient, no error: F.cross_entropy
    refuses it); a forward-mode dual input lost its tangent silently. ``is_grads_batched=True`` and
    ``jacobian(vectorize=True)`` raised vmap's errors (an ``.item()`` and an in-place product in the backward):
    now equal to F.cross_entropy's."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (4,), generator=g)
    with pytest.raises(lk.LossInputError, match="^target: expected a tensor on input's device \\(cpu\\)"):
        lt.SoftmaxCrossEntropy()(z, y.to("meta"))
    with pytest.raises(lk.LossInputError, match="^weight: expected a tensor on input's device"):
        lt.MeanSquaredError()(z, z, weight=torch.ones(4, device="meta"))
    with pytest.raises(lk.LossInputError, match="^class_weight: expected a tensor that does not require grad"):
        lt.SoftmaxCrossEntropy(class_weight=torch.nn.Parameter(torch.ones(3)))
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level(), pytest.raises(lk.LossInputError, match="^input: expected a tensor without a forward"):
        lt.SoftmaxCrossEntropy()(fwad.make_dual(z, torch.ones_like(z)), y)
    upstream = torch.randn(5, 4, generator=g, dtype=torch.float64)
    for reduction, u in (("mean", upstream[:, 0]), ("none", upstream)):
        got = _batched_grad(lambda x, r=reduction: lt.SoftmaxCrossEntropy(reduction=r)(x, y), z, u)
        expected = _batched_grad(lambda x, r=reduction: F.cross_entropy(x, y, reduction=r), z, u)
        torch.testing.assert_close(got, expected)
    jacobian = torch.autograd.functional.jacobian
    torch.testing.assert_close(jacobian(lambda x: lt.SoftmaxCrossEntropy(reduction="none")(x, y), z, vectorize=True),
                               jacobian(lambda x: F.cross_entropy(x, y, reduction="none"), z, vectorize=True))


def _batched_grad(fn, z, upstream):
    x = z.clone().requires_grad_()
    return torch.autograd.grad(fn(x), x, upstream, is_grads_batched=True)[0]


def test_a_class_weight_that_requires_grad_is_taken_under_no_grad():
    """As F.cross_entropy: refused while autograd records (it would get no gradient), taken under no_grad
    (refused there too by the first form of the check)."""
    import torch.nn.functional as F

    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0, 0.5]))
    with torch.no_grad():
        criterion = lt.SoftmaxCrossEntropy(class_weight=weight)
        z, y = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 1.0]]), torch.tensor([1, 2])
        torch.testing.assert_close(criterion(z, y), F.cross_entropy(z, y, weight=weight))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_under_autocast_the_losses_run_in_float32_as_torchs_own(dtype):
    """Autocast runs torch's losses in float32; losskit's returned half precision: an MSE of 9e4 was inf in
    float16, and GradScaler's default scale (65536, above float16's 65504) made an infinite upstream gradient,
    so the first step was skipped and the scale halved (found in review). Now the value and every gradient
    equal torch's own under the same autocast, and the scaler keeps its scale; a fused linear loss takes a
    float32 layer beside autocast's half hidden states (refused before as two dtypes)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 16), torch.randint(0, 10, (64,))
    results = {}
    for name, criterion in (("torch", torch.nn.CrossEntropyLoss()), ("losskit", lt.SoftmaxCrossEntropy())):
        model = torch.nn.Linear(16, 10)
        model.load_state_dict(_same_linear())
        scaler = torch.amp.GradScaler("cpu")
        with torch.autocast("cpu", dtype=dtype):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        grad = model.weight.grad.clone()
        scaler.step(torch.optim.SGD(model.parameters(), lr=0.1))
        scaler.update()  # (halved where the step had an inf)
        results[name] = (loss.dtype, loss.detach(), grad, scaler.get_scale())
    (dtype_t, value_t, grad_t, scale_t), (dtype_l, value_l, grad_l, scale_l) = results["torch"], results["losskit"]
    assert dtype_l == dtype_t == torch.float32 and scale_l == scale_t == 65536.0
    torch.testing.assert_close(value_l, value_t, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad_l, grad_t, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(grad_l).all()
    with torch.autocast("cpu", dtype=dtype):
        prediction = torch.nn.Linear(16, 1)(x)[:, 0]
        target = torch.full((64,), 300.0)
        ours, theirs = lt.MeanSquaredError()(prediction, target), torch.nn.functional.mse_loss(prediction, target)
    assert ours.dtype == torch.float32 and torch.isfinite(ours)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    classifier = torch.nn.Linear(16, 10, bias=False)
    with torch.autocast("cpu", dtype=dtype):
        hidden = torch.nn.Linear(16, 16)(x)  # autocast's output: half
        assert hidden.dtype == dtype
        fused = lt.linear_cross_entropy(hidden, classifier.weight, y)
    fused.backward()
    expected = torch.nn.functional.cross_entropy(hidden.detach().float() @ classifier.weight.detach().T, y)
    assert fused.dtype == torch.float32 and classifier.weight.grad.dtype == torch.float32
    torch.testing.assert_close(fused.detach(), expected, rtol=1e-6, atol=0)


@functools.cache
def _same_linear():
    torch.manual_seed(1)
    return torch.nn.Linear(16, 10).state_dict()


def test_a_loss_modules_repr_is_the_core_losss_and_a_tensor_option_is_checked_at_construction():
    """The repr printed the options' JSON (a class_weight of 32000 in full: 650 kB from print(model)); a tensor
    class_weight with a negative entry was accepted at construction and refused at the first forward; the core
    could be assigned (found in review)."""
    assert repr(lt.HuberLoss(delta=2.0)) == "HuberLoss(reduction='mean', impl='auto', delta=2.0)"
    assert len(repr(lt.SoftmaxCrossEntropy(class_weight=torch.rand(32000)))) < 1000
    with pytest.raises(lk.LossInputError, match="^class_weight: expected"):
        lt.SoftmaxCrossEntropy(class_weight=torch.tensor([1.0, -1.0, 1.0, 1.0]))
    module = lt.HuberLoss()
    with pytest.raises(AttributeError):  # (assigned, it changed .reduction but not what forward computed)
        module.core = lk.HuberLoss(delta=0.1, reduction="sum")
    # an option the loss lacks is named with the loss's options (nn.Module's own words hid them)
    with pytest.raises(AttributeError, match=r"HuberLoss has no option 'ignore_index' \(its options: "):
        _ = module.ignore_index
    assert lt.SoftmaxCrossEntropy(ignore_index=-100).ignore_index == -100
    assert module.core.delta == 1.0
