"""Adversarial input for every public loss, on every installed backend and both paths.

Each test is one class of the hardening issue: no NaN where the exact value is finite, a weight-0
example is exactly 0, scalars take the input's dtype, every integer label dtype, large logits keep
their precision, empty batches and axes, and wrong argument types refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import losskit as lk
from losskit.losses.linear import linear_binary_cross_entropy_value_and_grad, linear_cross_entropy_value_and_grad

# the backend fixture only converts arrays: sharing it across examples is what we want
FUZZ = settings(max_examples=60, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
LOGIT_LOSSES = {
    "softmax": lambda **o: lk.SoftmaxCrossEntropy(**o),
    "bce": lambda **o: lk.BinaryCrossEntropyWithLogits(**o),
    "multilabel": lambda **o: lk.MultilabelCrossEntropy(**o),
    "mse": lambda **o: lk.MeanSquaredError(**o),
}


def _target(name, z, rng):
    if name == "softmax":
        return rng.integers(0, z.shape[-1], size=z.shape[:-1])
    if name == "mse":
        return rng.normal(size=z.shape).astype(z.dtype)
    return (rng.uniform(size=z.shape) > 0.5).astype(z.dtype)


def _options(name, smoothing):
    return {} if name == "mse" else {"label_smoothing": smoothing}


#: the shapes of JAX's examples. JAX compiles each eager op once per shape (about 16 programs, 0.35 s, at
#: each new shape of these losses: 65 s for JAX's 16 tests with every shape, against 1 s for NumPy's), and
#: these examples are about values: they take theirs from the same strategy, their shapes from five
#: (one element, two classes in one row and in three, a middle one, the largest). NumPy and torch, the
#: same array-API code, take every shape
_JAX_SHAPES = st.sampled_from([(1, 1), (1, 2), (3, 2), (2, 3), (4, 5)])


def _finite_logits(dtype, shapes=None):
    info = np.finfo(dtype)
    elements = st.floats(float(-info.max), float(info.max), width=info.bits, allow_nan=False, allow_infinity=False)
    shapes = st.tuples(st.integers(1, 4), st.integers(1, 5)) if shapes is None else shapes
    return hnp.arrays(dtype, shapes, elements=elements)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@FUZZ
@given(data=st.data())
def test_finite_input_never_gives_nan_and_both_paths_agree(name, dtype, smoothing, data, backend):
    """Spans beyond the dtype's range included (3e38 and -3e38 in one float32 row), on every backend."""
    xp_name, to = backend
    z = data.draw(_finite_logits(dtype, _JAX_SHAPES if xp_name == "jax" else None))
    target = _target(name, z, np.random.default_rng(0))
    results = {}
    for impl in ("auto", "xp"):
        value, grad = LOGIT_LOSSES[name](impl=impl, reduction="none", **_options(name, smoothing)).value_and_grad(
            to(z), to(target))
        value, grad = np.asarray(value), np.asarray(grad)
        assert not np.isnan(value).any() and not np.isnan(grad).any(), (impl, z)
        results[impl] = value, grad
    # below the smallest normal number a value has fewer bits: the paths may differ by a subnormal ulp
    np.testing.assert_allclose(results["auto"][0], results["xp"][0], rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=float(np.finfo(dtype).tiny))
    np.testing.assert_allclose(results["auto"][1], results["xp"][1], rtol=1e-4 if dtype == np.float32 else 1e-9,
                               atol=1e-30)


def test_a_row_spanning_more_than_float32_gives_the_exact_value():
    z = np.array([[3e38, -3e38, 0.0]], np.float32)
    for impl in ("auto", "xp"):
        value, grad = lk.SoftmaxCrossEntropy(impl=impl).value_and_grad(z, np.array([0]))
        assert value == 0 and np.all(grad == 0)
        value = lk.SoftmaxCrossEntropy(impl=impl, label_smoothing=0.1)(z, np.array([0]))
        # (a/K) * sum_k (m - z_k) = (0.1 / 3) * (0 + 6e38 + 3e38) = 3e37, finite in float32
        np.testing.assert_allclose(value, 3e37, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
@pytest.mark.parametrize("impl", ["auto", "xp"])
def test_a_weight_zero_example_adds_exactly_zero_even_when_it_overflows(name, impl):
    z = np.array([[-1.7e308, 1.0], [0.5, -0.5]])
    target = np.array([1, 0]) if name == "softmax" else np.array([[1.7e308, 0.0], [1.0, 0.0]])
    if name in ("bce", "multilabel"):
        target = np.array([[1.0, 0.0], [1.0, 0.0]])
    weight = np.array([[0.0, 1.0], [1.0, 1.0]]) if name == "bce" else np.array([0.0, 1.0])
    value, grad = LOGIT_LOSSES[name](impl=impl, reduction="none").value_and_grad(z, target, weight=weight)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    zero = (weight == 0) if name == "bce" else np.broadcast_to((weight == 0)[:, None], z.shape)
    assert np.all(grad[zero] == 0)
    # the weight-0 example adds exactly 0: to the "none" entry, to "sum" and to "mean"
    kept = weight != 0
    assert np.all(value[~kept] == 0) and np.all(value[kept] != 0)
    for reduction in ("sum", "mean"):
        total = LOGIT_LOSSES[name](impl=impl, reduction=reduction)(z, target, weight=weight)
        # the examples kept, alone: the elements of weight 1 (BCE is elementwise), else the second row
        index = kept if name == "bce" else slice(1, None)
        expected = LOGIT_LOSSES[name](impl=impl, reduction=reduction)(z[index], target[index], weight=weight[index])
        assert total == expected, (reduction, total, expected)


def test_python_scalars_take_the_input_dtype_on_torch():
    torch = pytest.importorskip("torch")
    value = lk.mean_squared_error(torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64),
                                  normalizer=0.1)
    assert value.dtype == torch.float64 and value.item() == 10.0


INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("impl", ["auto", "xp"])
def test_every_integer_label_dtype_on_every_backend(dtype, impl, backend):
    xp_name, to = backend
    z = np.random.default_rng(1).normal(size=(6, 4))
    labels = np.array([0, 1, 2, 3, 1, 0], dtype=dtype)
    ref = lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(z, labels.astype(np.int64))
    try:
        converted = to(labels)
    except (TypeError, ValueError):
        pytest.skip(f"{xp_name} has no {dtype}")
    value, grad = lk.SoftmaxCrossEntropy(impl=impl).value_and_grad(to(z), converted)
    np.testing.assert_allclose(np.asarray(value), ref[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), ref[1], rtol=1e-6, atol=1e-12)


@pytest.fixture(params=["numpy", "torch", "jax"])
def backend(request):
    if request.param == "numpy":
        return "numpy", np.asarray
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        return "torch", lambda a: torch.from_numpy(np.ascontiguousarray(a))
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    return "jax", jnp.asarray


def test_the_torch_layer_keeps_precision_for_large_logits():
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    # CPU tensors: the module takes the compiled kernels
    z = torch.tensor([[1e8, 1e8]], dtype=torch.float32, requires_grad=True)
    value = lt.SoftmaxCrossEntropy()(z, torch.tensor([0]))
    value.backward()
    np.testing.assert_allclose(value.item(), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(z.grad.numpy(), [[-0.5, 0.5]], rtol=1e-6)
    # the torch-native kernels (the path of any other device), called on CPU tensors
    from losskit.torch import _native

    loss = lk.SoftmaxCrossEntropy()
    for z, y in ((torch.tensor([[1e8, 1e8]]), torch.tensor([0])), (torch.tensor([[1e6, 1e6 - 1.0]]), torch.tensor([1]))):
        plan = loss.plan(z, y)
        value, grad = _native.value_and_grad(loss, plan, True)
        ref_value, ref_grad = loss.value_and_grad(z.double(), y)
        np.testing.assert_allclose(value.item(), ref_value.item(), rtol=1e-6)
        np.testing.assert_allclose(grad.numpy(), ref_grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_a_sure_row_keeps_its_tiny_loss_in_the_linear_sweeps(library):
    h = np.array([[1.0]])
    classifier = np.array([[40.0], [0.0], [0.0]])
    exact = 2 * np.exp(-40.0)
    for z_loss in (0.0, 1e-30):  # z_loss > 0 takes the array-API sweep
        args = (h, classifier, np.array([0]))
        if library == "torch":
            torch = pytest.importorskip("torch")
            args = tuple(torch.from_numpy(a) for a in args)
        value, _ = linear_cross_entropy_value_and_grad(*args, z_loss=z_loss)
        np.testing.assert_allclose(float(value), exact + z_loss * 1600, rtol=1e-12)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batches_in_every_path(library, reduction):
    def to(a):
        if library == "torch":
            torch = pytest.importorskip("torch")
            return torch.from_numpy(a)
        return a

    value, grads = linear_cross_entropy_value_and_grad(to(np.zeros((0, 5))), to(np.ones((6, 5))), to(np.zeros(0, int)),
                                                       z_loss=1e-4, reduction=reduction)
    assert tuple(value.shape) == ((0,) if reduction == "none" else ()) and float(np.sum(np.asarray(value))) == 0
    assert tuple(grads[0].shape) == (0, 5) and float(np.abs(np.asarray(grads[1])).max()) == 0
    value, grads = linear_binary_cross_entropy_value_and_grad(to(np.zeros((0, 5))), to(np.ones((6, 5))),
                                                              to(np.zeros((0, 6))), reduction=reduction)
    assert float(np.sum(np.asarray(value))) == 0 and tuple(grads[0].shape) == (0, 5)
    for name, make in LOGIT_LOSSES.items():
        z = np.zeros((0, 3))
        target = np.zeros(0, int) if name == "softmax" else np.zeros((0, 3))
        for impl in ("auto", "xp"):
            value, grad = make(impl=impl, reduction=reduction).value_and_grad(to(z), to(target))
            assert float(np.sum(np.asarray(value))) == 0 and tuple(grad.shape) == (0, 3)


def test_empty_class_and_value_axes_mean_one_thing_on_every_path():
    for impl in ("auto", "xp"):
        value, grad = lk.MultilabelCrossEntropy(impl=impl, reduction="none").value_and_grad(np.zeros((4, 0)),
                                                                                          np.zeros((4, 0)))
        np.testing.assert_array_equal(value, np.zeros(4))  # a sum over no labels
        assert grad.shape == (4, 0)
        with pytest.raises(lk.LossInputError, match="predictions"):
            lk.MeanSquaredError(impl=impl)(np.zeros((4, 0)), np.zeros((4, 0)))
        with pytest.raises(lk.LossInputError, match="logits"):
            lk.SoftmaxCrossEntropy(impl=impl)(np.zeros((3, 0)), np.zeros(3, int))
        # probabilities of no class: the K = 0 message (it was the row-sum check's "off by 1")
        with pytest.raises(lk.LossInputError, match=r"probs: expected at least one class .*\(K = 0\)"):
            lk.CategoricalCrossEntropy(impl=impl)(np.zeros((2, 0)), np.zeros((2, 0)))
    assert lk.softmax(np.zeros((3, 0))).shape == (3, 0)
    np.testing.assert_array_equal(lk.logsumexp(np.zeros((3, 0))), np.full(3, -np.inf))


BAD_ARGUMENTS = [
    ("logits", lambda: lk.softmax_cross_entropy(None, np.array([0]))),
    ("target", lambda: lk.softmax_cross_entropy(np.zeros((1, 2)), None)),
    ("logits", lambda: lk.softmax_cross_entropy([[0.0, 1.0], [0.0]], np.array([0, 1]))),
    ("logits", lambda: lk.binary_cross_entropy_with_logits(["a", "b"], [0, 1])),
    ("target", lambda: lk.binary_cross_entropy_with_logits([0.0, 1.0], "ab")),
    ("weight", lambda: lk.mean_squared_error([0.0], [1.0], weight=[[1.0], [2]])),
    ("label_smoothing", lambda: lk.SoftmaxCrossEntropy(label_smoothing="0.1")),
    ("label_smoothing", lambda: lk.SoftmaxCrossEntropy(label_smoothing=None)),
    ("ignore_index", lambda: lk.SoftmaxCrossEntropy(ignore_index=1.5)),
    ("ignore_index", lambda: lk.SoftmaxCrossEntropy(ignore_index=np.bool_(True))),
    ("axis", lambda: lk.SoftmaxCrossEntropy(axis="1")),
    ("class_weight", lambda: lk.SoftmaxCrossEntropy(class_weight="heavy")),
    ("pos_weight", lambda: lk.BinaryCrossEntropyWithLogits(pos_weight=[1, "a"])),
    ("reduction", lambda: lk.MeanSquaredError(reduction=None)),
    ("impl", lambda: lk.MeanSquaredError(impl=["xp"])),
    ("normalizer", lambda: lk.mean_squared_error([0.0], [1.0], normalizer="2")),
    ("z_loss", lambda: lk.linear_cross_entropy(np.ones((1, 2)), np.ones((3, 2)), np.array([0]), z_loss=np.inf)),
    ("chunk_size", lambda: lk.linear_cross_entropy(np.ones((1, 2)), np.ones((3, 2)), np.array([0]), chunk_size=0)),
    ("classifier", lambda: lk.linear_cross_entropy(np.ones((1, 2)), None, np.array([0]))),
]


@pytest.mark.parametrize(("name", "call"), BAD_ARGUMENTS, ids=[f"{i}-{n}" for i, (n, _) in enumerate(BAD_ARGUMENTS)])
def test_wrong_argument_types_are_refused_by_name(name, call):
    with pytest.raises(lk.LossInputError) as info:
        call()
    assert str(info.value).startswith(f"{name}:"), str(info.value)


def test_numpy_scalars_are_accepted_wherever_python_numbers_are():
    z, y = np.random.default_rng(2).normal(size=(5, 3)), np.array([0, 1, -100, 2, 1])
    plain = lk.SoftmaxCrossEntropy(label_smoothing=0.25, ignore_index=-100, axis=-1)(z, y, normalizer=3.0)
    numpy = lk.SoftmaxCrossEntropy(label_smoothing=np.float32(0.25), ignore_index=np.int64(-100),
                                   axis=np.int64(-1))(z, y, normalizer=np.float64(3.0))
    assert plain == numpy


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e30])
def test_every_path_agrees_numpy_torch_jax_layers_and_linear_sweep(scale):
    """Softmax CE of the same logits through every implementation: the core on NumPy (compiled and
    reference), on torch (compiled, via DLPack), losskit.torch, losskit.jax, and the linear sweep
    with an identity classifier (h @ I = z)."""
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import losskit.jax as lj
    import losskit.torch as lt

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(5)
    z = rng.normal(size=(9, 6)) * scale
    y = rng.integers(0, 6, size=9)
    options = {"label_smoothing": 0.1, "class_weight": list(np.linspace(0.5, 2.0, 6))}
    ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp", **options).value_and_grad(z, y)
    results = {"numpy compiled": lk.SoftmaxCrossEntropy(impl="fused", **options).value_and_grad(z, y)}
    results["torch core"] = lk.SoftmaxCrossEntropy(**options).value_and_grad(torch.from_numpy(z), torch.from_numpy(y))
    tz = torch.from_numpy(z.copy()).requires_grad_(True)
    value = lt.SoftmaxCrossEntropy(**options)(tz, torch.from_numpy(y))
    value.backward()
    results["losskit.torch"] = (value.detach(), tz.grad)
    jz = jax.numpy.asarray(z)
    results["losskit.jax"] = jax.value_and_grad(lambda v: lj.softmax_cross_entropy(v, jax.numpy.asarray(y),
                                                                                   **options))(jz)
    value, (grad_hidden, _, _) = linear_cross_entropy_value_and_grad(z, np.eye(6), y, **options)
    results["linear sweep"] = (value, grad_hidden)
    for name, (value, grad) in results.items():
        np.testing.assert_allclose(np.asarray(value), ref_value, rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(np.asarray(grad), ref_grad, rtol=1e-9, atol=1e-15, err_msg=name)


def test_rows_spanning_more_than_the_dtype_with_smoothing_agree_on_every_path():
    """Logits 1e308 and -1e308 in one float64 row: z - max overflows, the exact loss does not."""
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import losskit.jax as lj
    import losskit.torch as lt

    jax.config.update("jax_enable_x64", True)
    hidden, classifier = np.eye(2), np.array([[1e308, 0.0], [-1e308, 0.0], [0.0, 1.0]])
    z, y = hidden @ classifier.T, np.array([0, 2])
    exact = (0.1 * 1e308 + lk.softmax_cross_entropy(z[1:], y[1:], label_smoothing=0.1)) / 2
    values = {
        "core": lk.softmax_cross_entropy(z, y, label_smoothing=0.1),
        "core xp": lk.softmax_cross_entropy(z, y, label_smoothing=0.1, impl="xp"),
        "linear": lk.linear_cross_entropy(hidden, classifier, y, label_smoothing=0.1),
        "torch": lt.SoftmaxCrossEntropy(label_smoothing=0.1)(torch.from_numpy(z), torch.from_numpy(y)),
        "jax": lj.softmax_cross_entropy(jax.numpy.asarray(z), jax.numpy.asarray(y), label_smoothing=0.1),
    }
    for name, value in values.items():
        np.testing.assert_allclose(float(value), exact, rtol=1e-12, err_msg=name)
