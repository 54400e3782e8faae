"""Agreement before timing: every implementation's value and gradient against a float64 reference.

A benchmark that times an implementation computing something else (a gradient not divided by N, a
sum for a mean, another smoothing) measures nothing. ``check`` runs before any timing of a case is
recorded and raises ``AssertionError`` naming the implementation that disagrees.

The references are the losses' formulas in float64 NumPy, written here, not taken from losskit.
The inputs are float32, so the tolerances are float32's: relative 2e-5 on the value, and on the
gradient 1e-4 relative plus 1e-5 of the gradient's largest entry.
"""

from __future__ import annotations

import numpy as np

VALUE_RTOL = 2e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-5


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def reference(kind, x, t):
    """``(value, gradient)`` in float64 of the benchmark's loss ``kind`` ("ce", "ce_soft", "bce",
    "multilabel", "mse"), each with its default reduction (the mean over examples)."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "ce":
        n = x.shape[0]
        m = x.max(axis=1, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        value = np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, t])
        grad = e / s
        grad[rows, t] -= 1
        return value, grad / n
    t = np.asarray(t, dtype=np.float64)
    if kind == "ce_soft":  # probability targets: -sum_k t_k log softmax(x)_k, gradient softmax(x) - t
        m = x.max(axis=1, keepdims=True)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        log_p = x - m - np.log(s)
        return np.mean(-np.sum(t * log_p, axis=1)), (e / s - t) / x.shape[0]
    if kind in ("bce", "multilabel"):
        per_element = _softplus(x) - x * t  # -t log s - (1 - t) log(1 - s)
        grad = _sigmoid(x) - t
        if kind == "bce":  # elementwise: the mean over every element
            return per_element.mean(), grad / x.size
        return per_element.sum(axis=1).mean(), grad / x.shape[0]  # a row is an example
    if kind == "mse":
        d = x - t
        return np.mean(d * d), 2 * d / d.size
    raise ValueError(kind)


def _to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value, dtype=np.float64)


def value_and_grad_of(result, shape):
    """``(value, grad)`` from an implementation's result, whichever order it returns them in
    (``torch.func.grad_and_value`` gives the gradient first): the gradient has the input's shape."""
    first, second = result[0], result[1]
    first, second = _to_numpy(first), _to_numpy(second)
    if first.shape == tuple(shape) and second.size == 1:
        first, second = second, first
    assert second.shape == tuple(shape) and first.size == 1, (first.shape, second.shape)
    return float(first.reshape(())), second


def check(kind, arrays, results):
    """Assert that each of ``results`` (name -> an implementation's result on ``arrays``) equals the
    float64 reference; returns the names checked."""
    x, t = (_to_numpy(a) if i == 0 else np.asarray(a) for i, a in enumerate(arrays))
    ref_value, ref_grad = reference(kind, x, t)
    atol = GRAD_ATOL * float(np.abs(ref_grad).max())
    for name, result in results.items():
        value, grad = value_and_grad_of(result, x.shape)
        np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL,
                                   err_msg=f"{kind} {x.shape}: {name} disagrees with the reference value")
        np.testing.assert_allclose(grad, ref_grad, rtol=GRAD_RTOL, atol=atol,
                                   err_msg=f"{kind} {x.shape}: {name} disagrees with the reference gradient")
    return list(results)


def check_linear(impls, shape, rng=None):
    """The linear + CE implementations (the ones computing a loss; the matmul floors compute only
    the gemms) against the float64 cross-entropy of ``hidden @ classifier.T``, on a sample no larger
    than 64 rows, 64 features and 4096 classes of ``shape``."""
    rng = rng or np.random.default_rng(1)
    n, d, v = (min(s, cap) for s, cap in zip(shape, (64, 64, 4096), strict=True))
    hidden = rng.standard_normal((n, d), dtype=np.float32)
    classifier = rng.standard_normal((v, d), dtype=np.float32) * np.float32(0.1)
    labels = rng.integers(0, v, size=n)
    ref_value, d_logits = reference("ce", hidden.astype(np.float64) @ classifier.T.astype(np.float64), labels)
    ref_dh, ref_dw = d_logits @ classifier.astype(np.float64), d_logits.T @ hidden.astype(np.float64)
    checked = []
    for name, (fn, convert) in impls.items():
        if "floor" in name:
            continue
        args = convert(hidden.copy(), classifier.copy(), labels)
        result = fn(*args)
        if isinstance(result, tuple):  # losskit: (loss, (d hidden, d classifier, d bias))
            value, (dh, dw, _) = result
        else:  # torch autograd: the loss, with the gradients on the inputs
            value, dh, dw = result, args[0].grad, args[1].grad
        value, dh, dw = _to_numpy(value), _to_numpy(dh), _to_numpy(dw)
        np.testing.assert_allclose(value, ref_value, rtol=VALUE_RTOL, err_msg=f"linear: {name} value")
        for got, ref, what in ((dh, ref_dh, "d hidden"), (dw, ref_dw, "d classifier")):
            np.testing.assert_allclose(got, ref, rtol=GRAD_RTOL, atol=GRAD_ATOL * float(np.abs(ref).max()),
                                       err_msg=f"linear: {name} {what}")
        checked.append(name)
    return checked
