"""The compiled kernels (impl="auto" on NumPy) against the array-API path (impl="xp") and torch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

import losskit as lk  # noqa: E402
from losskit import fused  # noqa: E402
from losskit.losses._compiled import frozen as _frozen  # noqa: E402

# float64: the two paths differ only in summation order; float32: plus a few ulps of exp/log, which
# the BCE gradient's cancellation (sigmoid(z) - y' for soft targets) can raise to ~1e-7 absolute
TOL = {np.float64: 1e-12, np.float32: 2e-5}
GRAD_ATOL = {np.float64: 1e-15, np.float32: 2e-7}
RNG = np.random.default_rng(0)


def _both(cls, options, x, t, **call):
    fast = cls(impl="fused", **options).value_and_grad(x, t, **call)
    ref = cls(impl="xp", **options).value_and_grad(x, t, **call)
    return fast, ref


def _close(fast, ref, dtype):
    assert fast[0].dtype == ref[0].dtype == dtype and fast[1].dtype == dtype
    np.testing.assert_allclose(fast[0], ref[0], rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(fast[1], ref[1], rtol=TOL[dtype], atol=GRAD_ATOL[dtype])


SOFTMAX_OPTIONS = [{}, {"label_smoothing": 0.2}, {"ignore_index": -100}, {"class_weight": list(np.linspace(0.5, 2, 7))},
                   {"ignore_index": -100, "label_smoothing": 0.1, "class_weight": list(np.linspace(0.5, 2, 7))}]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("options", SOFTMAX_OPTIONS, ids=[str(sorted(o)) for o in SOFTMAX_OPTIONS])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("n_classes", [7, 1300])  # 1300: several summation blocks per row
def test_softmax_ce_kernel_matches_the_array_api_path(dtype, reduction, options, scale, n_classes):
    if "class_weight" in options:
        options = dict(options, class_weight=list(np.linspace(0.5, 2, n_classes)))
    z = (RNG.normal(size=(33, n_classes)) * scale).astype(dtype)
    y = RNG.integers(0, n_classes, size=33)
    y[::5] = -100 if "ignore_index" in options else 0
    w = RNG.uniform(0.1, 2.0, size=33)
    _close(*_both(lk.SoftmaxCrossEntropy, dict(options, reduction=reduction), z, y, weight=w, normalizer=None),
           dtype)
    _close(*_both(lk.SoftmaxCrossEntropy, dict(options, reduction=reduction), z, y, normalizer=5.0), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shape", [(40,), (9, 5), (2, 3, 5), (9000,), (3, 4100)])  # rows of 4096 + a tail
def test_binary_multilabel_and_mse_kernels_match_the_array_api_path(dtype, reduction, shape):
    z = (RNG.normal(size=shape) * 8).astype(dtype)
    t = RNG.uniform(size=shape)
    pw = list(np.linspace(0.5, 2.0, shape[-1]))
    options = {"reduction": reduction, "label_smoothing": 0.1, "pos_weight": pw}
    _close(*_both(lk.BinaryCrossEntropyWithLogits, options, z, t, weight=RNG.uniform(0.1, 2, size=shape)), dtype)
    _close(*_both(lk.MeanSquaredError, {"reduction": reduction}, z, t,
                  weight=RNG.uniform(0.1, 2, size=shape if len(shape) == 1 else shape[:-1])), dtype)
    if len(shape) >= 2:
        _close(*_both(lk.MultilabelCrossEntropy, options, z, (t > 0.5).astype(np.int64),
                      weight=RNG.uniform(0.1, 2, size=shape[:-1])), dtype)


def test_kernels_match_torch():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(64, 50)) * 3
    y = RNG.integers(0, 50, size=64)
    value, grad = lk.SoftmaxCrossEntropy(impl="fused", label_smoothing=0.1).value_and_grad(z, y)
    tz = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y), label_smoothing=0.1)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-10, atol=1e-15)
    t = (RNG.uniform(size=(64, 50)) > 0.5).astype(float)
    value, grad = lk.BinaryCrossEntropyWithLogits(impl="fused").value_and_grad(z, t)
    tz.grad = None
    ref = torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.from_numpy(t))
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [{}, {"ignore_index": -100, "class_weight": "per class"},
                                     {"ignore_index": -100, "label_smoothing": 0.1}])
def test_the_class_axis_of_pytorchs_layout_takes_the_columns_kernel_and_matches_torch(dtype, options, monkeypatch):
    """``axis=1`` of ``(N, C, H, W)`` logits (segmentation's layout) with H x W >= COLUMNS_FROM: the
    columns kernel reads the logits where they lie (it took the reference path before, 5-15x slower
    than the last axis) and equals torch's ``F.cross_entropy`` of the same layout (whose
    ``ignore_index`` is -100 by default), on NumPy arrays and torch tensors, ``mean`` and ``none``;
    the gradient comes back in the caller's layout."""
    torch = pytest.importorskip("torch")
    from losskit.losses import _compiled

    rng = np.random.default_rng(3)
    z = (rng.normal(size=(3, 7, 9, 10)) * 3).astype(dtype)
    y = rng.integers(0, 7, size=(3, 9, 10))
    options = dict(options)
    if "ignore_index" in options:
        y[0, 0, :4] = -100
    if options.get("class_weight") == "per class":
        options["class_weight"] = list(np.linspace(0.5, 2.0, 7))
    weight = options.get("class_weight")
    peer = {k: v for k, v in options.items() if k != "class_weight"}
    taken = []
    columns = _compiled._softmax_ce_columns
    monkeypatch.setattr(_compiled, "_softmax_ce_columns", lambda *a: taken.append(1) or columns(*a))
    tz = torch.tensor(z, requires_grad=True)
    tol = {np.float64: (1e-12, 1e-15), np.float32: (3e-6, 3e-7)}[dtype]  # torch: float32 log_softmax, z - lse
    for reduction in ("mean", "none"):
        tz.grad = None
        ref = torch.nn.functional.cross_entropy(tz, torch.from_numpy(y), reduction=reduction,
                                                weight=None if weight is None else torch.tensor(weight, dtype=tz.dtype),
                                                **peer)
        ref.backward(torch.ones_like(ref))
        loss = lk.SoftmaxCrossEntropy(axis=1, impl="fused", reduction=reduction, **options)
        for given in (z, torch.from_numpy(z)):
            value, grad = loss.value_and_grad(given, y if isinstance(given, np.ndarray) else torch.from_numpy(y))
            assert tuple(grad.shape) == z.shape
            np.testing.assert_allclose(np.asarray(value), ref.detach().numpy(), rtol=tol[0], atol=tol[1])
            np.testing.assert_allclose(np.asarray(grad), tz.grad.numpy(), rtol=tol[0] * 10, atol=tol[1])
    assert len(taken) == 4


def test_a_plus_inf_logit_with_label_smoothing_gives_inf_without_a_warning():
    """The limit (+inf: smoothing puts mass on classes of probability 0) from the reference, which the
    kernel's flag sends the row to; its mean surprisal subtracted inf from inf on the way (a NumPy
    RuntimeWarning a user saw, the result right); so it did for a row of -inf alone (log K)."""
    import warnings

    z = np.array([[np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0], [0.0, 1.0, 2.0], [-np.inf, -np.inf, -np.inf]])
    for impl in ("auto", "xp"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value, grad = lk.SoftmaxCrossEntropy(impl=impl, label_smoothing=0.3, reduction="none").value_and_grad(
                z, np.array([0, 1, 2, 0]))
        assert value[0] == value[1] == np.inf and np.isfinite(value[2])
        np.testing.assert_allclose(value[3], np.log(3))  # every logit -inf: the uniform softmax's limit
        np.testing.assert_allclose(grad[1], [0.5 - 0.1, 0.5 - 0.8, -0.1])  # softmax (1/2, 1/2, 0) - y'


@pytest.mark.parametrize("shape", [(2, 5, 8, 9), (4, 5, 160, 160)])  # the serial twin; the parallel kernel
def test_a_channels_last_view_with_out_writes_out(shape):
    """Logits whose class axis is last in the call but lies between others in memory (``x.transpose(0, 2,
    3, 1)``, channels-last) with ``out=``: out holds the gradient (found in review: the columns kernel
    wrote a buffer of its own and out was returned unwritten); without out the columns kernel answers,
    and the kernel cache keys the two layouts apart (a small call's key marked ready by one layout must
    not make the other's first call wait for numba)."""
    from losskit.losses import _compiled

    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    y = rng.integers(0, 5, (shape[0], *shape[2:]))
    view = x.transpose(0, 2, 3, 1)
    loss = lk.SoftmaxCrossEntropy(impl="fused", label_smoothing=0.1)
    ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp", label_smoothing=0.1).value_and_grad(view, y)
    out = np.full(view.shape, np.nan, np.float32)
    value, grad = loss.value_and_grad(view, y, out=out)
    assert grad is out
    np.testing.assert_allclose(value, ref_value, rtol=3e-6)
    np.testing.assert_allclose(out, ref_grad, rtol=3e-5, atol=1e-9)
    value, grad = loss.value_and_grad(view, y)
    np.testing.assert_allclose(grad, ref_grad, rtol=3e-5, atol=1e-9)
    keys = set()
    for logits, given in ((view, None), (np.ascontiguousarray(view), None), (view, np.empty(view.shape, np.float32))):
        plan = loss.plan(logits, y)
        arrays = {"input": logits, "scale": plan.scale, "labels": plan.target.labels, "out": given}
        keys.add(_compiled._signature(loss, plan, arrays))
    assert len(keys) == 3


def test_flagged_rows_fall_back_to_exact_limits_and_precise_errors():
    z = np.array([[np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]])
    y = np.array([0, 2])
    fast = lk.SoftmaxCrossEntropy(impl="auto").value_and_grad(z, y)
    ref = lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(z, y)
    np.testing.assert_array_equal(fast[1], ref[1])
    bad_cases = [
        (lk.SoftmaxCrossEntropy, np.zeros((3, 4)), np.array([0, 4, 1])),
        (lk.SoftmaxCrossEntropy, np.zeros((3, 4)), np.array([0, -100, 1])),
        (lk.BinaryCrossEntropyWithLogits, np.zeros(3), np.array([0.0, 1.5, 1.0])),
        (lk.MultilabelCrossEntropy, np.zeros((2, 2)), np.array([[0.0, np.nan], [1.0, 0.0]])),
        (lk.MeanSquaredError, np.zeros((2, 2)), np.array([[0.0, np.nan], [1.0, 0.0]])),
    ]
    for cls, x, t in bad_cases:
        messages = []
        for impl in ("auto", "xp"):
            with pytest.raises(lk.LossInputError) as info:
                cls(impl=impl).value_and_grad(x, t)
            messages.append(str(info.value))
        assert messages[0] == messages[1]


def test_impl_fused_refuses_what_no_kernel_handles():
    with pytest.raises(lk.LossInputError, match="impl"):
        lk.CategoricalCrossEntropy(impl="fused")(np.full((2, 2), 0.5), np.array([0, 1]))
    half = lk.SoftmaxCrossEntropy(impl="fused")(np.zeros((2, 3), dtype=np.float16), np.array([0, 1]))
    assert half.dtype == np.float16  # computed in float32 by the kernel, returned in the input's dtype
    # a Hessian has no kernel: the reference's (test_impl_fused_takes_second_order_calls_on_the_reference)
    np.testing.assert_array_equal(lk.SoftmaxCrossEntropy(impl="fused").hessian_diag(np.zeros((2, 3)), np.array([0, 1])),
                                  lk.SoftmaxCrossEntropy(impl="xp").hessian_diag(np.zeros((2, 3)), np.array([0, 1])))
    assert fused.available()


def test_compiled_kernels_are_cached_across_processes():
    code = ("import numpy as np, losskit as lk\n"
            "lk.SoftmaxCrossEntropy(impl='fused')(np.zeros((4, 3)), np.array([0, 1, 2, 0]))\n"
            "from losskit import fused\n"
            "from losskit.fused import kernels\n"
            "s = fused.serial_twin(kernels.softmax_ce_short_rows).stats  # a small call: the serial twin\n"
            "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()))\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # fills the cache if empty
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    hits, misses = (int(v) for v in out.stdout.split())
    assert hits >= 1 and misses == 0


def test_a_row_sweeps_kernels_are_cached_across_processes_and_compiled_again_when_a_callee_changes(tmp_path):
    """The kernels made by losskit.fused.kernels.row_sweep (the JSD's, distillation's), here of a row in a
    package of the test's own that calls a compiled helper in another of its modules: a second process
    loads the parallel kernel and its serial twin from the disk cache; after an edit of the helper
    alone, a third process compiles them again and gives the edited arithmetic. Failed before: with the
    row's dispatcher in the kernel's closure (it pickles with a fresh uuid, so the key changed in every
    process: 0 hits), with a key of the row's own code (a stale hit), and with the row itself cached on
    disk (numba keyed it on its own file: the kernels compiled again, linking the row's stale code)."""
    package = tmp_path / "synth"
    package.mkdir()
    (package / "__init__.py").write_text("")
    helper = package / "helper.py"
    helper.write_text("import numba\n\n\n@numba.njit(cache=True)\ndef shift(x):\n    return x + 1.0\n")
    (package / "row.py").write_text(
        "from losskit.fused.kernels import row_sweep\n"
        "from synth.helper import shift\n\n\n"
        "def row(xp, a, b, c, s, u, v):\n"
        "    c[0] = shift(a[0]) * b[0]\n"
        "    return s * (c[0] + u + v), False\n\n\n"
        "kernel = row_sweep(row, 1, True)\n")
    code = ("import numpy as np\n"
            "from losskit import fused\n"
            "from synth.row import kernel\n"
            "twin = fused.serial_twin(kernel)\n"
            "values = []\n"
            "for k in (kernel, twin):\n"
            "    loss, flags = np.zeros(2), np.zeros(2, np.uint8)\n"
            "    k(0.0, np.ones((2, 3)), np.full((2, 3), 2.0), np.zeros((2, 3)), np.ones(2), 0.5, 0.25, loss, flags)\n"
            "    values.append(loss.sum())\n"
            "print(*(sum(getattr(k.stats, s).values()) for k in (kernel, twin) for s in ('cache_hits', "
            "'cache_misses')), *values)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run():
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        fields = out.stdout.split()
        return [int(v) for v in fields[:4]], [float(v) for v in fields[4:]]

    run()  # fills the empty cache
    counts, values = run()
    assert counts == [1, 0, 1, 0] and values == [2 * 4.75, 2 * 4.75], (counts, values)  # (1 + 1) 2 + 0.75
    helper.write_text(helper.read_text().replace("x + 1.0", "x + 2.0"))
    counts, values = run()
    assert counts == [0, 1, 0, 1] and values == [2 * 6.75, 2 * 6.75], (counts, values)  # (1 + 2) 2 + 0.75


@pytest.mark.parametrize(("cls", "make_target"), [
    (lk.SoftmaxCrossEntropy, lambda z: RNG.integers(0, z.shape[1], size=z.shape[0])),
    (lk.BinaryCrossEntropyWithLogits, lambda z: RNG.uniform(size=z.shape)),
    (lk.MultilabelCrossEntropy, lambda z: (RNG.uniform(size=z.shape) > 0.5).astype(float)),
    (lk.MeanSquaredError, lambda z: RNG.normal(size=z.shape)),
])
@pytest.mark.parametrize("in_place", [False, True])
def test_out_receives_the_gradient_even_when_it_is_the_input(cls, make_target, in_place):
    z = RNG.normal(size=(12, 6)) * 4
    t = make_target(z)
    ref_value, ref_grad = cls(impl="xp", reduction="mean").value_and_grad(z, t)
    x = z.copy()
    out = x if in_place else np.empty_like(x)
    value, grad = cls().value_and_grad(x, t, out=out)
    assert grad is out
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(out, ref_grad, rtol=1e-10, atol=1e-15)


def test_out_is_checked_and_unhandled_calls_still_fill_it():
    z = np.zeros((3, 4))
    with pytest.raises(lk.LossInputError, match="out"):
        lk.SoftmaxCrossEntropy().value_and_grad(z, np.array([0, 1, 2]), out=np.empty((4, 3)))
    probs = np.full((3, 4), 0.25)
    out = np.empty_like(probs)
    value, grad = lk.CategoricalCrossEntropy().value_and_grad(probs, np.array([0, 1, 2]), out=out)
    assert grad is out
    np.testing.assert_allclose(grad, lk.CategoricalCrossEntropy().grad(probs, np.array([0, 1, 2])))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_sure_row_keeps_its_tiny_loss(dtype):
    """lse - z_y for a row whose label leads by 40: about 4.25e-18, not 0 (log1p normaliser)."""
    z = np.array([[40.0, 0.0, 0.0]], dtype)
    value, grad = lk.SoftmaxCrossEntropy(impl="fused").value_and_grad(z, np.array([0]))
    exact = 2 * np.exp(-40.0)  # log1p(2 e^-40) to double precision
    np.testing.assert_allclose(float(value), exact, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(grad[0, 0], -exact, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_torch_cpu_tensors_take_the_kernels_through_zero_copy_views():
    torch = pytest.importorskip("torch")
    z = torch.randn(16, 9, dtype=torch.float64)
    y = torch.randint(0, 9, (16,), dtype=torch.int32)
    value, grad = lk.SoftmaxCrossEntropy(impl="fused", label_smoothing=0.1).value_and_grad(z, y)
    ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp", label_smoothing=0.1).value_and_grad(z, y)
    assert isinstance(value, torch.Tensor) and isinstance(grad, torch.Tensor) and grad.dtype == torch.float64
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-15)
    # out=: the kernel writes the gradient into the tensor's own memory (a NaN-filled buffer, so an
    # unwritten entry shows), and out=z overwrites the logits in place, zero-copy both ways
    out = torch.full_like(z, float("nan"))
    address = out.data_ptr()
    _, written = lk.SoftmaxCrossEntropy(impl="fused", label_smoothing=0.1).value_and_grad(z, y, out=out)
    assert written is out and out.data_ptr() == address
    torch.testing.assert_close(out, ref_grad, rtol=1e-10, atol=1e-15)
    in_place = z.clone()
    address = in_place.data_ptr()
    value, written = lk.SoftmaxCrossEntropy(impl="fused", label_smoothing=0.1).value_and_grad(
        in_place, y, out=in_place)
    assert written is in_place and in_place.data_ptr() == address
    torch.testing.assert_close(value, ref_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(in_place, ref_grad, rtol=1e-10, atol=1e-15)


def test_numba_is_a_default_dependency_so_a_plain_install_is_compiled():
    from importlib.metadata import requires

    plain = [r for r in requires("losskit") if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("numba") for r in plain), plain
    assert lk.SoftmaxCrossEntropy(impl="fused")(np.zeros((2, 3), np.float32), np.array([0, 1])) > 0


def test_float32_rows_of_a_large_vocabulary_keep_float32_precision():
    """Row sums run in float32 SIMD lanes; against the float64 reference the float32 kernel stays
    within a few float32 ulps of the loss and of each probability, at K = 128256."""
    z64 = RNG.normal(size=(8, 128256)) * 4
    y = RNG.integers(0, 128256, size=8)
    ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp", reduction="none").value_and_grad(z64, y)
    z32 = z64.astype(np.float32)
    value, grad = lk.SoftmaxCrossEntropy(impl="fused", reduction="none").value_and_grad(z32, y)
    # the float32 input itself is rounded: compare with the reference of the rounded input
    ref_value, ref_grad = lk.SoftmaxCrossEntropy(impl="xp", reduction="none").value_and_grad(z32.astype(np.float64), y)
    np.testing.assert_allclose(value, ref_value, rtol=4 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=4 * np.finfo(np.float32).eps * np.abs(ref_grad).max())


def test_gradient_memory_is_reused_only_after_every_view_of_it_is_gone():
    import gc

    z = RNG.normal(size=(512, 1000))
    y = np.arange(512) % 1000
    loss = lk.SoftmaxCrossEntropy()
    _, grad = loss.value_and_grad(z, y)
    address, expected = grad.ctypes.data, grad[::2].copy()
    view = grad[::2]
    del grad
    gc.collect()
    _, other = loss.value_and_grad(z * 3, y)  # must not land on memory `view` still shows
    assert other.ctypes.data != address
    np.testing.assert_array_equal(view, expected)
    del view, other
    gc.collect()
    _, again = loss.value_and_grad(z, y)
    assert again.flags.writeable and again.flags.owndata is False
    np.testing.assert_allclose(again, lk.SoftmaxCrossEntropy(impl="xp").grad(z, y), rtol=1e-10, atol=1e-15)


ELEMENTWISE = sorted(name for name, (cls, _) in lk.REGISTRY.items() if issubclass(cls, lk.ElementwiseLoss))
#: a target of each kind, and values outside it that the compiled kernel must flag for the reference to refuse
_TARGETS = {
    "binary": (lambda shape: RNG.uniform(size=shape), [np.nan, 1.5, -0.5]),
    "sign": (lambda shape: RNG.choice([-1.0, 0.0, 1.0], size=shape), [np.nan, 0.5, 2.0]),
    "value": (lambda shape: RNG.normal(size=shape), [np.nan]),
    "count": (lambda shape: np.where(RNG.uniform(size=shape) < 0.2, 0.0, RNG.gamma(2.0, size=shape)), [np.nan, -1.0]),
    "positive": (lambda shape: RNG.gamma(2.0, size=shape) + 0.1, [np.nan, 0.0, -1.0]),
}


def _elementwise_call(name, dtype):
    cls = lk.REGISTRY[name][0]
    loss = cls()
    shape = (33, 8)
    z = (2 * RNG.normal(size=shape)).astype(dtype)
    target, bad = _TARGETS[loss.target_domain()]
    weight = RNG.uniform(0.5, 2.0, size=shape[:-1] if loss._spans_last_axis(2) else shape).astype(dtype)
    return cls, z, target(shape).astype(dtype), weight, bad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_kernel_matches_the_array_api_path(name, reduction, dtype):
    # each compiled variant (gradient or not, per-element values stored or not, weighted or not) against
    # the reference, to an absolute bound (for float32 the rounding of the inputs' size)
    cls, z, y, weight, _ = _elementwise_call(name, dtype)
    atol = {np.float64: 1e-12, np.float32: 2e-5}[dtype]
    for call in ({}, {"weight": weight}):
        fast, ref = _both(cls, {"reduction": reduction}, z, y, **call)
        np.testing.assert_allclose(fast[0], ref[0], rtol=TOL[dtype], atol=atol)
        np.testing.assert_allclose(fast[1], ref[1], rtol=TOL[dtype], atol=atol)
        value = cls(impl="fused", reduction=reduction)(z, y, **call)
        np.testing.assert_allclose(value, ref[0], rtol=TOL[dtype], atol=atol)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_every_elementwise_kernel_flags_a_target_outside_its_domain(name):
    # the kernel checks the target in its own pass; a row it flags goes to the reference, whose error
    # is the one raised: the same words on both paths
    cls, z, y, _, bad = _elementwise_call(name, np.float64)
    for value in bad:
        t = y.copy()
        t[17, 3] = value
        messages = []
        for impl in ("fused", "xp"):
            with pytest.raises(lk.LossInputError) as info:
                cls(impl=impl).value_and_grad(z, t)
            messages.append(str(info.value))
        assert messages[0] == messages[1] and "target" in messages[0]


class _CappedSquare(lk.ElementwiseLoss):
    """A loss with a check of its own that no target kind expresses: targets at most 5."""

    def value(self, xp, z, y):
        return (z - y) * (z - y)

    def derivative(self, xp, z, y):
        return 2 * (z - y)

    def check_target(self, xp, target):
        if bool(xp.any(target > 5)):
            raise lk.LossInputError("target: expected values at most 5")


def test_a_check_target_of_ones_own_runs_before_the_kernel():
    z, y = np.zeros(10), np.arange(10.0)
    for impl in ("fused", "xp"):
        with pytest.raises(lk.LossInputError, match="at most 5"):
            _CappedSquare(impl=impl).value_and_grad(z, y)
    value, grad = _CappedSquare(impl="fused").value_and_grad(z, np.minimum(y, 5))
    np.testing.assert_allclose(grad, -2 * np.minimum(y, 5) / 10)


# -- the unit-axis kernels (losskit.fused.pairs): Gaussian NLL and the quantile loss ------------------

QUANTILES = [0.1, 0.5, 0.9]
UNIT_LOSSES = {"gaussian": (lk.GaussianNLL, {}, 2), "quantile": (lk.QuantileLoss, {"quantiles": QUANTILES}, 3),
               "one quantile": (lk.QuantileLoss, {"quantiles": 0.3}, 1)}


def _unit_inputs(units, n, dtype, rng):
    z = rng.normal(size=(n, units)) * 2
    if units == 2:
        z[:, 1] = rng.uniform(-6, 6, size=n)  # log-variances: e^(-s/2) from 0.05 to 20
    return z.astype(dtype), (rng.normal(size=n) * 2).astype(dtype)


def _kernel_answers(loss, z, target, **call):
    """Whether the compiled kernel itself answers this call (not UNHANDLED, no block flagged)."""
    from losskit.losses import _compiled

    result = _compiled.run(loss, loss.plan(z, target, **call), True, None)
    return result is not None and result is not _compiled.UNHANDLED


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("n", [7, 4099, 140_001])  # one short block; blocks and a tail, serial; parallel
@pytest.mark.parametrize("name", list(UNIT_LOSSES))
def test_unit_kernels_match_the_float64_reference(name, n, reduction, dtype):
    """Value and gradient of the kernel in the input's dtype against the array-API path in float64 on the
    same (rounded) inputs, with weights (a zero among them) and with a normalizer; the value alone too."""
    cls, options, units = UNIT_LOSSES[name]
    rng = np.random.default_rng(n)
    z, y = _unit_inputs(units, n, dtype, rng)
    weight = rng.uniform(0.1, 2.0, size=n)
    weight[3] = 0.0
    fused_loss = cls(impl="fused", reduction=reduction, **options)
    reference = cls(impl="xp", reduction=reduction, **options)
    # float32: a few ulps per term, and the block sums' rounding in float32
    rtol = {np.float64: 1e-12, np.float32: 2e-5}[dtype]
    for call in ({"weight": weight}, {"normalizer": 5.0}, {}):
        assert _kernel_answers(fused_loss, z, y, **call)
        value, grad = fused_loss.value_and_grad(z, y, **call)
        ref_value, ref_grad = reference.value_and_grad(z.astype(np.float64), y.astype(np.float64), **call)
        assert value.dtype == grad.dtype == dtype and grad.shape == z.shape
        atol = rtol * float(np.max(np.abs(ref_value)))  # a per-example value can cancel to about 0
        np.testing.assert_allclose(value, ref_value, rtol=rtol, atol=atol)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * float(np.max(np.abs(ref_grad))))
        np.testing.assert_allclose(fused_loss(z, y, **call), ref_value, rtol=rtol, atol=atol)


def test_unit_kernels_are_the_default_path_on_numpy():
    from losskit.losses import _compiled

    for name, (cls, options, units) in UNIT_LOSSES.items():
        assert cls.kernel_name() == ("gaussian_nll" if cls is lk.GaussianNLL else "quantile"), name
        for dtype in (np.float32, np.float64):
            # 100k elements and more: a first call compiles in place (smaller: the reference answers
            # until the background compile is done)
            z, y = _unit_inputs(units, 150_000 // units, dtype, RNG)
            assert _kernel_answers(cls(impl="auto", **options), z, y)
            small = _unit_inputs(units, 20, dtype, RNG)
            cls(impl="auto", **options).value_and_grad(*small)
            _compiled.wait_for_compiles()
            assert _kernel_answers(cls(impl="auto", **options), *small)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_kernel_extremes_stay_finite_and_exact(dtype):
    """r = (y - m) e^(-s/2): neither (y - m)^2 (1e40 overflows float32) nor e^(-s) (e^80) is formed alone.
    Against the closed form in 50-digit mpmath, on the rounded inputs."""
    import mpmath

    mpmath.mp.dps = 50
    points = [(0.0, 40.0, 1e20), (0.0, -10.0, 1e15), (1.0, -80.0, 1.0 + 2.0**-10), (0.0, 80.0, 5.0),
              (3.0, -80.0, 3.0), (3.0, 80.0, 3.0), (-2.0, 0.0, -2.0)]
    z = np.array([[m, s] for m, s, _ in points], dtype=dtype)
    y = np.array([t for _, _, t in points], dtype=dtype)
    loss = lk.GaussianNLL(impl="fused", reduction="none")
    assert _kernel_answers(loss, z, y)
    value, grad = loss.value_and_grad(z, y)
    eps = float(np.finfo(dtype).eps)
    for (m, s), t, v, g in zip(z.tolist(), y.tolist(), value, grad, strict=True):
        m_, s_, t_ = mpmath.mpf(m), mpmath.mpf(s), mpmath.mpf(t)
        sq = (t_ - m_) ** 2 * mpmath.exp(-s_)
        exact = (s_ + sq + mpmath.log(2 * mpmath.pi)) / 2
        assert np.isfinite(v) and abs(v - float(exact)) <= 4 * eps * abs(float(exact))
        for got, want in zip(g, ((m_ - t_) * mpmath.exp(-s_), (1 - sq) / 2), strict=True):
            assert abs(got - float(want)) <= 4 * eps * max(abs(float(want)), 1e-30)


def test_quantile_kernel_at_a_tie_takes_one_minus_q():
    """At yhat == y the loss is 0 and the gradient 1 - q (XGBoost's choice), in both dtypes; on each
    side of the tie -q and 1 - q."""
    for dtype in (np.float32, np.float64):
        y = np.array([1.5, -2.0, 0.0], dtype=dtype)
        z = np.stack([y, y - 1, y + 1], axis=-1).astype(dtype)  # tie, below the target, above it
        loss = lk.QuantileLoss(impl="fused", quantiles=[0.2, 0.7, 0.9], reduction="sum")
        assert _kernel_answers(loss, z, y)
        value, grad = loss.value_and_grad(z, y)
        q = np.array([0.2, 0.7, 0.9], dtype=dtype)
        expected = np.broadcast_to([1 - q[0], -q[1], 1 - q[2]], z.shape)
        np.testing.assert_array_equal(grad, expected.astype(dtype))
        np.testing.assert_allclose(value, 3 * (0.7 * 1 + 0.1 * 1), rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("name", list(UNIT_LOSSES))
def test_unit_kernels_flag_a_non_finite_input_for_the_reference(name):
    cls, options, units = UNIT_LOSSES[name]
    z, y = _unit_inputs(units, 50, np.float64, RNG)
    for bad in (np.inf, -np.inf):
        x = z.copy()
        x[7, 0] = bad
        loss = cls(impl="fused", reduction="none", **options)
        assert not _kernel_answers(loss, x, y)
        value, grad = loss.value_and_grad(x, y)
        ref_value, ref_grad = cls(impl="xp", reduction="none", **options).value_and_grad(x, y)
        np.testing.assert_array_equal(value, ref_value)
        np.testing.assert_array_equal(grad, ref_grad)
        assert value[7] == np.inf


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("name", list(UNIT_LOSSES))
def test_unit_kernels_write_out_even_when_it_is_the_input(name, in_place):
    cls, options, units = UNIT_LOSSES[name]
    z, y = _unit_inputs(units, 5001, np.float64, RNG)
    ref_value, ref_grad = cls(impl="xp", **options).value_and_grad(z, y)
    x = z.copy()
    out = x if in_place else np.empty_like(x)
    value, grad = cls(impl="fused", **options).value_and_grad(x, y, out=out)
    assert grad is out
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(out, ref_grad, rtol=1e-12, atol=1e-15)


def test_torch_cpu_tensors_take_the_unit_kernels():
    torch = pytest.importorskip("torch")
    for cls, options, units in UNIT_LOSSES.values():
        z, y = _unit_inputs(units, 300, np.float32, RNG)
        loss = cls(impl="fused", **options)
        assert _kernel_answers(loss, torch.from_numpy(z), torch.from_numpy(y))
        value, grad = loss.value_and_grad(torch.from_numpy(z), torch.from_numpy(y))
        ref_value, ref_grad = cls(impl="xp", **options).value_and_grad(z, y)
        assert isinstance(grad, torch.Tensor) and grad.dtype == torch.float32
        np.testing.assert_allclose(value.item(), ref_value, rtol=2e-6)
        np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=2e-6, atol=1e-9)


def _edge_rows(dtype, classes, n=700):
    """``(z [n, K], labels, scale)``: random rows and, in rows 1-9, a kernel's edge cases."""
    rng = np.random.default_rng(classes)
    z = (rng.normal(size=(n, classes)) * 4).astype(dtype)
    labels = rng.integers(0, classes, n).astype(np.int64)
    z[1] = 0  # every class tied at the max
    z[2, :], z[2, labels[2]] = 0, 90  # a sure row: loss (K - 1) e^-90, subnormal terms in float32
    if classes > 1:
        z[3, (labels[3] + 1) % classes] = -np.inf  # a -inf logit: exp 0, a finite CE
    z[4, 0] = np.inf  # non-finite rows are flagged for the reference
    z[5, 0] = np.nan
    z[6] = -np.inf
    labels[7], labels[8] = -1, classes  # out of range: flagged
    scale = rng.uniform(0.5, 2, n).astype(dtype)
    scale[9] = 0
    # read-only, as the library passes every input: a writable one is another numba type, compiled again
    return _frozen(z), _frozen(labels), _frozen(scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 10, 31, 256])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_short_rows_kernel_is_the_rows_kernel_arithmetic_in_blocks(dtype, classes, smoothing):
    """Rows of at most SHORT_ROW classes take the blocked kernel: the same value and gradient as the
    row-by-row kernel to an ulp or two (only the order of a row's sum may differ), the same flags,
    and the same edge rows: a sure row's tiny loss, ties at the max, -inf logits, non-finite rows,
    labels out of range, weight 0. Blocks of whole rows: 700 rows cross a block at every K here."""
    from losskit.fused import kernels

    assert classes <= kernels.SHORT_ROW
    z, labels, scale = _edge_rows(dtype, classes)
    n = len(z)
    results = []
    for kernel in (kernels.softmax_ce_rows, kernels.softmax_ce_short_rows):
        for twin in (kernel, fused.serial_twin(kernel)):
            loss, grad, flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
            twin(z, labels, scale, smoothing, loss, grad, True, flags)
            results.append((loss, grad, flags))
            value_only = np.full(n, -1.0)  # the same sums without a gradient: the same bits
            twin(z, labels, scale, smoothing, value_only, np.empty((1, classes), dtype), False, np.zeros(n, np.uint8))
            np.testing.assert_array_equal(value_only[flags == 0], loss[flags == 0])
    (loss, grad, flags), *others = results
    # with smoothing, the -inf logit's row has an infinite loss: the reference says so
    assert flags[4:9].all() and flags[:3].sum() == 0 and flags[9:].sum() == 0
    assert flags[3] == (smoothing > 0 and classes > 1)
    ok = flags == 0
    eps = np.finfo(dtype).eps
    for other_loss, other_grad, other_flags in others:
        np.testing.assert_array_equal(other_flags, flags)
        np.testing.assert_allclose(other_loss[ok], loss[ok], rtol=4 * eps, atol=0)
        np.testing.assert_allclose(other_grad[ok], grad[ok], rtol=8 * eps, atol=8 * eps * np.abs(grad[ok]).max())
    assert loss[9] == 0 and np.all(grad[9] == 0)
    if classes > 1 and smoothing == 0:  # the sure row keeps its tiny loss, (K - 1) e^-90
        np.testing.assert_allclose(loss[2] / scale[2], (classes - 1) * np.exp(-90.0), rtol=8 * eps)


def _check_blocked_rows(kernel, inputs, z, reference, ulps):
    """A blocked kernel ``kernel(*inputs, scaled_loss, grad, with_grad, flags)``, its parallel form and its
    serial twin, against a row kernel's ``(loss, grad, flags)`` on ``z``'s rows: the same flags, the
    losses and gradients within ``ulps`` = (loss, gradient) ulps, the value alone the same bits, and row 9
    (weight 0) 0."""
    ref_loss, ref_grad, ref_flags = reference
    n, eps = len(z), np.finfo(z.dtype).eps
    for compiled in (kernel, fused.serial_twin(kernel)):
        loss, grad, flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
        compiled(*inputs, loss, grad, True, flags)
        np.testing.assert_array_equal(flags, ref_flags)
        ok = flags == 0
        np.testing.assert_allclose(loss[ok], ref_loss[ok], rtol=ulps[0] * eps, atol=0)
        np.testing.assert_allclose(grad[ok], ref_grad[ok], rtol=ulps[1] * eps,
                                   atol=8 * eps * np.abs(ref_grad[ok]).max())
        value_only = np.full(n, -1.0)
        compiled(*inputs, value_only, np.empty((1, z.shape[1]), z.dtype), False, np.zeros(n, np.uint8))
        np.testing.assert_array_equal(value_only[ok], loss[ok])
        assert loss[9] == 0 and np.all(grad[9] == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 10, 31, 256])
@pytest.mark.parametrize(("smoothing", "epsilon"), [(0.0, 1.0), (0.1, -0.5), (0.2, 2.0)])
def test_poly_short_rows_kernel_is_the_poly_row_kernel_arithmetic_in_blocks(dtype, classes, smoothing, epsilon):
    """Poly-1 of labels on rows of at most SHORT_ROW classes takes softmax CE's blocked rows with its epsilon
    terms (poly_short_rows): the row kernel's (softmax_ce_rows with epsilon) values and gradients to a few ulps, its
    flags and edge rows (a sure row's tiny loss, ties, -inf and +inf logits, NaN, labels out of range, weight
    0); the value alone the same bits; the parallel kernel and its twin."""
    from losskit.fused import kernels

    z, labels, scale = _edge_rows(dtype, classes)
    n = len(z)
    ref_loss, ref_grad, ref_flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
    kernels.softmax_ce_rows(z, labels, scale, smoothing, ref_loss, ref_grad, True, ref_flags, epsilon)
    _check_blocked_rows(kernels.poly_short_rows, (z, labels, scale, smoothing, epsilon), z,
                        (ref_loss, ref_grad, ref_flags), ulps=(4, 8))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 10, 31, 256])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_short_rows_kernel_is_the_focal_row_kernel_arithmetic_in_blocks(dtype, classes, gamma):
    """Softmax focal of labels without smoothing on rows of at most SHORT_ROW classes takes softmax CE's
    blocked statistics and the label's term (focal_short_rows): the row kernel's (softmax_ce_rows with alpha)
    values and gradients to a few ulps, its flags and edge rows, per-class alpha; the value alone the same
    bits; the parallel kernel and its twin."""
    from losskit.fused import kernels

    z, labels, scale = _edge_rows(dtype, classes)
    n = len(z)
    alpha = _frozen(np.linspace(0.25, 1.0, classes).astype(dtype))
    ref_loss, ref_grad, ref_flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
    kernels.softmax_ce_rows(z, labels, scale, 0.0, ref_loss, ref_grad, True, ref_flags, 0.0, alpha, gamma)
    _check_blocked_rows(kernels.focal_short_rows, (z, labels, alpha, scale, gamma), z,
                        (ref_loss, ref_grad, ref_flags), ulps=(8, 16))


#: the losses of labels that softmax CE's row kernel takes on rows of more than SHORT_ROW classes: (loss
#: class, ulps of the value and the gradient against the array-API path)
LABEL_ROW_LOSSES = {
    "softmax_ce": (lk.SoftmaxCrossEntropy, (4, 8)),
    "poly": (lk.PolyCrossEntropy, (4, 8)),
    "focal": (lk.SoftmaxFocalLoss, (8, 16)),
}


def _label_row_case(case, smoothing, classes, dtype):
    """``(softmax_ce_rows' arguments after its outputs, the loss's options)`` of ``case``."""
    if case == "softmax_ce":
        return (), {"label_smoothing": smoothing}
    if case == "poly":
        return (2.0,), {"label_smoothing": smoothing, "epsilon": 2.0}
    alpha = np.linspace(0.25, 1.0, classes).astype(dtype)
    return (0.0, alpha, 2.0), {"alpha": alpha, "gamma": 2.0}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [257, 300, 512, 1300])  # 512: no shorter last chunk
@pytest.mark.parametrize(("case", "smoothing"), [("softmax_ce", 0.0), ("softmax_ce", 0.1), ("poly", 0.0),
                                                 ("poly", 0.1), ("focal", 0.0)])
def test_long_rows_kernel_against_the_reference_with_or_without_the_gradient_and_in_place(dtype, classes, case,
                                                                                         smoothing):
    """Softmax CE, Poly-1 and softmax focal (no smoothing) rows of labels over more than SHORT_ROW classes (one
    exp a logit, stored where the gradient goes, or in a chunk of scratch without one): the array-API path's
    value and gradient to a few ulps on the edge rows (a sure row's tiny loss, ties, a -inf logit; the
    non-finite rows and labels out of range flagged, a weight-0 row 0), the value alone the same bits, and
    the parallel kernel writing the gradient over the logits themselves (linear_cross_entropy's call) the
    same bits as into a buffer of its own (found in the clean-clone run: not always its serial twin's bits,
    with smoothing in float64). Poly-1's and focal's took each exp twice before (their row kernels of dense
    targets)."""
    from losskit.fused import kernels

    cls, ulps = LABEL_ROW_LOSSES[case]
    z, labels, scale = _edge_rows(dtype, classes, n=40)
    extra, loss_options = _label_row_case(case, smoothing, classes, dtype)
    n = len(z)
    ok = np.ones(n, bool)
    ok[4:9] = False
    ok[3] = not smoothing  # with smoothing the -inf logit's row has an infinite loss: the reference says so
    ref_loss, ref_grad = [], []
    for i in np.flatnonzero(ok):  # each row alone: the reference's per-row loss and gradient, in float64
        one = cls(reduction="sum", impl="xp", **loss_options)
        value, grad = one.value_and_grad(z[i:i + 1].astype(np.float64), labels[i:i + 1])
        ref_loss.append(float(scale[i]) * float(value))
        ref_grad.append(float(scale[i]) * grad[0])
    eps = np.finfo(dtype).eps
    results = []  # the parallel kernel's, then its serial twin's (compiled apart: its sums may differ in an ulp)
    for twin in (kernels.softmax_ce_rows, fused.serial_twin(kernels.softmax_ce_rows)):
        loss, grad, flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
        twin(z, labels, scale, smoothing, loss, grad, True, flags, *extra)
        results.append((loss, grad))
        np.testing.assert_array_equal(flags == 0, ok)
        sure = np.flatnonzero(ok) == 2  # the sure row
        np.testing.assert_allclose(loss[ok][~sure], np.array(ref_loss)[~sure], rtol=ulps[0] * eps, atol=0)
        # its terms e^-90 are float32 subnormals, each within 2^-150 of its value (8.6e-7 relative, 7 eps),
        # and focal's loss goes as their sum cubed (q_y^2 log p_y)
        sure_rtol = 3 * 2.0 ** -150 / np.exp(-90.0) if case == "focal" and dtype == np.float32 else ulps[0] * eps
        np.testing.assert_allclose(loss[2], np.array(ref_loss)[sure][0], rtol=sure_rtol, atol=0)
        np.testing.assert_allclose(grad[ok], np.array(ref_grad), rtol=ulps[1] * eps,
                                   atol=ulps[1] * eps * np.abs(ref_grad).max())
        assert loss[9] == 0 and np.all(grad[9] == 0)
        value_only = np.full(n, -1.0)
        twin(z, labels, scale, smoothing, value_only, np.empty((1, classes), dtype), False, np.zeros(n, np.uint8),
             *extra)
        np.testing.assert_array_equal(value_only[ok], loss[ok])
    in_place = z.copy()
    loss_in_place, flags = np.full(n, -1.0), np.zeros(n, np.uint8)
    kernels.softmax_ce_rows(in_place, labels, scale, smoothing, loss_in_place, in_place, True, flags, *extra)
    parallel_loss, parallel_grad = results[0]
    np.testing.assert_array_equal(loss_in_place[ok], parallel_loss[ok])
    np.testing.assert_array_equal(in_place[ok], parallel_grad[ok])
    if case == "softmax_ce" and smoothing == 0:  # the sure row keeps its tiny loss, (K - 1) e^-90
        np.testing.assert_allclose(loss[2] / scale[2], (classes - 1) * np.exp(-90.0), rtol=8 * eps)


@pytest.mark.parametrize(("cls", "options"), [(lk.SoftmaxCrossEntropy, {}), (lk.PolyCrossEntropy, {"epsilon": -1.0}),
                                             (lk.SoftmaxFocalLoss, {"gamma": 2.0})])
@pytest.mark.parametrize("rows", [30, 30_000])  # the serial twin; the parallel kernel, out= the logits themselves
@pytest.mark.parametrize("classes", [10, 300])  # the blocked kernels; the row kernels
def test_rows_of_weight_0_cost_0_whatever_their_logits(cls, options, rows, classes):
    """An ignored row (weight 0) of NaN, -inf or overflowing logits: the kernels answer (their loss and
    gradient 0 there). Found in review: such a row sent the whole call to the array-API path, and with
    out= the logits themselves made it raise; softmax CE's row kernel (more than 256 classes) did so too."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(rows, classes)) * 3
    y = rng.integers(0, classes, rows)
    y[:3] = -100
    z[0], z[1], z[2] = np.nan, -np.inf, np.where(np.arange(classes) % 2, 1e308, -1e308)
    loss = cls(impl="fused", ignore_index=-100, **options)
    assert _kernel_answers(loss, z, y)
    ref_value, ref_grad = cls(impl="xp", ignore_index=-100, **options).value_and_grad(np.nan_to_num(z), y)
    value, grad = loss.value_and_grad(z, y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)
    assert np.all(grad[:3] == 0)
    buffer = z.copy()
    value, grad = loss.value_and_grad(buffer, y, out=buffer)
    assert grad is buffer and np.all(buffer[:3] == 0)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)


def test_a_focal_alpha_of_the_wrong_length_raises_on_every_call():
    """A per-class alpha whose length is not K: the kernels read alpha[y] unchecked (found in review: the
    first call raised through the reference, the next ones read past the array), so it never reaches them."""
    z, y = np.zeros((4, 3)), np.array([0, 1, 2, 2])
    for alpha in ((0.5, 0.5), (0.5, 0.5, 0.5, 0.5)):
        for impl in ("auto", "fused", "auto"):
            with pytest.raises(lk.LossInputError, match="alpha"):
                lk.SoftmaxFocalLoss(alpha=alpha, impl=impl).value_and_grad(z, y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 21, 33, 300])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_columns_kernel_is_the_rows_kernel_arithmetic_across_positions(dtype, classes, smoothing):
    """A class axis between others (``[N, K, S]``, PyTorch's ``(N, C, d)``) takes softmax_ce_columns, SIMD
    across positions: the row kernel's value and gradient to a few ulps (its sums in another order, over
    chunks of COLUMN_CHUNK classes), the same flags and the same edge rows. 2 x 350 positions: a tile of
    COLUMN_TILE and a shorter one per sample; 33 and 300 classes cross a chunk."""
    from losskit.fused import kernels

    z, labels, scale = _edge_rows(dtype, classes)
    rows_loss, rows_grad, rows_flags = np.full(len(z), -1.0), np.full_like(z, -1), np.zeros(len(z), np.uint8)
    kernels.softmax_ce_rows(z, labels, scale, smoothing, rows_loss, rows_grad, True, rows_flags)
    z3 = _frozen(np.ascontiguousarray(z.reshape(2, 350, classes).transpose(0, 2, 1)))  # position (n, s) = row n * 350 + s
    eps = np.finfo(dtype).eps
    for twin in (kernels.softmax_ce_columns, fused.serial_twin(kernels.softmax_ce_columns)):
        loss, grad3, flags = np.full(len(z), -1.0), np.full_like(z3, -1), np.zeros(len(z), np.uint8)
        twin(z3, labels, scale, smoothing, loss, grad3, True, flags)
        grad = grad3.transpose(0, 2, 1).reshape(z.shape)
        np.testing.assert_array_equal(flags, rows_flags)
        ok = flags == 0
        np.testing.assert_allclose(loss[ok], rows_loss[ok], rtol=4 * eps, atol=0)
        np.testing.assert_allclose(grad[ok], rows_grad[ok], rtol=8 * eps, atol=8 * eps * np.abs(rows_grad[ok]).max())
        value_only = np.full(len(z), -1.0)  # the same sums without a gradient: the same bits
        twin(z3, labels, scale, smoothing, value_only, np.empty((1, 1, 0), dtype), False, np.zeros(len(z), np.uint8))
        np.testing.assert_array_equal(value_only[ok], loss[ok])
        assert loss[9] == 0 and np.all(grad[9] == 0)
        if classes > 1 and smoothing == 0:  # the sure row keeps its tiny loss, (K - 1) e^-90
            np.testing.assert_allclose(loss[2] / scale[2], (classes - 1) * np.exp(-90.0), rtol=8 * eps)
        # one scale for every position ([1], as a 0-d plan scale is passed): as that scale in every row
        one, one_grad3 = np.full(len(z), -1.0), np.full_like(z3, -1)
        twin(z3, labels, _frozen(scale[:1].copy()), smoothing, one, one_grad3, True, np.zeros(len(z), np.uint8))
        every, every_grad3 = np.full(len(z), -1.0), np.full_like(z3, -1)
        twin(z3, labels, _frozen(np.full(len(z), scale[0])), smoothing, every, every_grad3, True, np.zeros(len(z), np.uint8))
        np.testing.assert_array_equal(one[ok], every[ok])
        np.testing.assert_array_equal(one_grad3.transpose(0, 2, 1)[ok.reshape(2, 350)],
                                      every_grad3.transpose(0, 2, 1)[ok.reshape(2, 350)])


def _twin_arguments(name, dtype):
    """One call's arguments of the kernel ``name`` (module.function), laid out as losskit.losses._compiled
    lays them out, what a kernel reads read-only (numba compiles read-only arrays apart): small, as only
    their types matter here."""

    rows, width, pairs = 4, 64, 64
    z, dense = _frozen(np.zeros((rows, width), dtype)), _frozen(np.full((rows, width), 1 / width, dtype))
    labels, scale = _frozen(np.zeros(rows, np.int64)), _frozen(np.ones(rows, dtype))
    loss, grad, flags = np.empty(rows), np.empty((rows, width), dtype), np.zeros(rows, np.uint8)
    elementwise = (np.empty(rows), np.empty((0, 0), dtype), grad, True, flags)
    units = (_frozen(np.zeros(pairs, dtype)), _frozen(np.ones(1, dtype)), 16, np.empty(4), np.empty(0, dtype))
    from losskit.fused.formula import SCALAR_MATH

    if name.startswith("formula."):  # (xp, z, y, scale, inv_count, scaled_loss, elements, grad, flags)
        return (SCALAR_MATH[np.dtype(dtype).name], z, dense, _frozen(np.ones((rows, width), dtype)), 1.0, loss,
                np.empty((rows, width), dtype), grad, flags)
    return {
        "kernels.bce_logits_rows": (z, z, _frozen(np.ones(width, dtype)), _frozen(np.ones((1, 1), dtype)), 0.0,
                                    *elementwise),
        "kernels.squared_error_rows": (z, z, _frozen(np.ones((1, 1), dtype)), 1.0, *elementwise),
        "kernels.softmax_ce_rows": (z, labels, scale, 0.1, loss, grad, True, flags),
        "kernels.softmax_ce_short_rows": (z, labels, scale, 0.1, loss, grad, True, flags),
        "kernels.poly_short_rows": (z, labels, scale, 0.1, 1.0, loss, grad, True, flags),
        "kernels.focal_short_rows": (z, labels, _frozen(np.ones(width, dtype)), scale, 2.0, loss, grad, True, flags),
        "kernels.softmax_ce_columns": (_frozen(np.zeros((1, width, rows), dtype)), labels, scale, 0.1, loss,
                                       np.empty((1, width, rows), dtype), True, flags),
        "rows.kl_dense_rows": (z, dense, scale, 0.1, False, 1e-3, loss, grad, flags),
        "rows.kl_dense_short_rows": (z, dense, scale, 0.1, False, 1e-3, loss, grad, flags),
        "rows.crammer_singer_rows": (z, labels, scale, loss, grad, True, flags),
        "rows.distillation_kernel": (SCALAR_MATH[np.dtype(dtype).name], z, z.copy(), grad, scale, 2.0, True, loss, flags),
        "kernels.softmax_ce_rows+poly": (z, labels, scale, 0.1, loss, grad, True, flags, 1.0),
        "kernels.softmax_ce_rows+focal": (z, labels, scale, 0.0, loss, grad, True, flags, 0.0,
                                          _frozen(np.ones(width, dtype)), 2.0),
        "rows.poly_rows": (z, dense, scale, 0.1, 1.0, 1e-3, loss, grad, True, flags),
        "rows.focal_rows": (z, labels, dense, _frozen(np.ones(width, dtype)), scale, 0.1, 2.0, 1e-3, loss, grad,
                            np.empty((rows, width), dtype), True, flags),
        "jsd.jsd_kernel": (SCALAR_MATH[np.dtype(dtype).name], grad, np.zeros((rows, width), dtype),
                           np.empty((rows, 6, width), dtype), scale, 0.5, 1.0, loss, flags),
        "pairs.gaussian_nll_blocks": (_frozen(np.zeros((pairs, 2), dtype)), *units, np.empty((pairs, 2), dtype),
                                      True, np.zeros(4, np.uint8)),
        "pairs.quantile_blocks": (_frozen(np.zeros((pairs, 3), dtype)), units[0], _frozen(np.full(3, 0.5, dtype)),
                                  *units[1:], np.empty((pairs, 3), dtype), np.zeros(4, np.uint8)),
    }[name]


def _twin_and_parallel(name):
    """``(serial, parallel, options)``: the Python functions of what a small call runs and of what a large
    call runs, and their numba options (less ``parallel``)."""
    import importlib

    from losskit.fused import formula
    from losskit.losses.formula import FORMULA_FUNCTIONS

    if name.startswith("formula."):  # a small call runs the variant with every output and a scale per element
        formula.register_helpers(FORMULA_FUNCTIONS)
        loss = getattr(lk, name.split(".")[1])()
        opts, domain = formula.options_tuple(loss), loss.target_domain()
        serial, parallel = (formula.row_kernel(type(loss), opts, p, True, True, True, domain) for p in (False, True))
    else:
        module, function = name.split(".")
        serial = parallel = getattr(importlib.import_module(f"losskit.fused.{module}"), function)
        if function == "quantile_blocks":  # a factory of kernels, one per number of quantiles and variant
            serial = parallel = parallel(3, False, True, False)
        if function == "distillation_kernel":  # made with the formula functions of its near rows' value
            from losskit.losses._compiled import _distillation_kernel

            serial = parallel = _distillation_kernel(lk.DistillationLoss)
        if function == "jsd_kernel":  # likewise
            from losskit.losses._compiled import jsd_kernel

            serial = parallel = jsd_kernel(lk.JSDivergence)
    options = {k: v for k, v in parallel.targetoptions.items() if k not in ("nopython", "parallel")}
    return serial.py_func, parallel.py_func, options


#: the kernels a call under 2^18 elements runs serially whose SIMD code is checked here: the serial twins
#: (losskit.fused.serial_twin) of the elementwise kernels, the pair kernel of the quantile loss, and a formula's
#: kernel (its serial variant against the parallel kernel of the same variant)
TWINNED = ["kernels.bce_logits_rows", "kernels.squared_error_rows", "pairs.quantile_blocks", "formula.HuberLoss"]
#: the class-axis kernels, checked only with LOSSKIT_TEST_ALL_TWINS=1 (their compile time: 7-18 s each, 100 s in
#: all). Checked so on 2026-12-03: every twin within 0.7-1.3x of its parallel kernel's packed instructions, both
#: ways, and as fast on one thread. rows.crammer_singer_rows since 2026-12-04: its max is an integer max over the
#: logits' bits and its first maximiser a min over indices (before, a float max with a select and a search that
#: stopped at the first hit: next to no packed instruction in either form)
TWINNED_ON_REQUEST = ["kernels.softmax_ce_rows", "kernels.softmax_ce_short_rows", "kernels.poly_short_rows",
                      "kernels.focal_short_rows", "kernels.softmax_ce_rows+poly", "kernels.softmax_ce_rows+focal",
                      "kernels.softmax_ce_columns",
                      "rows.kl_dense_rows", "rows.kl_dense_short_rows",
                      "rows.distillation_kernel", "rows.poly_rows", "rows.focal_rows", "rows.crammer_singer_rows",
                      "jsd.jsd_kernel", "pairs.gaussian_nll_blocks"]
_ON_REQUEST = pytest.mark.skipif(not os.environ.get("LOSSKIT_TEST_ALL_TWINS"),
                                 reason="compile time; run with LOSSKIT_TEST_ALL_TWINS=1")


@pytest.mark.parametrize("name", TWINNED + ["kernels.bce_logits_rows-float64", "kernels.squared_error_rows-float64"]
                         + [pytest.param(name, marks=_ON_REQUEST) for name in TWINNED_ON_REQUEST])
def test_serial_twins_are_vectorised_where_their_parallel_kernels_are(name):
    """Every call under 2^18 elements runs a kernel's serial twin, every larger call its parallel kernel: each
    must be SIMD code wherever the other is. A select in the scale's index once left bce_logits_rows' twin
    without one packed instruction (4x slower than it is), and the form that fixed it left
    squared_error_rows' parallel kernel with a third of its packed instructions (3-5x slower); see the note
    above bce_logits_rows. Compiled here without the disk cache, whose code numba does not let one inspect;
    in the whole machine code of each, the share of its floating-point instructions that are packed on 256- or
    512-bit registers, each kernel's at least 2/3 of the other's, and the count of those at least a quarter of
    the other's (a loop of packed work turned into calls has neither). The first form of this test held the
    counts alone to a half: it failed on an Intel Xeon with AVX-512, where the parallel quantile kernel holds
    three vectorised copies of its loop (56 packed against 152, shares 0.46 and 0.55)."""
    import re

    import numba

    name, _, dtype_name = name.partition("-")
    dtype = np.dtype(dtype_name or "float32")
    serial, parallel, options = _twin_and_parallel(name.partition("+")[0])  # "+": a variant's arguments
    args = _twin_arguments(name, dtype)
    suffix, scalar = ("ps", "ss") if dtype == np.float32 else ("pd", "sd")
    packed = {}
    for is_parallel, function in ((False, serial), (True, parallel)):
        # the twin as losskit.fused.serial_twin compiles it (its arrays taken as disjoint)
        pipeline = {} if is_parallel or name.startswith("formula.") else {"pipeline_class": fused.no_alias_compiler()}
        compiled = numba.njit(parallel=is_parallel, cache=False, **options, **pipeline)(function)
        compiled(*args)
        asm = compiled.inspect_asm(compiled.signatures[0])
        wide = len(re.findall(rf"\bv\w+{suffix}\s+[^\n]*%[yz]mm", asm))
        narrow = len(re.findall(rf"\bv(?!broadcast)\w+{scalar}\s", asm))  # a broadcast feeds packed work
        packed[is_parallel] = (wide / max(1, wide + narrow), wide)
        # bce_logits_rows' column as a run-time j * column_step: 64-bit multiplies and a gather per element,
        # 2.3x slower (BENCHMARKS.md, "The task losses' kernels"); its row loop takes a literal column
        assert not (name == "kernels.bce_logits_rows" and "gather" in asm), is_parallel
    if packed[True][1] == 0 and packed[False][1] == 0:
        pytest.skip("no 256-bit SIMD on this machine")
    for one, other in ((False, True), (True, False)):
        assert packed[one][0] >= packed[other][0] * 2 / 3, packed  # the share
        assert packed[one][1] >= packed[other][1] / 4, packed  # the count: packed loops lost to calls show here


def test_a_serial_twins_sums_do_not_depend_on_where_its_placeholder_outputs_lie():
    """A value-only call passes a kernel empty placeholders for the outputs it does not want. Compiled
    without numba's noalias flag, the twin's vectorised row loop was guarded by a check of the arrays'
    address ranges (a placeholder's reckoned from the row's length), and ran a scalar copy of the loop, its
    sum in another order, when one overlapped: the last bits of a loss depended on where the heap had put
    the placeholders (a seeded demo run differed from itself). Here the placeholders are empty views into
    the logits and the targets: the row's sum must be the same bits as with placeholders of their own."""
    from losskit.fused import kernels
    from losskit.losses._compiled import frozen, placeholder

    z = RNG.normal(size=(1, 4096)) * 3
    y = (RNG.random((1, 4096)) < 0.5).astype(np.float64)
    pos_weight, scale = np.ones(4096), np.full((1, 1), 1 / 4096)
    twin = fused.serial_twin(kernels.bce_logits_rows)

    def row_sum(elements, grad):
        total, flags = np.empty(1), np.zeros(1, np.uint8)
        twin(*(frozen(a) for a in (z, y, pos_weight, scale)), 0.0, total, elements, grad, False, flags)
        return total[0]

    own = row_sum(placeholder(4096, np.float64).reshape(0, 0), placeholder(4096, np.float64).reshape(0, 0))
    inside = [row_sum(*placeholders) for offset in (0, 100, 4000, 4095) for host in (z, y)
              for placeholders in ((host.reshape(-1)[offset:offset].reshape(0, 0), np.empty((0, 0))),
                                   (np.empty((0, 0)), host.reshape(-1)[offset:offset].reshape(0, 0)))]
    assert all(value == own for value in inside), (own, inside)


def _recording_kernels(monkeypatch, seen):
    """Replace losskit.losses._compiled's kernels by wrappers that append each call's arguments to ``seen``."""
    from losskit.losses import _compiled

    kernels = _compiled._kernels()

    class Recording:
        module = kernels.module

        def __getattr__(self, name):
            kernel = getattr(kernels, name)

            def record(*args):
                seen.append(args)
                return kernel(*args)

            return record

    monkeypatch.setattr(_compiled, "_kernels", Recording)


@pytest.mark.parametrize("cls, shape, reduction", [
    (lk.BinaryCrossEntropyWithLogits, (600, 1000), "mean"),  # parallel, flat rows of 4096
    (lk.MultilabelCrossEntropy, (300, 1000), "none"),  # parallel, rows of the examples' 1000
    (lk.MeanSquaredError, (50, 40), "sum"),  # serial twin
], ids=["bce-parallel", "multilabel-rows", "mse-serial"])
def test_a_value_only_calls_placeholders_each_own_their_rows_range(cls, shape, reduction, monkeypatch):
    """The parallel elementwise kernels are compiled with LLVM's overlap checks, so an empty placeholder
    output (``elements`` and ``grad`` of a value-only call) must lie at the start of an allocation of its
    own as long as the row LLVM reckons from its ``[i, j]`` index: a bare ``np.empty(0)`` anywhere in the
    heap sent the vectorised loop to its scalar copy whenever it fell inside an input's range, and the
    loss's last bits with it (BCE, 600 x 1000 float32: every row)."""
    seen = []
    _recording_kernels(monkeypatch, seen)
    rng = np.random.default_rng(4)
    z = rng.normal(size=shape).astype(np.float32)
    target = (rng.random(shape) < 0.5).astype(np.float32)
    cls(impl="fused", reduction=reduction)(z, target)
    assert seen
    for args in seen:
        row_length, placeholders = args[0].shape[1], [a for a in args if isinstance(a, np.ndarray) and a.size == 0]
        assert len(placeholders) == 2
        owners = []
        for empty in placeholders:
            owner = empty
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            assert owner.ctypes.data == empty.ctypes.data and owner.nbytes >= row_length * empty.itemsize
            assert not np.may_share_memory(owner, z) and not np.may_share_memory(owner, target)
            owners.append(owner)
        assert not np.may_share_memory(*owners)


@pytest.mark.parametrize("cls, shape", [(lk.SoftmaxCrossEntropy, (600, 1000)), (lk.SoftmaxCrossEntropy, (30, 40)),
                                        (lk.BinaryCrossEntropyWithLogits, (600, 1000)),
                                        (lk.BinaryCrossEntropyWithLogits, (30, 40))],
                         ids=["softmax-parallel", "softmax-serial", "bce-parallel", "bce-serial"])
def test_out_x_is_written_in_place_by_a_parallel_kernel_and_through_a_buffer_by_a_twin(cls, shape, monkeypatch):
    """``value_and_grad(x, t, out=x)`` (README): a call of 2^18 elements or more hands the parallel kernel
    ``x``'s own memory as the gradient (no copy of the input's size); a smaller call's serial twin, compiled
    ``noalias``, is given a buffer that shares no argument's memory, copied into ``x`` after. Either way
    the gradient lands in ``x`` and equals the reference's."""
    seen = []
    _recording_kernels(monkeypatch, seen)
    rng = np.random.default_rng(5)
    z = rng.normal(size=shape).astype(np.float32)
    target = rng.integers(0, shape[1], size=shape[0]) if cls is lk.SoftmaxCrossEntropy else \
        (rng.random(shape) < 0.5).astype(np.float32)
    _, expected = cls(impl="xp").value_and_grad(z.astype(np.float64), target)
    x = z.copy()
    address = x.ctypes.data
    _, grad = cls(impl="fused").value_and_grad(x, target, out=x)
    assert grad is x and x.ctypes.data == address
    np.testing.assert_allclose(x, expected, rtol=2e-5, atol=1e-9)
    written = [a for args in seen for a in args if isinstance(a, np.ndarray) and a.flags.writeable and a.size > 1]
    from losskit.losses._compiled import SERIAL_BELOW

    parallel = x.size >= SERIAL_BELOW
    assert any(a.ctypes.data == address for a in written) == parallel
    if not parallel:
        for args in seen:
            arrays = [a for a in args if isinstance(a, np.ndarray) and a.size]
            assert not any(np.may_share_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:]
                           if a.flags.writeable or b.flags.writeable)


@pytest.mark.parametrize("cls", [lk.SoftmaxCrossEntropy, lk.BinaryCrossEntropyWithLogits])
def test_out_x_with_an_infinite_input_writes_through_a_buffer_and_gives_the_exact_result(cls):
    """A row holding +inf is answered by the array-API path, from the input. Written in place (2^18
    elements or more), the input was gone, and the call returned a value made from the gradients written
    over it (BCE: 0.6931 against 0.8064). A non-finite input now takes a buffer of its own, copied in."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3000, 100))
    z[-1, -1] = np.inf
    target = rng.integers(0, 100, size=3000) if cls is lk.SoftmaxCrossEntropy else (rng.random(z.shape) < 0.5) * 1.0
    expected = cls(impl="xp").value_and_grad(z, target)
    x = z.copy()
    value, grad = cls().value_and_grad(x, target, out=x)
    assert grad is x
    np.testing.assert_allclose(value, expected[0], rtol=1e-12)
    np.testing.assert_allclose(x, expected[1], rtol=1e-12, atol=1e-300)


def test_out_x_with_a_finite_input_whose_loss_overflows_raises_naming_out():
    """A finite row whose loss overflows (the squared error of 1e200 against -1e200) is flagged after the
    gradient was written in place: the array-API path cannot be given the input back, so the call raises,
    naming ``out`` and saying the input now holds gradients; a separate ``out`` gives the exact result."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=300_000), rng.normal(size=300_000)
    z[0], y[0] = 1e200, -1e200
    expected = lk.MeanSquaredError(impl="xp").value_and_grad(z, y)
    x = z.copy()
    with pytest.raises(lk.LossInputError, match=r"^out: expected an array apart from the input.*partial gradients"):
        lk.MeanSquaredError().value_and_grad(x, y, out=x)
    value, grad = lk.MeanSquaredError().value_and_grad(z, y, out=np.empty_like(z))
    assert value == expected[0] and np.array_equal(grad, expected[1])


@pytest.mark.parametrize("rows", [3000])  # the rows are cut in Python (_elementwise): one kernel form is enough
@pytest.mark.parametrize("loss", [lk.MultilabelCrossEntropy(), lk.MultilabelCrossEntropy(pos_weight=np.arange(1.0, 8.0)),
                                  lk.MeanSquaredError(), lk.AbsoluteError(), lk.HuberLoss(delta=0.5)],
                         ids=["multilabel", "multilabel-pos_weight", "mse", "mae", "huber"])
def test_examples_of_k_values_in_flat_rows_equal_the_reference(loss, rows):
    """An example of K = 7 values (not a divisor of the kernels' 4096-element rows) is cut across the kernel's
    rows when only the sum of its loss is read: the value and gradient are still the reference's, and a
    row's mean over its values still divides by K, not by the kernel row's length. With a weight or
    reduction "none" the rows are the examples."""
    from losskit.losses import _compiled

    rng = np.random.default_rng(3)
    z = rng.standard_normal((rows, 7))
    target = rng.random((rows, 7)) if "Multilabel" in type(loss).__name__ else rng.standard_normal((rows, 7))
    weight = rng.random(rows)
    for reduction, w in (("mean", None), ("sum", None), ("mean", weight), ("none", None)):
        fused, reference = (loss.replace(reduction=reduction, impl=impl) for impl in ("fused", "xp"))
        answered = _compiled.run(fused, fused.plan(z, target, weight=w), True, None)
        assert answered is not None and answered is not _compiled.UNHANDLED  # the kernel itself, no row flagged
        value, grad = fused.value_and_grad(z, target, weight=w)
        expected_value, expected_grad = reference.value_and_grad(z, target, weight=w)
        np.testing.assert_allclose(value, expected_value, rtol=1e-12, err_msg=reduction)
        # atol: where sigmoid(z) - y cancels, the two formulas' roundings differ by an ulp of their terms
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15 * np.abs(expected_grad).max(),
                                   err_msg=reduction)


@pytest.mark.parametrize("loss", [lk.QuantileLoss(quantiles=(0.1, 0.5, 0.9)), lk.QuantileLoss(quantiles=0.3),
                                  lk.GaussianNLL(), lk.HuberLoss()], ids=["quantile-3", "quantile-1", "gaussian", "huber"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_out_x_on_a_parallel_call_gives_the_value_of_a_call_without_it(loss, reduction):
    """Found in review: QuantileLoss.value_and_grad(x, t, out=x) on a call of 2^18 elements or more (the parallel
    kernel, given x's memory for the gradient) summed the block's loss after writing its gradient, so it summed
    pinball losses of gradients: a mean 29 % off, no error. The value equals the call's without out= (to the sum's
    last bits: the kernel's loop that writes x may add in another order), the gradient to the bit."""
    from losskit.losses._compiled import SERIAL_BELOW

    rng = np.random.default_rng(3)
    units = getattr(loss, "units_per_value", None) or 1
    rows = SERIAL_BELOW // units + 1
    z = rng.normal(size=(rows, units) if units > 1 or isinstance(loss, lk.QuantileLoss) else rows)
    t = rng.normal(size=rows)
    loss = loss.replace(reduction=reduction)
    value, grad = loss.value_and_grad(z.copy(), t)
    x = z.copy()
    in_place_value, written = loss.value_and_grad(x, t, out=x)
    assert written is x
    np.testing.assert_allclose(in_place_value, value, rtol=1e-12)
    np.testing.assert_array_equal(x, grad)


@pytest.mark.parametrize("cls", [lk.LogCoshLoss, lk.SigmoidFocalLoss, lk.BinaryCrossEntropyWithLogits])
def test_a_formula_kernels_variants_agree_to_the_sums_last_bits(cls):
    """docs/fused.md: on a parallel float32 call, the value alone, value_and_grad and value_and_grad(out=x) of a
    formula kernel (and BCE's with out=x) agree to a few ulps of the sum (its variants vectorise the sum apart;
    out=x takes the loop's scalar body), the gradients to the bit."""
    from losskit.losses._compiled import SERIAL_BELOW

    rng = np.random.default_rng(4)
    z = rng.normal(size=(SERIAL_BELOW // 500 + 1, 500)).astype(np.float32)
    t = (rng.random(z.shape) < 0.5).astype(np.float32) if cls is not lk.LogCoshLoss else rng.normal(
        size=z.shape).astype(np.float32)
    loss = cls()
    alone = loss(z, t)
    value, grad = loss.value_and_grad(z.copy(), t)
    x = z.copy()
    in_place, _ = loss.value_and_grad(x, t, out=x)
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose([value, in_place], [alone, alone], rtol=4 * eps, atol=0)
    np.testing.assert_array_equal(x, grad)


def test_impl_fused_takes_a_bfloat16_out_it_cannot_view():
    """Found in review: impl="fused" ran the kernel on torch bfloat16 logits but refused the same call with a
    bfloat16 out= (NumPy cannot view it) as one no kernel takes; the kernel now writes its own buffer, copied
    into out."""
    torch = pytest.importorskip("torch")
    x, y = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)).bfloat16(), torch.tensor([0, 1, 2, 3, 4, 0])
    out = torch.empty_like(x)
    value, grad = lk.SoftmaxCrossEntropy(impl="fused").value_and_grad(x, y, out=out)
    expected_value, expected = lk.SoftmaxCrossEntropy(impl="xp").value_and_grad(x, y)
    assert grad is out and grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(value, expected_value)


@pytest.mark.parametrize("cls, shape, target", [(lk.SoftmaxCrossEntropy, (0, 5), np.zeros(0, np.int64)),
                                                (lk.HuberLoss, (0,), np.zeros(0))])
def test_impl_fused_gives_an_empty_batch_the_references_zero(cls, shape, target):
    """Found in review: impl="fused" raised on an empty batch (no kernel takes a 0-size array), where "auto" and
    "xp" give 0: a training loop forcing the kernels stopped at an empty last batch."""
    value, grad = cls(impl="fused").value_and_grad(np.zeros(shape), target)
    assert float(value) == 0.0 and grad.shape == shape


def test_impl_fused_takes_second_order_calls_on_the_reference():
    """docs/fused.md: kernels compute values and gradients; a Hessian is the reference's under every impl. Under
    impl="fused", hessian_diag (and so a GBDT objective, and torch's double backward of a diagonal-Hessian loss)
    raised "no compiled kernel handles it" (found in review)."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(6, 4)), (rng.random((6, 4)) < 0.5).astype(float)
    for cls in (lk.MultilabelCrossEntropy, lk.HuberLoss, lk.BinaryCrossEntropyWithLogits):
        np.testing.assert_array_equal(cls(impl="fused").hessian_diag(z, y), cls(impl="xp").hessian_diag(z, y))
    xgboost = pytest.importorskip("xgboost")
    lx = pytest.importorskip("losskit.xgboost")
    data = xgboost.DMatrix(np.zeros((24, 1)), label=y.ravel())
    fused = lx.objective(lk.BinaryCrossEntropyWithLogits(impl="fused"))(z.ravel(), data)
    reference = lx.objective(lk.BinaryCrossEntropyWithLogits(impl="xp"))(z.ravel(), data)
    np.testing.assert_allclose(fused[0], reference[0], rtol=1e-14)
    np.testing.assert_array_equal(fused[1], reference[1])
    torch = pytest.importorskip("torch")
    lt = pytest.importorskip("losskit.torch")
    logits = torch.tensor(z, requires_grad=True)
    grad, = torch.autograd.grad(lt.module(lk.HuberLoss(impl="fused"))(logits, torch.tensor(y)), logits,
                                create_graph=True)
    hess, = torch.autograd.grad(grad.sum(), logits)
    np.testing.assert_allclose(hess.numpy(), lk.HuberLoss(impl="xp").hessian_diag(z, y), rtol=1e-14)
