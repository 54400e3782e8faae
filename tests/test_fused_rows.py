"""The compiled class-axis kernels (losskit.fused.rows) against the array-API path, torch and optax.

KL divergence, distillation, softmax focal, Poly-1 and Crammer-Singer: each option of each loss,
labels and probabilities, weights and every reduction, in float64 and float32; edge rows (a sure
row, a logit of -inf, a logit of +inf, which the kernel flags so that the reference answers).
Each case also checks that the kernel itself answered (it did not flag the call back to the
reference), so the comparison is never the reference against itself.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("numba")

import losskit as lk  # noqa: E402
from losskit.losses import _compiled  # noqa: E402

# float64: the paths differ in summation order; float32: plus a few ulps of exp/log/pow per term
TOL = {np.float64: 1e-12, np.float32: 3e-5}
GRAD_ATOL = {np.float64: 1e-15, np.float32: 2e-7}
RNG = np.random.default_rng(7)
CW = "class_weight"

#: (loss class, options, target kind): "labels", "probs" or "teacher" (logits); CW is replaced by one
#: weight per class of the case's width
CASES = [
    (lk.KLDivergence, {}, "labels"),
    (lk.KLDivergence, {"label_smoothing": 0.2}, "labels"),
    (lk.KLDivergence, {"ignore_index": -100, "label_smoothing": 0.1, CW: CW}, "labels"),
    (lk.KLDivergence, {}, "probs"),
    (lk.KLDivergence, {"label_smoothing": 0.3, CW: CW}, "probs"),
    (lk.SoftmaxCrossEntropy, {}, "probs"),  # the KL kernel without the target's entropy
    (lk.SoftmaxCrossEntropy, {"label_smoothing": 0.3, CW: CW}, "probs"),
    (lk.DistillationLoss, {}, "teacher"),
    (lk.DistillationLoss, {"temperature": 4.0}, "teacher"),
    (lk.DistillationLoss, {"temperature": 0.5}, "teacher"),
    (lk.SoftmaxFocalLoss, {}, "labels"),
    (lk.SoftmaxFocalLoss, {"gamma": 0.5, "alpha": 0.25, "ignore_index": -100}, "labels"),
    (lk.SoftmaxFocalLoss, {"gamma": 1.5, "alpha": "per class", "label_smoothing": 0.1, CW: CW}, "labels"),
    (lk.SoftmaxFocalLoss, {"gamma": 0.0}, "labels"),
    (lk.SoftmaxFocalLoss, {"gamma": 2.0}, "probs"),
    (lk.SoftmaxFocalLoss, {"gamma": 0.7, "alpha": "per class", "label_smoothing": 0.2, CW: CW}, "probs"),
    (lk.PolyCrossEntropy, {}, "labels"),
    (lk.PolyCrossEntropy, {"epsilon": -0.5, "ignore_index": -100, CW: CW}, "labels"),
    (lk.PolyCrossEntropy, {"epsilon": 2.0, "label_smoothing": 0.2}, "labels"),
    (lk.PolyCrossEntropy, {"epsilon": 1.0}, "probs"),
    (lk.PolyCrossEntropy, {"epsilon": -0.5, "label_smoothing": 0.1, CW: CW}, "probs"),
    (lk.MulticlassHingeLoss, {}, "labels"),
    (lk.MulticlassHingeLoss, {"ignore_index": -100, CW: CW}, "labels"),
]
IDS = [f"{cls.__name__}-{kind}-{sorted(opts.items())}" for cls, opts, kind in CASES]
KERNELS = {lk.KLDivergence: "kl_divergence", lk.DistillationLoss: "distillation",
           lk.SoftmaxFocalLoss: "softmax_focal", lk.PolyCrossEntropy: "poly_cross_entropy",
           lk.MulticlassHingeLoss: "crammer_singer"}


def _options(options, width):
    made = dict(options)
    if CW in made:
        made[CW] = list(np.linspace(0.5, 2.0, width))
    if made.get("alpha") == "per class":
        made["alpha"] = list(np.linspace(0.1, 1.0, width))
    return made


def _target(kind, z, rng, ignore):
    n, width = z.shape
    if kind == "labels":
        y = rng.integers(0, width, size=n)
        y[::5] = -100 if ignore else 0
        return y
    if kind == "teacher":
        return (rng.normal(size=z.shape) * 3).astype(z.dtype)
    p = rng.dirichlet(np.full(width, 0.3), size=n)
    p[::4] = np.eye(width)[rng.integers(0, width, size=len(p[::4]))]  # one-hot rows: zeros in the target
    return p.astype(z.dtype) if z.dtype == np.float64 else p  # float64 probabilities, cast by the plan


def _kernel_answers(loss, z, target, **call):
    """Whether the compiled kernel itself answers this call (not UNHANDLED, no row flagged)."""
    plan = loss.plan(z, target, **call)
    result = _compiled.run(loss, plan, True, None)
    return result is not None and result is not _compiled.UNHANDLED


def _check(cls, options, z, target, dtype, **call):
    fused = cls(impl="fused", **options)
    assert _kernel_answers(fused, z, target, **call)
    fast = fused.value_and_grad(z, target, **call)
    ref = cls(impl="xp", **options).value_and_grad(z, target, **call)
    assert fast[0].dtype == ref[0].dtype == dtype and fast[1].dtype == dtype
    np.testing.assert_allclose(fast[0], ref[0], rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(fast[1], ref[1], rtol=TOL[dtype], atol=GRAD_ATOL[dtype])
    value = fused(z, target, **call)  # the value alone: its own kernel variant
    np.testing.assert_allclose(value, ref[0], rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("width", [7, 1300])  # 1300: several SIMD blocks and a tail per row
@pytest.mark.parametrize(("cls", "options", "kind"), CASES, ids=IDS)
def test_class_axis_kernel_matches_the_array_api_path(cls, options, kind, dtype, reduction, scale, width):
    rng = np.random.default_rng(width)
    z = (rng.normal(size=(33, width)) * scale).astype(dtype)
    options = _options(options, width)
    target = _target(kind, z, rng, "ignore_index" in options)
    weight = rng.uniform(0.1, 2.0, size=33)
    weight[3] = 0.0
    _check(cls, dict(options, reduction=reduction), z, target, dtype, weight=weight)
    _check(cls, dict(options, reduction=reduction), z, target, dtype, normalizer=5.0)


#: the parallel kernels (calls of 2^18 elements or more) of the class-axis losses: compiled only here, and only
#: with LOSSKIT_TEST_PARALLEL_KERNELS=1 (5 kernels per dtype, 6-18 s each on a cold cache); every other test
#: of this file runs their serial twins. Run so on 2026-12-04 (docs/fused.md): all pass
PARALLEL_CASES = [case for case in CASES if case[0] is not lk.SoftmaxCrossEntropy
                  and case[1] in ({}, {"gamma": 1.5, "alpha": "per class", "label_smoothing": 0.1, CW: CW},
                                  {"gamma": 2.0}, {"epsilon": 1.0})]
_PARALLEL = pytest.mark.skipif(not os.environ.get("LOSSKIT_TEST_PARALLEL_KERNELS"),
                               reason="compile time; run with LOSSKIT_TEST_PARALLEL_KERNELS=1")


@_PARALLEL
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("cls", "options", "kind"), PARALLEL_CASES,
                         ids=[f"{c.__name__}-{k}-{sorted(o.items())}" for c, o, k in PARALLEL_CASES])
def test_parallel_class_axis_kernels_match_the_array_api_path(cls, options, kind, dtype, monkeypatch):
    """The same comparison on the parallel kernel (every call sent there), and a probability row that does
    not sum to 1 flagged by it, so that the reference raises its error."""
    monkeypatch.setattr(_compiled, "SERIAL_BELOW", 0)
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(33, 1300)) * 3).astype(dtype)
    options = _options(options, 1300)
    target = _target(kind, z, rng, "ignore_index" in options)
    weight = rng.uniform(0.1, 2.0, size=33)
    _check(cls, dict(options, reduction="none"), z, target, dtype, weight=weight)
    _check(cls, dict(options, reduction="mean"), z, target, dtype)
    if kind == "probs":
        bad = np.array(target, copy=True)
        bad[20] *= 1.5
        with pytest.raises(lk.LossInputError, match="target"):
            cls(impl="fused", **options).value_and_grad(z, bad)


def test_each_loss_runs_its_own_kernel_never_softmax_ce():
    # the torch-native and XLA paths pick a formulation by this name: softmax CE's would be other math
    for cls, name in KERNELS.items():
        assert cls.kernel_name() == name
    assert lk.SoftmaxCrossEntropy.kernel_name() == "softmax_ce"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("cls", "options", "kind"), CASES, ids=IDS)
def test_sure_rows_keep_their_tiny_loss(cls, options, kind, dtype):
    """A row that the logits make all but certain: the loss is tiny, not rounded to 0 (log1p of the
    terms below the max), and equal to the reference's to a few ulps; so is the gradient off the
    sure class, and at it the gradient is minus the others' sum (no 1 - p_y formed)."""
    width = 6
    options = _options(options, width)
    options.pop("ignore_index", None)
    z = np.zeros((3, width), dtype)
    z[:, 0] = 40 if dtype == np.float64 else 20  # p_0 = 1 - 5 e^-40: 1 in double
    target = {"labels": np.zeros(3, np.int64), "probs": np.eye(width)[[0, 0, 0]].astype(dtype),
              "teacher": (z * 1.5).astype(dtype)}[kind]
    loss = cls(impl="fused", reduction="none", **options)
    assert _kernel_answers(loss, z, target)
    value, grad = loss.value_and_grad(z, target)
    ref_value, ref_grad = cls(impl="xp", reduction="none", **options).value_and_grad(z, target)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(value, ref_value, rtol=8 * eps, atol=0)
    np.testing.assert_allclose(grad[:, 1:], ref_grad[:, 1:], rtol=8 * eps, atol=1e-300)
    # at the sure class the reference's p - 1 style differences round to 0 (Poly-1's eps p_y (1 - P),
    # focal's u - p sum(u)); the kernel's does not: the loss is unchanged by adding a constant to the
    # row, so the exact gradient row sums to 0, and the kernel's does to rounding
    np.testing.assert_allclose(grad[:, 0], -grad[:, 1:].sum(axis=-1, dtype=np.float64), rtol=8 * eps, atol=1e-300)
    if cls is not lk.MulticlassHingeLoss and not options.get("label_smoothing") and options.get("temperature", 1) <= 1:
        assert np.all(np.abs(value) < 1e-6)


@pytest.mark.parametrize(("cls", "options", "kind"), CASES, ids=IDS)
def test_a_minus_inf_logit_and_a_plus_inf_logit(cls, options, kind):
    """-inf: a class ruled out; where the target gives it no mass the kernel answers (and equals the
    reference), else the loss is +inf and the row flagged. +inf: always flagged, and the result is
    the reference's exact limit."""
    width = 5
    options = _options(options, width)
    options.pop("ignore_index", None)
    z = RNG.normal(size=(4, width))
    target = {"labels": np.array([0, 1, 2, 3]), "probs": np.eye(width)[[0, 1, 2, 3]],
              "teacher": RNG.normal(size=(4, width))}[kind]
    minus = z.copy()
    minus[:, 4] = -np.inf
    loss, ref = cls(impl="auto", reduction="none", **options), cls(impl="xp", reduction="none", **options)
    value, grad = loss.value_and_grad(minus, target)
    ref_value, ref_grad = ref.value_and_grad(minus, target)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)
    answered = _kernel_answers(loss, minus, target)
    takes_mass = options.get("label_smoothing", 0) > 0 or kind == "teacher"
    assert answered is (not takes_mass)  # distillation flags every non-finite logit
    plus = z.copy()
    plus[1, 2] = np.inf
    assert not _kernel_answers(loss, plus, target)
    with np.errstate(all="ignore"):
        value, grad = loss.value_and_grad(plus, target)
        ref_value, ref_grad = ref.value_and_grad(plus, target)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(grad, ref_grad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("classes", [1, 2, 10, 31, 48])
@pytest.mark.parametrize(("entropy", "smoothing"), [(False, 0.0), (True, 0.0), (True, 0.1)])
def test_dense_short_rows_kernel_is_the_rows_kernel_arithmetic_in_blocks(dtype, classes, entropy, smoothing):
    """Probability targets on rows of at most rows.SHORT_ROW classes take the blocked kernel (their exps in
    one flat loop): the row-by-row kernel's losses and gradients to a few ulps of the terms they are formed
    from (the normaliser's log1p is vectorised there), its flags, and its edge rows: a sure row's tiny
    loss, ties at the max, -inf logits with and without the target's mass, +inf and NaN logits, a target
    outside [0, 1] or not summing to 1, weight 0. 700 rows cross a block at every K here; the parallel
    kernel and its serial twin."""
    from losskit import fused
    from losskit.fused import rows
    from losskit.losses._compiled import frozen

    assert classes <= rows.SHORT_ROW
    rng = np.random.default_rng(classes)
    n = 700
    z = (rng.normal(size=(n, classes)) * 4).astype(dtype)
    p = rng.dirichlet(np.full(classes, 0.3), size=n).astype(dtype)
    p[::4] = np.eye(classes, dtype=dtype)[rng.integers(0, classes, len(p[::4]))]
    z[1] = 0  # every class tied at the max
    z[2], p[2] = 0, np.eye(classes, dtype=dtype)[0]
    z[2, 0] = 90  # a sure row on a one-hot target: its loss (K - 1) e^-90 (float64), kept
    if classes > 1:
        z[3, 1], p[3] = -np.inf, np.eye(classes, dtype=dtype)[0]  # a class ruled out, no mass there: finite
        z[4, 1] = -np.inf  # ... with mass there: an infinite loss, flagged
        p[4] = np.full(classes, 1 / classes, dtype)
    z[5, 0], z[6, 0] = np.inf, np.nan  # flagged for the reference
    p[7, 0] = -0.1  # outside [0, 1]: flagged
    p[8] *= 0.5  # sums to 1/2: flagged
    scale = rng.uniform(0.5, 2, n).astype(dtype)
    scale[9] = 0
    # read-only, as the library passes every input: a writable one is another numba type, compiled again
    z, p, scale = frozen(z), frozen(p), frozen(scale)
    results = []
    for kernel in (rows.kl_dense_rows, rows.kl_dense_short_rows, fused.serial_twin(rows.kl_dense_short_rows)):
        loss, grad, flags = np.full(n, -1.0), np.full_like(z, -1), np.zeros(n, np.uint8)
        kernel(z, p, scale, smoothing, entropy, 1e-3, loss, grad, flags)
        results.append((loss, grad, flags))
    (loss, grad, flags), *others = results
    assert flags[5:9].all() and flags[9] == 0 and flags[:3].sum() == 0
    assert flags[3] == (classes > 1 and smoothing > 0)  # smoothing puts mass on the ruled-out class
    assert flags[4] == (classes > 1)
    ok = flags == 0
    eps = np.finfo(dtype).eps
    with np.errstate(invalid="ignore"):  # -inf - -inf in a ruled-out row's span
        finite = np.where(np.isfinite(z), z, 0)
    span = (finite.max(axis=1) - finite.min(axis=1))[ok]  # the size of the terms a loss is the sum of
    for other_loss, other_grad, other_flags in others:
        np.testing.assert_array_equal(other_flags, flags)
        bound = 8 * eps * (np.abs(loss[ok]) + (1 + span) * scale[ok])
        assert np.all(np.abs(other_loss[ok] - loss[ok]) <= bound), np.max(np.abs(other_loss[ok] - loss[ok]) / bound)
        np.testing.assert_allclose(other_grad[ok], grad[ok], rtol=8 * eps, atol=8 * eps * np.abs(grad[ok]).max())
        assert other_loss[9] == 0 and np.all(other_grad[9] == 0)
        if classes > 1 and dtype == np.float64 and smoothing == 0:  # the sure row keeps its tiny loss
            np.testing.assert_allclose(other_loss[2] / scale[2], (classes - 1) * np.exp(-90.0), rtol=8 * eps)


def test_the_kernel_cache_keys_short_rows_apart():
    """A small call answers from the reference while its kernel compiles (losskit.losses._compiled.run):
    its key must tell the blocked short-row kernels from the row kernels, or a first call on the other side
    of a bound would wait for numba (found in review: 1.2 s for the first 100-class call after a 10-class
    one, probability targets)."""
    from losskit.fused import kernels, rows

    loss = lk.SoftmaxCrossEntropy(impl="fused")
    keys = set()
    for width in (rows.SHORT_ROW, rows.SHORT_ROW + 1, kernels.SHORT_ROW, kernels.SHORT_ROW + 1):
        z = np.zeros((2, width))
        plan = loss.plan(z, np.full((2, width), 1 / width))
        arrays = {"input": z, "scale": plan.scale, "labels": None, "out": None}
        keys.add(_compiled._signature(loss, plan, arrays))
    assert len(keys) == 3  # <= 48, 49-256, > 256
    focal = {}  # focal of labels takes a kernel of its own without smoothing
    for smoothing in (0.0, 0.1):
        loss = lk.SoftmaxFocalLoss(label_smoothing=smoothing)
        z, y = np.zeros((2, 10)), np.array([0, 1])
        plan = loss.plan(z, y)
        focal[smoothing] = _compiled._signature(loss, plan, {"input": z, "scale": plan.scale,
                                                             "labels": plan.target.labels, "out": None})
    assert focal[0.0] != focal[0.1]


AXIS_CASES = [(lk.SoftmaxCrossEntropy, {"label_smoothing": 0.1, "ignore_index": -100, CW: CW}, "labels"),
              *CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("cls", "options", "kind"), AXIS_CASES, ids=[f"{c.__name__}-{k}-{sorted(o.items())}"
                                                                       for c, o, k in AXIS_CASES])
def test_a_class_axis_other_than_the_last_takes_the_kernel(cls, options, kind, dtype):
    """PyTorch's layout (N, C, d1, d2) with ``axis=1``: the kernel answers (it took the reference path
    before, and ``impl="fused"`` refused), with the reference's value and gradient in the caller's layout,
    also written into an ``out`` of that layout."""
    rng = np.random.default_rng(11)
    width, options = 6, _options(options, 6)
    z = rng.normal(size=(5, 4, 3, width)).astype(dtype)  # rows of the last axis, moved to axis 1 below
    target = _target(kind, z.reshape(-1, width), rng, "ignore_index" in options)
    target = target.reshape(5, 4, 3, *target.shape[1:])
    z1 = np.moveaxis(z, -1, 1).copy()
    t1 = np.moveaxis(target, -1, 1).copy() if target.ndim == 4 else target
    weight = rng.uniform(0.1, 2.0, size=(5, 4, 3))
    fused = cls(impl="fused", axis=1, **options)
    assert _kernel_answers(fused, z1, t1, weight=weight)
    ref = cls(impl="xp", axis=1, **options).value_and_grad(z1, t1, weight=weight)
    value, grad = fused.value_and_grad(z1, t1, weight=weight)
    assert grad.shape == z1.shape and grad.dtype == dtype
    np.testing.assert_allclose(value, ref[0], rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(grad, ref[1], rtol=TOL[dtype], atol=GRAD_ATOL[dtype])
    out = np.full_like(z1, np.nan)
    assert fused.value_and_grad(z1, t1, weight=weight, out=out)[1] is out
    np.testing.assert_array_equal(out, grad)
    # the same rows on the last axis: the same kernel, the same numbers
    last = cls(impl="fused", **options).value_and_grad(z, target, weight=weight)
    np.testing.assert_allclose(value, last[0], rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_array_equal(grad, np.moveaxis(last[1], -1, 1))


def test_out_may_be_the_logits_themselves():
    z = RNG.normal(size=(9, 11))
    p = RNG.dirichlet(np.ones(11), size=9)
    for cls, target in ((lk.KLDivergence, p), (lk.PolyCrossEntropy, p), (lk.SoftmaxFocalLoss, p),
                        (lk.DistillationLoss, z[::-1].copy()), (lk.MulticlassHingeLoss, np.arange(9) % 11)):
        ref_value, ref_grad = cls(impl="xp").value_and_grad(z, target)
        buffer = z.copy()
        value, grad = cls(impl="fused").value_and_grad(buffer, target, out=buffer)
        assert grad is buffer
        np.testing.assert_allclose(value, ref_value, rtol=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_torch_cpu_tensors_take_the_kernels():
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(16, 40)).astype(np.float32)
    y = RNG.integers(0, 40, size=16)
    for cls in (lk.PolyCrossEntropy, lk.SoftmaxFocalLoss, lk.MulticlassHingeLoss, lk.KLDivergence):
        assert _kernel_answers(cls(impl="fused"), torch.from_numpy(z), torch.from_numpy(y))
        value, grad = cls(impl="fused").value_and_grad(torch.from_numpy(z), torch.from_numpy(y))
        ref_value, ref_grad = cls(impl="xp").value_and_grad(z, y)
        assert isinstance(grad, torch.Tensor) and grad.dtype == torch.float32
        np.testing.assert_allclose(value.item(), ref_value, rtol=3e-6)
        np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=3e-5, atol=2e-8)


# -- against the peers: torch's own losses, and the formulas differentiated by torch's autograd --------

def _torch_value_and_grad(torch, fn, z):
    tz = torch.tensor(z, requires_grad=True)
    value = fn(tz)
    value.backward()
    return value.item(), tz.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_kl_divergence_matches_torch_kl_div(smoothing):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = RNG.normal(size=(64, 300)) * 3
    p = RNG.dirichlet(np.full(300, 0.2), size=64)
    y = RNG.integers(0, 300, size=64)
    for target, dense in ((p, p), (y, np.eye(300)[y])):
        smoothed = (1 - smoothing) * dense + smoothing / 300
        value, grad = lk.KLDivergence(impl="fused", label_smoothing=smoothing).value_and_grad(z, target)
        ref = _torch_value_and_grad(torch, lambda tz, t=smoothed: F.kl_div(
            F.log_softmax(tz, dim=-1), torch.from_numpy(t), reduction="batchmean"), z)
        np.testing.assert_allclose(value, ref[0], rtol=1e-12)
        np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_distillation_matches_torch_kl_div_of_tempered_logits(temperature):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t = RNG.normal(size=(64, 300)) * 3, RNG.normal(size=(64, 300)) * 3
    value, grad = lk.DistillationLoss(impl="fused", temperature=temperature).value_and_grad(z, t)
    ref = _torch_value_and_grad(torch, lambda tz: temperature ** 2 * F.kl_div(
        F.log_softmax(tz / temperature, dim=-1), F.log_softmax(torch.from_numpy(t) / temperature, dim=-1),
        reduction="batchmean", log_target=True), z)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_softmax_focal_and_poly_match_their_formulas_under_torch_autograd(gamma, kind):
    """torch has neither loss: the papers' formulas in torch ops, differentiated by autograd (float64)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z = RNG.normal(size=(64, 200)) * 3
    y = RNG.integers(0, 200, size=64)
    target = y if kind == "labels" else RNG.dirichlet(np.full(200, 0.5), size=64)
    dense = torch.from_numpy(np.eye(200)[y] if kind == "labels" else target)
    alpha = np.linspace(0.2, 1.0, 200)
    w = RNG.uniform(0.5, 2.0, size=64)

    def focal(tz):
        log_p = F.log_softmax(tz, dim=-1)
        per_row = -(torch.from_numpy(alpha) * dense * (1 - log_p.exp()) ** gamma * log_p).sum(-1)
        return (torch.from_numpy(w) * per_row).sum() / w.sum()

    value, grad = lk.SoftmaxFocalLoss(impl="fused", gamma=gamma, alpha=list(alpha)).value_and_grad(z, target, weight=w)
    ref = _torch_value_and_grad(torch, focal, z)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-9, atol=1e-16)

    def poly(tz):
        log_p = F.log_softmax(tz, dim=-1)
        per_row = -(dense * log_p).sum(-1) + gamma * (1 - (dense * log_p.exp()).sum(-1))
        return (torch.from_numpy(w) * per_row).sum() / w.sum()

    value, grad = lk.PolyCrossEntropy(impl="fused", epsilon=gamma).value_and_grad(z, target, weight=w)
    ref = _torch_value_and_grad(torch, poly, z)
    np.testing.assert_allclose(value, ref[0], rtol=1e-12)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-9, atol=1e-16)


def test_crammer_singer_matches_optax():
    """optax's ``multiclass_hinge_loss`` is Crammer-Singer, ours. torch's ``multi_margin_loss`` is not:
    it sums ``max(0, 1 - z_y + z_k)`` over the classes (Weston-Watkins) and divides by K."""
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    import jax.numpy as jnp

    z = RNG.normal(size=(64, 50))
    y = RNG.integers(0, 50, size=64)
    value, grad = lk.MulticlassHingeLoss(impl="fused").value_and_grad(z, y)
    ref_value, ref_grad = jax.value_and_grad(lambda v: optax.losses.multiclass_hinge_loss(v, jnp.asarray(y)).mean())(
        jnp.asarray(z, dtype=jnp.float64))
    np.testing.assert_allclose(value, float(ref_value), rtol=1e-12)
    np.testing.assert_allclose(grad, np.asarray(ref_grad), rtol=1e-12, atol=0)


# --- long float32 rows: the kernels' row sums keep float32's precision (docs/losses.md "Precision")

LONG = 32000  # a vocabulary's width: one float32 sum over it loses ~10-1000 eps (a dominant term's ulp)
F32_EPS = float(np.finfo(np.float32).eps)


def _log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _long_rows(rng):
    """Three float32 rows of N(0, 16) logits and their probability targets: Dirichlet(0.1) (a few
    classes hold the mass), Dirichlet(1) (spread) and a near one-hot (0.999 on one class)."""
    z = (rng.normal(size=(3, LONG)) * 4).astype(np.float32)
    near = rng.dirichlet(np.ones(LONG)) * 1e-3
    near[rng.integers(LONG)] += 1 - 1e-3
    target = np.stack([rng.dirichlet(np.full(LONG, 0.1)), rng.dirichlet(np.ones(LONG)), near]).astype(np.float32)
    return z, target


def _teachers(rng):
    """Teacher logits for the rows of :func:`_long_rows`: N(0, 16), N(0, 1) and one class 25 above N(0, 1)."""
    t = rng.normal(size=(3, LONG)) * np.array([[4.0], [1.0], [1.0]])
    t[2, rng.integers(LONG)] += 25
    return t.astype(np.float32)


def _assert_float32_precision(loss, z, target, ref_value, ref_grad):
    """``loss`` (compiled) within 4 eps of the float64 reference ``ref_value`` per row, and its gradient
    within 8 eps of the row's largest exact entry (max-abs, norm-wise: one long row's small entries
    are not each held to their own relative precision)."""
    assert _kernel_answers(loss, z, target)
    value, grad = loss.value_and_grad(z, target)
    assert value.dtype == grad.dtype == np.float32
    value_eps = np.abs(value - ref_value) / np.abs(ref_value) / F32_EPS
    grad_eps = np.abs(grad - ref_grad).max(axis=-1) / np.abs(ref_grad).max(axis=-1) / F32_EPS
    assert value_eps.max() <= 4, value_eps
    assert grad_eps.max() <= 8, grad_eps


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_long_float32_rows_kl_divergence(smoothing):
    z, target = _long_rows(np.random.default_rng(11))
    z64, y = z.astype(np.float64), (1 - smoothing) * target.astype(np.float64) + smoothing / LONG
    log_p = _log_softmax(z64)
    value = (y * np.log(np.where(y > 0, y, 1.0))).sum(-1) - (y * log_p).sum(-1)  # 0 log 0 = 0
    grad = np.exp(log_p) * y.sum(-1, keepdims=True) - y
    loss = lk.KLDivergence(impl="fused", reduction="none", label_smoothing=smoothing)
    _assert_float32_precision(loss, z, target, value, grad)


def _labels_or_probs(kind, target, rng):
    """``target`` itself (probabilities) or integer labels drawn for its rows, with their one-hot rows."""
    if kind == "probs":
        return target, target.astype(np.float64)
    labels = rng.integers(0, LONG, size=len(target))
    return labels, (np.arange(LONG) == labels[:, None]).astype(np.float64)


@pytest.mark.parametrize("kind", ["probs", "labels"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_long_float32_rows_poly_cross_entropy(smoothing, kind):
    rng = np.random.default_rng(12)
    z, target = _long_rows(rng)
    target, dense = _labels_or_probs(kind, target, rng)
    z64, y = z.astype(np.float64), (1 - smoothing) * dense + smoothing / LONG
    log_p = _log_softmax(z64)
    p = np.exp(log_p)
    big_p = (y * p).sum(-1, keepdims=True)
    value = -(y * log_p).sum(-1) + 1.0 * (1 - big_p[:, 0])  # epsilon = 1
    grad = p * y.sum(-1, keepdims=True) - y - 1.0 * p * (y - big_p)
    loss = lk.PolyCrossEntropy(impl="fused", reduction="none", epsilon=1.0, label_smoothing=smoothing)
    _assert_float32_precision(loss, z, target, value, grad)


@pytest.mark.parametrize("kind", ["probs", "labels"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_long_float32_rows_softmax_focal(gamma, smoothing, kind):
    rng = np.random.default_rng(13)
    z, target = _long_rows(rng)
    target, dense = _labels_or_probs(kind, target, rng)
    z64, c = z.astype(np.float64), (1 - smoothing) * dense + smoothing / LONG
    log_p = _log_softmax(z64)
    p, q = np.exp(log_p), -np.expm1(log_p)  # q = 1 - p without cancellation
    value = -(c * q**gamma * log_p).sum(-1)
    # l = -sum c f(p), f(p) = (1 - p)^gamma log p: dl/dz_j = -(v_j - p_j sum v), v = c p f'(p)
    v = c * q**gamma * (1 - gamma * p * log_p / q)
    grad = -(v - p * v.sum(-1, keepdims=True))
    loss = lk.SoftmaxFocalLoss(impl="fused", reduction="none", gamma=gamma, label_smoothing=smoothing)
    _assert_float32_precision(loss, z, target, value, grad)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_long_float32_rows_distillation(temperature):
    rng = np.random.default_rng(14)
    z, teacher = _long_rows(rng)[0], _teachers(rng)
    log_p = _log_softmax(z.astype(np.float64) / temperature)
    log_q = _log_softmax(teacher.astype(np.float64) / temperature)
    value = temperature**2 * (np.exp(log_q) * (log_q - log_p)).sum(-1)
    grad = temperature * (np.exp(log_p) - np.exp(log_q))
    loss = lk.DistillationLoss(impl="fused", reduction="none", temperature=temperature)
    _assert_float32_precision(loss, z, teacher, value, grad)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_long_float32_rows_js_divergence(beta):
    """The gradient is ``(p - q) / T`` (beta = 0) or ``(1 - beta) / T p_j (d_j - sum_k p_k d_k)``, with
    ``d = log p - log m`` (``m = q`` for beta = 1): its difference cancels unless ``d`` is formed from the
    logits' difference (never two log-softmaxes) and shifted by a constant that ``d_j - K`` cancels (the
    kernel's ``anchor`` for beta = 1, ``mixture_log_ratio``'s ``log(1 - beta)`` in a far row)."""
    rng = np.random.default_rng(15)
    z, teacher = _long_rows(rng)[0], _teachers(rng)
    value, grad = _jsd_reference(z, teacher, beta)
    loss = lk.JSDivergence(impl="fused", reduction="none", beta=beta)
    _assert_float32_precision(loss, z, teacher, value, grad)


def _jsd_reference(z, teacher, beta):
    """The generalised JSD and its gradient in numpy float64, from the definition (T = 1)."""
    log_p, log_q = _log_softmax(z.astype(np.float64)), _log_softmax(teacher.astype(np.float64))
    p, q = np.exp(log_p), np.exp(log_q)
    if beta == 0.0:
        return (q * (log_q - log_p)).sum(-1), p - q
    log_m = log_q if beta == 1.0 else np.logaddexp(np.log(beta) + log_q, np.log1p(-beta) + log_p)
    d = log_p - log_m
    weight = 1.0 if beta == 1.0 else 1 - beta  # of sum p d, in the value and the gradient
    value = weight * (p * d).sum(-1) + (beta * (q * (log_q - log_m)).sum(-1) if beta < 1 else 0.0)
    return value, weight * p * (d - (p * d).sum(-1, keepdims=True))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_js_divergence_array_api_path_on_float32_rows_of_1000(beta, seed):
    """The array-API path (losskit.jax's, torch's on other devices) on float32 rows of 1000 N(0, 16) logits
    against teachers N(0, 16), N(0, 1) and N(0, 1) with a class 25 above: value within 4 eps, gradient within
    8 eps of its row's largest entry. With d = log p - log q itself beta = 1's gradient was 22.1 eps
    (anchored_log_ratio: 3.4); without mixture_log_ratio beta = 0.5's was 6800 on the peaked teacher's row."""
    rng = np.random.default_rng(seed)
    z = (rng.normal(size=(3, 1000)) * 4).astype(np.float32)
    teacher = rng.normal(size=(3, 1000)) * np.array([[4.0], [1.0], [1.0]])
    teacher[2, rng.integers(1000)] += 25
    teacher = teacher.astype(np.float32)
    exact, exact_grad = _jsd_reference(z, teacher, beta)
    value, grad = lk.JSDivergence(impl="xp", reduction="none", beta=beta).value_and_grad(z, teacher)
    assert (np.abs(value - exact) / np.abs(exact) / F32_EPS).max() <= 4
    assert (np.abs(grad - exact_grad).max(axis=-1) / np.abs(exact_grad).max(axis=-1) / F32_EPS).max() <= 8

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_crammer_singer_kernel_takes_the_first_of_tied_maximisers(dtype):
    """The kernel finds its maximiser as a min over indices (not a search that stops): with ties among the
    shifted scores, and between the label's score z_y and another z_k + 1, it is still the first."""
    z = np.array([[0, 2, 2, 1, 2], [3, 2, 0, 3, 3], [1, 0, 1, 0, 1], [-np.inf, 5, 5, -np.inf, 0],
                  [0, 0, 0, 0, 0], [2, 0, 3, 0, 0]], dtype)
    y = np.array([0, 1, 2, 4, 3, 2])
    # shifted scores z_k + 1 (k != y), z_y: row 0 (0, 3, 3, 2, 3) -> 1; row 1 (4, 2, 1, 4, 4) -> 0;
    # row 2 (2, 1, 1, 1, 2) -> 0; row 3 (-inf, 6, 6, -inf, 0) -> 1; row 4 (1, 1, 1, 0, 1) -> 0;
    # row 5 (3, 1, 3, 1, 1): z_y ties z_0 + 1, and the first maximiser is 0 (loss 0, gradient e_0 - e_2)
    first = np.array([1, 0, 0, 1, 0, 0])
    fused = lk.MulticlassHingeLoss(impl="fused", reduction="sum")
    assert _kernel_answers(fused, z, y)
    value, grad = fused.value_and_grad(z, y)
    expected = np.zeros_like(z)
    expected[np.arange(6), first] += 1
    expected[np.arange(6), y] -= 1
    np.testing.assert_array_equal(grad, expected)
    assert float(value) == 3 + 2 + 1 + 6 + 1 + 0  # max shifted score - z_y, per row


@pytest.mark.parametrize("where", [0, 3])
@pytest.mark.parametrize(("cls", "kind"), [(lk.SoftmaxCrossEntropy, "labels"), (lk.SoftmaxCrossEntropy, "probs"),
                                           (lk.KLDivergence, "labels"), (lk.KLDivergence, "probs"),
                                           (lk.PolyCrossEntropy, "labels"), (lk.PolyCrossEntropy, "probs"),
                                           (lk.SoftmaxFocalLoss, "labels"), (lk.SoftmaxFocalLoss, "probs"),
                                           (lk.MulticlassHingeLoss, "labels"), (lk.DistillationLoss, "teacher")])
def test_a_nan_logit_of_either_sign_flags_its_row(cls, kind, where):
    """A NaN logit sends the call to the reference, wherever it stands and whatever its sign bit (inf - inf is a
    NaN with the sign bit set on x86; the max skipped such a NaN and the KL, Poly-1 and focal kernels then gave
    a finite answer that was not the reference's)."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 50))
    target = _target(kind, z, rng, False)
    arithmetic_nan = np.array([0xFFF8_0000_0000_0000], np.uint64).view(np.float64)[0]  # inf - inf on x86
    for nan in (arithmetic_nan, np.float64(np.nan)):
        bad = z.copy()
        bad[2, where] = nan
        loss = cls(impl="fused", reduction="none")
        assert not _kernel_answers(loss, bad, target)
        value, grad = loss.value_and_grad(bad, target)
        expected, expected_grad = cls(impl="xp", reduction="none").value_and_grad(bad, target)
        np.testing.assert_array_equal(value, expected)
        np.testing.assert_array_equal(grad, expected_grad)
