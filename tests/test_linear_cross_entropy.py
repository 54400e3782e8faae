"""Fused linear + CE against a naive reference that materialises the logits, on NumPy, torch and JAX."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.losses.linear import (
    linear_binary_cross_entropy_value_and_grad,
    linear_cross_entropy_value_and_grad,
)

N, D, V = 11, 5, 9
OPTIONS = [
    {},
    {"ignore_index": -1},
    {"label_smoothing": 0.2},
    {"class_weight": np.linspace(0.5, 2.0, V)},
    {"weight": "rows"},
    {"ignore_index": -1, "label_smoothing": 0.1, "class_weight": np.linspace(0.5, 2.0, V), "weight": "rows"},
    {"normalizer": 3.0},
    {"reduction": "sum"},
    {"reduction": "none"},
]


def _data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(N, D)).astype(dtype)
    w = rng.normal(size=(V, D)).astype(dtype)
    b = rng.normal(size=V).astype(dtype)
    y = rng.integers(0, V, size=N)
    y[[2, 7]] = -1
    return h, w, b, y


def _resolve(options, n_rows=N):
    options = dict(options)
    if isinstance(options.get("weight"), str):  # "rows": a weight per row
        options["weight"] = np.random.default_rng(9).uniform(0.2, 2.0, size=n_rows)
    return options


def _naive(h, w, b, y, options):
    """softmax_cross_entropy on the materialised logits, by the chain rule through z = h W^T + b."""
    options = _resolve(options)
    y = y if "ignore_index" in options else np.where(y < 0, 0, y)
    z = h @ w.T + b
    loss = lk.SoftmaxCrossEntropy(impl="xp", reduction=options.get("reduction", "mean"),
                                  **{k: v for k, v in options.items()
                                     if k in ("ignore_index", "label_smoothing", "class_weight")})
    value, g = loss.value_and_grad(z, y, weight=options.get("weight"), normalizer=options.get("normalizer"))
    return value, (g @ w, g.T @ h, g.sum(0)), y


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 100])
@pytest.mark.parametrize("options", OPTIONS, ids=[str(sorted(o)) for o in OPTIONS])
def test_matches_the_naive_reference(options, chunk_size):
    h, w, b, y = _data()
    value_ref, grads_ref, y = _naive(h, w, b, y, options)
    value, grads = linear_cross_entropy_value_and_grad(h, w, y, bias=b, chunk_size=chunk_size, **_resolve(options))
    np.testing.assert_allclose(value, value_ref, rtol=1e-12, atol=1e-14)
    for got, expected in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(lk.linear_cross_entropy(h, w, y, bias=b, chunk_size=chunk_size, **_resolve(options)),
                               value_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", [{"z_loss": 1e-2}, {"softcap": 3.0}, {"z_loss": 1e-3, "softcap": 2.0,
                                                                           "label_smoothing": 0.1,
                                                                           "ignore_index": -1}])
def test_z_loss_and_softcap_match_torch_autograd_of_the_naive_expression(options):
    torch = pytest.importorskip("torch")
    h, w, b, y = _data(1)
    if "ignore_index" not in options:
        y = np.where(y < 0, 0, y)
    th, tw, tb = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    z = th @ tw.T + tb
    if "softcap" in options:
        z = options["softcap"] * torch.tanh(z / options["softcap"])
    ty = torch.from_numpy(y)
    per = torch.nn.functional.cross_entropy(z, ty, reduction="none", ignore_index=-1,
                                            label_smoothing=options.get("label_smoothing", 0.0))
    per = per + options.get("z_loss", 0.0) * torch.logsumexp(z, -1) ** 2
    keep = (ty != -1).double()
    value_ref = (per * keep).sum() / keep.sum()
    value_ref.backward()
    value, grads = linear_cross_entropy_value_and_grad(h, w, y, bias=b, chunk_size=4, **options)
    np.testing.assert_allclose(value, value_ref.item(), rtol=1e-12)
    for got, expected in zip(grads, (th.grad, tw.grad, tb.grad), strict=True):
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-9, atol=1e-12)


def test_chunk_size_changes_nothing_beyond_summation_order_in_float32():
    h, w, b, y = _data(2, np.float32)
    y = np.where(y < 0, 0, y)
    results = [linear_cross_entropy_value_and_grad(h, w, y, bias=b, chunk_size=c) for c in (1, 3, N)]
    for value, grads in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-6)
        for got, expected in zip(grads, results[0][1], strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_torch_and_jax_inputs_give_the_numpy_result():
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp

    h, w, b, y = _data(3)
    options = {"ignore_index": -1, "label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0}
    value, grads = linear_cross_entropy_value_and_grad(h, w, y, bias=b, chunk_size=4, **options)
    for convert in (torch.from_numpy, jnp.asarray):
        v, g = linear_cross_entropy_value_and_grad(convert(h), convert(w), convert(y), bias=convert(b), chunk_size=4,
                                                   **options)
        np.testing.assert_allclose(np.asarray(v), value, rtol=1e-12)
        for got, expected in zip(g, grads, strict=True):
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-13)


def test_torch_autograd_wrapper():
    torch = pytest.importorskip("torch")
    from losskit.torch.linear import linear_binary_cross_entropy as lbce
    from losskit.torch.linear import linear_cross_entropy as lce

    h, w, b, y = _data(4)
    y = np.where(y < 0, 0, y)
    th, tw, tb = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    (2.0 * lce(th, tw, torch.from_numpy(y), bias=tb, label_smoothing=0.1, chunk_size=3)).backward()
    rh, rw, rb = (torch.tensor(a, requires_grad=True) for a in (h, w, b))
    (2.0 * torch.nn.functional.cross_entropy(rh @ rw.T + rb, torch.from_numpy(y), label_smoothing=0.1)).backward()
    for got, expected in ((th.grad, rh.grad), (tw.grad, rw.grad), (tb.grad, rb.grad)):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    t = (torch.rand(N, V, dtype=torch.float64) > 0.5).double()
    th.grad = None
    lbce(th, tw, t, pos_weight=2.0).backward()
    rh = torch.tensor(h, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(rh @ torch.from_numpy(w).T, t, reduction="none",
                                                               pos_weight=torch.tensor(2.0)).sum(-1).mean()
    ref.backward()
    torch.testing.assert_close(th.grad, rh.grad, rtol=1e-10, atol=1e-12)


def test_torch_autograd_wrapper_takes_tensor_options_and_compiles():
    """``losskit.torch.linear_cross_entropy``: weight and class_weight as tensors (or NumPy arrays),
    the gradients of the naive expression, under ``torch.compile(fullgraph=True)`` too; "none" is
    refused by name (the fused backward scales one value's gradients)."""
    import torch

    from losskit import LossInputError
    from losskit.torch.linear import linear_cross_entropy as lce

    h, w, b, y = _data(6)
    options = {"ignore_index": -1, "class_weight": np.linspace(0.5, 2.0, V), "weight": "rows"}
    value_ref, grads_ref, _ = _naive(h, w, b, y, options)
    resolved = _resolve(options)
    for run in (lce, torch.compile(lce, fullgraph=True)):
        leaves = [torch.tensor(a, requires_grad=True) for a in (h, w, b)]
        value = run(leaves[0], leaves[1], torch.from_numpy(y), bias=leaves[2], ignore_index=-1,
                    class_weight=torch.from_numpy(resolved["class_weight"]), weight=torch.from_numpy(resolved["weight"]))
        (3.0 * value).backward()
        assert value.item() == pytest.approx(float(value_ref), rel=1e-12)
        for leaf, expected in zip(leaves, grads_ref, strict=True):
            np.testing.assert_allclose(leaf.grad.numpy(), 3.0 * expected, rtol=1e-10, atol=1e-12)
    value = lce(torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(y), ignore_index=-1,
                class_weight=resolved["class_weight"])  # a NumPy option
    assert np.isfinite(value.item())
    with pytest.raises(LossInputError, match='^reduction: expected "mean" or "sum"'):
        lce(torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(np.where(y < 0, 0, y)), reduction="none")


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_linear_binary_matches_multilabel_on_materialised_logits(chunk_size):
    h, w, b, _ = _data(5)
    t = (np.random.default_rng(6).uniform(size=(N, V)) > 0.6).astype(float)
    ew = np.random.default_rng(7).uniform(0.5, 1.5, size=N)
    pw = np.linspace(0.5, 3.0, V)
    z = h @ w.T + b
    ref_value, g = lk.MultilabelCrossEntropy(pos_weight=pw, label_smoothing=0.1).value_and_grad(z, t, weight=ew)
    value, grads = linear_binary_cross_entropy_value_and_grad(h, w, t, bias=b, chunk_size=chunk_size, pos_weight=pw,
                                                              label_smoothing=0.1, weight=ew)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for got, expected in zip(grads, (g @ w, g.T @ h, g.sum(0)), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_bad_input():
    h, w, b, y = _data()
    with pytest.raises(lk.LossInputError, match="classifier: expected shape \\(V, 5\\)"):
        lk.linear_cross_entropy(h, w[:, :3], y, ignore_index=-1)
    with pytest.raises(lk.LossInputError, match="label -1"):
        lk.linear_cross_entropy(h, w, y)
    with pytest.raises(lk.LossInputError, match="chunk_size"):
        lk.linear_cross_entropy(h, w, y, ignore_index=-1, chunk_size=0)
    with pytest.raises(lk.LossInputError, match="softcap"):
        lk.linear_cross_entropy(h, w, y, ignore_index=-1, softcap=-1.0)
    with pytest.raises(lk.LossInputError, match="z_loss"):
        lk.linear_cross_entropy(h, w, y, ignore_index=-1, z_loss=-1.0)
    with pytest.raises(lk.LossInputError, match="bias"):
        lk.linear_cross_entropy(h, w, y, ignore_index=-1, bias=b[:3])


def test_grad_weight_is_accumulated_in_place_on_numpy():
    from losskit.losses.linear import accumulate_at_b

    rng = np.random.default_rng(0)
    acc = rng.normal(size=(6, 4))
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(3, 4))
    expected = acc + a @ b
    address = acc.ctypes.data
    out = accumulate_at_b(np, acc, a, b)
    assert out is acc and acc.ctypes.data == address
    np.testing.assert_allclose(acc, expected, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_rows_of_scale_zero_never_reach_the_gemm_on_numpy(reduction):
    """docs/fused.md: on NumPy an ignored row or a row of weight 0 is never computed: NaN in its hidden
    state changes nothing, and the result is the naive reference's. The array-API path (on torch) carried
    it into the classifier's gradient (0 * NaN in g^T h): it now leaves such rows out of that product too."""
    import torch

    h, w, b, y = _data(3)
    weight = np.random.default_rng(4).uniform(0.5, 2.0, size=N)
    weight[4] = 0.0
    options = {"ignore_index": -1, "weight": weight, "reduction": reduction}
    value_ref, grads_ref, _ = _naive(h, w, b, y, options)
    poisoned = h.copy()
    poisoned[[2, 4, 7]] = np.nan  # rows 2 and 7 ignored, row 4 of weight 0
    value, grads = linear_cross_entropy_value_and_grad(poisoned, w, y, bias=b, chunk_size=3, **options)
    np.testing.assert_allclose(value, value_ref, rtol=1e-12, atol=1e-14)
    for got, expected in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    assert not grads[0][[2, 4, 7]].any()
    torch_grads = linear_cross_entropy_value_and_grad(
        *(torch.as_tensor(a) for a in (poisoned, w, y)), bias=torch.as_tensor(b), chunk_size=3,
        **{**options, "weight": torch.as_tensor(weight)})[1]
    for got, expected in zip(torch_grads, grads_ref, strict=True):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_torch_half_precision_is_computed_in_float32_by_every_fused_linear_form(dtype):
    """bfloat16 CPU tensors (which NumPy lacks) raised a TypeError in every fused linear torch form, and
    float16 over a vocabulary above 65504 gave -inf log-probs (the sum of its exps overflows float16):
    each is now the float32 computation on the same rounded inputs, cast back, values and gradients."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    rng = np.random.default_rng(0)
    half = getattr(torch, dtype)
    hidden = torch.tensor(rng.normal(size=(2, 4, 8)), dtype=half)
    classifier = torch.tensor(rng.normal(size=(70_000, 8)) * 0.1, dtype=half)
    target = torch.tensor(rng.integers(0, 70_000, size=(2, 4)))
    calls = {
        "logprobs": lambda h, c: lt.linear_logprobs(h, c, target).sum(),
        "cross entropy": lambda h, c: lt.linear_cross_entropy(h.reshape(-1, 8), c, target.reshape(-1)),
        "grpo": lambda h, c: lt.LinearGRPOLoss()(h, c, target, old_logps=torch.full((2, 4), -11.0, dtype=h.dtype),
                                                 advantages=torch.tensor([1.0, -0.5], dtype=h.dtype)),
        "simpo": lambda h, c: lt.LinearPreferenceLoss("simpo")(h, c, target),
        "jsd": lambda h, c: lt.LinearJSDLoss()(h, c, (h * 0.5).detach(), (c * 2.0).detach(), target),
    }
    for name, call in calls.items():
        results = []
        for leaves in ([hidden, classifier], [hidden.float(), classifier.float()]):
            leaves = [leaf.clone().requires_grad_(True) for leaf in leaves]
            value = call(*leaves)
            value.backward()
            results.append((value, *(leaf.grad for leaf in leaves)))
        assert all(r.dtype == half for r in results[0]), name
        assert torch.isfinite(results[0][0]), name
        for mine, wide in zip(results[0], results[1], strict=True):
            torch.testing.assert_close(mine, wide.to(half), rtol=0, atol=0, msg=name)


def test_torch_float16_gradients_are_scaled_before_they_are_rounded():
    """A loss scale (GradScaler) multiplies the upstream gradient so that small float16 gradients stay out of
    the subnormals; the forward rounded the gradients to float16 at unit scale, so a token-mean loss over 16k
    tokens (hidden gradients ~1e-6) came back 1e-2 off whatever the scale (found in review). They are kept in
    float32 until backward scales them: scaled by 1024, the hidden gradient is the float64 one of the same
    rounded inputs to float16's rounding (and a float16 naive computation's error, 2.8e-4); at unit scale
    both are the subnormals' (~1e-2)."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(16384, 32, generator=gen).half()
    classifier = (torch.randn(64, 32, generator=gen) * 0.02).half()
    target = torch.randint(0, 64, (16384,), generator=gen)
    wide = hidden.double().requires_grad_(True)
    torch.nn.functional.cross_entropy(wide @ classifier.double().T, target).backward()
    for scale, bound in ((1024.0, 1e-3), (1.0, 5e-2)):
        leaf = hidden.clone().requires_grad_(True)
        (lt.linear_cross_entropy(leaf, classifier, target) * scale).backward()
        assert leaf.grad.dtype == torch.float16
        error = float((leaf.grad.double() / scale - wide.grad).norm() / wide.grad.norm())
        assert error < bound, (scale, error)


def test_numpy_float16_is_computed_in_float32_by_every_fused_linear_form():
    """NumPy float16 over a vocabulary above 65504 gave -inf log-probs, inf losses and NaN gradients
    (the array path summed the exps in float16). Every NumPy form now computes in float32 and returns
    float16: the log-probs equal a float64 naive log-softmax of the same rounded inputs within float16's
    rounding, and every value and gradient is the float32 call's result, rounded once."""
    rng = np.random.default_rng(0)
    vocab = 100_000
    hidden = rng.normal(size=(2, 4, 8)).astype(np.float16)
    classifier = (rng.normal(size=(vocab, 8)) * 0.01).astype(np.float16)  # near-uniform: sum of exps ~ V
    target = rng.integers(0, vocab, size=(2, 4))
    logits = hidden.astype(np.float64) @ classifier.astype(np.float64).T
    naive = np.take_along_axis(logits - logits.max(-1, keepdims=True), target[..., None], -1)[..., 0] - np.log(
        np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
    got = lk.linear_logprobs(hidden, classifier, target, entropy=True)
    assert got.logps.dtype == got.entropy.dtype == np.float16
    np.testing.assert_allclose(got.logps.astype(np.float64), naive, rtol=2.0 ** -10)
    flat_t = target.reshape(-1)
    old = np.full((2, 4), -11.0, dtype=np.float16)
    calls = {
        "logprobs": lambda h, c: lk.linear_logprobs(h, c, target, entropy=True),
        "logprobs vjp": lambda h, c: lk.linear_logprobs_vjp(h, c, target, np.ones((2, 4), h.dtype)),
        "cross entropy": lambda h, c: lk.linear_cross_entropy(h.reshape(-1, 8), c, flat_t),
        "cross entropy vg": lambda h, c: linear_cross_entropy_value_and_grad(h.reshape(-1, 8), c, flat_t),
        "binary cross entropy": lambda h, c: lk.linear_binary_cross_entropy(
            h.reshape(-1, 8), c[:5], (flat_t[:, None] % (np.arange(5) + 2) == 0).astype(h.dtype)),
        "binary cross entropy vg": lambda h, c: linear_binary_cross_entropy_value_and_grad(
            h.reshape(-1, 8), c[:5], (flat_t[:, None] % (np.arange(5) + 2) == 0).astype(h.dtype)),
        # by keyword: the widening read only a positional hidden
        "logprobs by keyword": lambda h, c: lk.linear_logprobs(hidden=h, classifier=c, target=target),
        "cross entropy vg by keyword": lambda h, c: linear_cross_entropy_value_and_grad(
            hidden=h.reshape(-1, 8), classifier=c, target=flat_t),
        "jsd vg by keyword": lambda h, c: lk.linear_jsd_loss_value_and_grad(
            student_hidden=h, student_classifier=c, teacher_hidden=h * 0.5, teacher_classifier=c * 2, target=target),
        "grpo vg": lambda h, c: lk.linear_grpo_loss_value_and_grad(
            h, c, target, old_logps=old, advantages=np.array([1.0, -0.5], h.dtype), aux=True),
        "simpo vg": lambda h, c: lk.linear_preference_loss_value_and_grad(h, c, target, loss="simpo", aux=True),
        "jsd vg": lambda h, c: lk.linear_jsd_loss_value_and_grad(h, c, h * 0.5, c * 2, target),
    }
    # a classifier of another dtype is refused as without the widening, not taken in float32
    with pytest.raises(lk.LossInputError, match="^classifier: expected dtype float16"):
        linear_cross_entropy_value_and_grad(hidden.reshape(-1, 8), classifier.astype(np.float32), flat_t)
    for name, call in calls.items():
        mine = _leaves(call(hidden, classifier))
        wide = _leaves(call(hidden.astype(np.float32), classifier.astype(np.float32)))
        assert len(mine) == len(wide) > 0, name
        for a, b in zip(mine, wide, strict=True):
            if b.dtype == np.float32:
                assert a.dtype == np.float16, name
                assert np.isfinite(a).all(), name
                np.testing.assert_array_equal(a, b.astype(np.float16), err_msg=name)
            else:
                np.testing.assert_array_equal(a, b, err_msg=name)


def _leaves(value):
    """The arrays of a result, in order, through tuples and dicts."""
    if isinstance(value, (np.ndarray, np.generic)):
        return [np.asarray(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return []


def test_torch_fused_options_take_numpy_numbers_and_refuse_others_by_name():
    """NumPy integers as chunk_size or ignore_index raised JSON's TypeError ("int64 is not JSON
    serializable") in every fused linear torch form, and a temperature of "abc" Python's own ValueError."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    rng = np.random.default_rng(0)
    hidden, classifier = torch.tensor(rng.normal(size=(2, 4, 3))), torch.tensor(rng.normal(size=(7, 3)))
    target = torch.tensor(rng.integers(0, 7, size=(2, 4)))
    expected = lt.linear_logprobs(hidden, classifier, target, chunk_size=2, temperature=0.5)
    got = lt.linear_logprobs(hidden, classifier, target, chunk_size=np.int64(2), ignore_index=np.int64(-100),
                             temperature=np.float32(0.5))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    value = lt.LinearPreferenceLoss("simpo", chunk_size=np.int64(3))(hidden, classifier, target)
    torch.testing.assert_close(value, lt.LinearPreferenceLoss("simpo", chunk_size=3)(hidden, classifier, target))
    for temperature, given in (("abc", "'abc'"), (None, "None"), (object(), "object")):
        with pytest.raises(lk.LossInputError, match=f"^temperature: expected .*got {given}"):
            lt.linear_logprobs(hidden, classifier, target, temperature=temperature)


def test_torch_fused_linear_losses_are_first_order_and_say_so():
    """Every fused linear loss's backward scales gradients the forward computed. They came back carrying
    the op's graph (``requires_grad``, a grad_fn: ``.numpy()`` failed), and under ``create_graph=True``
    a gradient penalty through them was silently 0. Now plain tensors, and a second derivative raises."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    gen = torch.Generator().manual_seed(0)
    h = torch.randn(4, 3, 3, dtype=torch.float64, generator=gen)
    c = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 5, (4, 3), generator=gen)
    calls = {
        "linear_cross_entropy": lambda h, c: lt.linear_cross_entropy(h.reshape(-1, 3), c, y.reshape(-1)),
        "LinearPreferenceLoss": lambda h, c: lt.LinearPreferenceLoss("dpo")(h, c, y, torch.full((4,), -5.0,
                                                                                               dtype=torch.float64)),
        "LinearGRPOLoss": lambda h, c: lt.LinearGRPOLoss(beta=0.1)(
            h, c, y, old_logps=torch.full((4, 3), -1.5, dtype=torch.float64),
            advantages=torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64),
            ref_logps=torch.full((4, 3), -1.6, dtype=torch.float64)),
        "LinearJSDLoss": lambda h, c: lt.LinearJSDLoss(beta=0.5)(h, c, h.detach() * 0.5, c.detach()),
    }
    for name, call in calls.items():
        hidden, classifier = h.clone().requires_grad_(), c.clone().requires_grad_()
        grads = torch.autograd.grad(call(hidden, classifier), (hidden, classifier))
        assert not any(g.requires_grad or g.grad_fn is not None for g in grads), name
        assert np.all(np.isfinite(grads[0].numpy())), name
        grad_h, _ = torch.autograd.grad(call(hidden, classifier), (hidden, classifier), create_graph=True)
        with pytest.raises(RuntimeError, match="first-order"):
            (grad_h ** 2).sum().backward()


@pytest.mark.parametrize("options", [{"z_loss": 1e-4}, {"softcap": 30.0}, {"z_loss": 1e-4, "softcap": 30.0}])
def test_an_ignored_or_weight_zero_rows_nan_hidden_state_changes_nothing_with_z_loss_or_softcap(options):
    """docs/fused.md: such a row never reaches the gradients. With z_loss or softcap the sweep that took them
    still multiplied the row's zero gradient by its hidden state (0 * NaN): the classifier's gradient was NaN."""
    rng = np.random.default_rng(0)
    hidden, classifier = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    target = np.array([0, -100, 2, 3])
    clean_value, clean = linear_cross_entropy_value_and_grad(hidden, classifier, target, ignore_index=-100, **options)
    for poison in (np.nan, np.inf):
        bad = hidden.copy()
        bad[1] = poison
        value, grads = linear_cross_entropy_value_and_grad(bad, classifier, target, ignore_index=-100, **options)
        assert float(value) == float(clean_value)
        np.testing.assert_array_equal(grads[1], clean[1])
        weighted = linear_cross_entropy_value_and_grad(bad, classifier, np.array([0, 1, 2, 3]),
                                                       weight=np.array([1.0, 0.0, 1.0, 1.0]), **options)[1]
        assert np.all(np.isfinite(weighted[1]))


def test_softcap_and_bias_dtype_are_checked():
    """softcap=inf gave c * tanh(z / c) = inf * 0 (NaN) for finite input, as did a float32 cap past the dtype's
    largest number; now inf is refused and a cap past the dtype is no cap. A float64 bias with float32 hidden
    promoted the result on some paths and reached torch's gemm error on others: refused by name."""
    rng = np.random.default_rng(1)
    hidden, classifier, target = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), np.array([0, 1, 2, 3])
    with pytest.raises(lk.LossInputError, match="^softcap: "):
        lk.linear_cross_entropy(hidden, classifier, target, softcap=float("inf"))
    h32, c32 = hidden.astype(np.float32), classifier.astype(np.float32)
    assert float(lk.linear_cross_entropy(h32, c32, target, softcap=1e39)) == float(lk.linear_cross_entropy(h32, c32,
                                                                                                           target))
    with pytest.raises(lk.LossInputError, match="^bias: expected dtype float32"):
        lk.linear_cross_entropy(h32, c32, target, bias=np.zeros(5))
    # float16 hidden states are computed in float32: a float32 bias beside them was taken (its gradient float16),
    # and a float64 one refused as not "float32 (hidden's)" (found in review)
    h16, c16 = hidden.astype(np.float16), classifier.astype(np.float16)
    for bias in (np.zeros(5, np.float32), np.zeros(5)):
        with pytest.raises(lk.LossInputError, match=rf"^bias: expected dtype float16 \(hidden's\).*{bias.dtype}"):
            lk.linear_cross_entropy(h16, c16, target, bias=bias)
    with pytest.raises(lk.LossInputError, match="^z_loss: "):
        lk.linear_binary_cross_entropy(hidden, classifier, np.zeros((4, 5)), z_loss=0.1)


def test_torch_fused_forms_refuse_bad_arguments_by_name():
    """The review of 2026-12-06: a meta tensor among CPU ones sent the op to its shape-only fake (uninitialised
    memory as the loss: 0.0, 9.9e27); a list target or an ndarray hidden reached torch's schema error; a
    weight, class weight or probability target that requires grad got no gradient silently; a forward-mode
    dual lost its tangent. Each is now a LossInputError naming the argument."""
    torch = pytest.importorskip("torch")
    import torch.autograd.forward_ad as fwad

    import losskit.torch as lt

    g = torch.Generator().manual_seed(0)
    h, c = torch.randn(6, 4, generator=g, requires_grad=True), torch.randn(9, 4, generator=g)
    y = torch.randint(0, 9, (6,), generator=g)

    def refused(argument, call, match=""):
        with pytest.raises(lk.LossInputError, match=f"^{argument}: expected {match}"):
            call()

    refused("target", lambda: lt.linear_cross_entropy(h, c, y.to("meta")), "a tensor on hidden's device")
    refused("classifier", lambda: lt.linear_logprobs(h, c.to("meta"), y), "a tensor on hidden's device")
    refused("teacher_hidden", lambda: lt.LinearJSDLoss()(h, c, h.detach().to("meta"), c, y),
            "a tensor on student_hidden")
    refused("target", lambda: lt.linear_cross_entropy(h, c, y.tolist()), "a torch.Tensor")
    refused("hidden", lambda: lt.linear_cross_entropy(h.detach().numpy(), c, y), "a torch.Tensor")
    refused("weight", lambda: lt.linear_cross_entropy(h, c, y, weight=torch.ones(6, requires_grad=True)),
            "a tensor that does not require grad")
    refused("class_weight", lambda: lt.linear_cross_entropy(h, c, y, class_weight=torch.ones(9, requires_grad=True)),
            "a tensor that does not require grad")
    probs = torch.rand(6, 9, generator=g, requires_grad=True)
    refused("target", lambda: lt.linear_binary_cross_entropy(h, c, probs), "a tensor that does not require grad")
    with fwad.dual_level():
        refused("hidden", lambda: lt.linear_cross_entropy(fwad.make_dual(h.detach(), torch.ones(6, 4)), c, y),
                "a tensor without a forward-mode tangent")


def test_torch_fused_forms_second_order_second_backward_and_batched_upstream():
    """``linear_logprobs`` under create_graph=True gave torch's 'no autograd formula registered' (now the
    fused losses' first-order message); a second backward through one forward of a fused loss gave torch's
    error blaming an in-place operation of the user's (now losskit's own); a batched upstream
    (is_grads_batched) failed vmap's in-place product: now each row equals a plain backward's."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    g = torch.Generator().manual_seed(2)
    h = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (5,), generator=g)
    with pytest.raises(RuntimeError, match="fused linear losses are first-order"):
        (grad,) = torch.autograd.grad(lt.linear_logprobs(h, c, y).sum(), h, create_graph=True)
        grad.sum().backward()
    value = lt.linear_cross_entropy(h, c, y)
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward runs once per forward"):
        value.backward()
    upstream = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    batched = torch.autograd.grad(lt.linear_cross_entropy(h, c, y), h, upstream, is_grads_batched=True)[0]
    for u, row in zip(upstream, batched, strict=True):
        torch.testing.assert_close(row, torch.autograd.grad(lt.linear_cross_entropy(h, c, y), h, u)[0])


def test_torch_fused_normalizer_and_temperature_change_between_compiled_calls():
    """Under torch.compile(fullgraph=True) a normalizer or a log-probs temperature that changes between calls
    is traced as a symbol: encoding it in the op's constant options failed the trace ('assume_constant_result
    argument conversion failed'); both are now arguments of the op, equal to the eager calls."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    g = torch.Generator().manual_seed(3)
    h, c = torch.randn(6, 4, generator=g), torch.randn(9, 4, generator=g)
    y = torch.randint(0, 9, (6,), generator=g)
    ce = torch.compile(lambda h, n: lt.linear_cross_entropy(h, c, y, normalizer=n), fullgraph=True,
                       backend="aot_eager")
    lp = torch.compile(lambda h, t: lt.linear_logprobs(h, c, y, temperature=t), fullgraph=True, backend="aot_eager")
    for n, t in ((8.0, 1.0), (13.0, 0.7), (5.0, 2.0)):
        torch.testing.assert_close(ce(h, n), lt.linear_cross_entropy(h, c, y, normalizer=n))
        torch.testing.assert_close(lp(h, t), lt.linear_logprobs(h, c, y, temperature=t))


def test_torch_fused_errors_name_the_callers_arguments_and_take_numbers_as_arrays():
    """The diff review of 2026-12-06: the JSD module's errors named hidden / classifier / bias (its arguments
    are student_*); a None hidden state raised AttributeError; a 0-d array temperature was refused; a float16
    bias beside float32 hidden states was taken (the core refuses another floating dtype)."""
    torch = pytest.importorskip("torch")
    import losskit.torch as lt

    g = torch.Generator().manual_seed(4)
    h, c = torch.randn(6, 4, generator=g), torch.randn(9, 4, generator=g)
    y = torch.randint(0, 9, (6,), generator=g)
    with pytest.raises(lk.LossInputError, match="^student_classifier: expected a tensor on student_hidden's"):
        lt.LinearJSDLoss()(h, c.to("meta"), h, c, y)
    with pytest.raises(lk.LossInputError, match="^student_bias: expected dtype torch.float32"):
        lt.LinearJSDLoss()(h, c, h, c, y, student_bias=torch.zeros(9, dtype=torch.float16))
    with pytest.raises(lk.LossInputError, match="^hidden: expected a torch.Tensor, got None"):
        lt.linear_cross_entropy(None, c, y)
    with pytest.raises(lk.LossInputError, match="^bias: expected dtype torch.float32"):
        lt.linear_cross_entropy(h, c, y, bias=torch.zeros(9, dtype=torch.float16))
    torch.testing.assert_close(lt.linear_logprobs(h, c, y, temperature=np.array(2.0)),
                               lt.linear_logprobs(h, c, y, temperature=2.0), rtol=0, atol=0)
