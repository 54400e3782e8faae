"""README, docs/losses.md "Precision": accurate to a few ulps against 50-digit mpmath, on every path.

The documented bounds (docs/losses.md: at most 3.9 eps on the value and 7.9 eps on the gradient over
the grid of extreme inputs, |z| from 1e-8 to 1e4, targets 0, 0.3, 1) are held here as 4 eps (value)
and 8 eps (gradient) on each implementation that consumes a call plan:

* the array-API path (``impl="xp"``) on NumPy;
* the compiled kernels on NumPy arrays and on torch CPU tensors (the default path);
* the XLA formulation of ``losskit.jax`` (value and ``jax.grad``, under ``jit``);
* the chunked linear sweeps (``linear_cross_entropy`` / ``linear_binary_cross_entropy`` with an
  identity classifier, so their logits are the grid's exactly);
* the torch-native kernels (``losskit.torch._native``, the CUDA path) run on CPU tensors.

The inputs are rounded to the dtype first and the reference computed from the rounded values, so
only losskit's arithmetic is measured. An exact value below the dtype's smallest normal number has
no relative accuracy: it is held to a few units of the smallest subnormal instead (docs/losses.md
lists at most 2.2). A gradient entry of a softmax row is p_k or p_k - 1, judged against
max(|exact|, eps) (as benchmarks/accuracy.py does).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

import losskit as lk
import mp_reference as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.accuracy import LOGITS, TARGETS, softmax_rows  # noqa: E402

VALUE_EPS, GRAD_EPS, SUBNORMALS = 4.0, 8.0, 4.0
POS_WEIGHT = 1.5
DTYPES = [np.float64, np.float32]


# -- the references, once per module ----------------------------------------------------------------
@functools.cache
def _bce_reference(dtype):
    z = np.array(LOGITS, dtype=dtype)
    values, grads = [], []
    for target in TARGETS:
        t = float(dtype(target))
        values.append([mp.bce_logits(float(zi), t, POS_WEIGHT) for zi in z])
        grads.append([mp.bce_logits_grad(float(zi), t, POS_WEIGHT) for zi in z])
    return z, values, grads


@functools.cache
def _softmax_reference(dtype):
    rows = softmax_rows(dtype)
    values = [[mp.softmax_ce([float(r) for r in row], label) for row in rows] for label in range(3)]
    grads = [[mp.softmax_ce_grad([float(r) for r in row], label) for row in rows] for label in range(3)]
    return rows, values, grads


def _check(actual, exact, dtype, bound, floor_scale=False, subnormals=SUBNORMALS):
    """Worst error in eps of ``actual`` against the mpmath numbers ``exact``, subnormals apart."""
    eps, tiny, sub = (float(v) for v in (np.finfo(dtype).eps, np.finfo(dtype).tiny,
                                         np.finfo(dtype).smallest_subnormal))
    worst = 0.0
    for a, e in zip(np.asarray(actual, dtype=np.float64).ravel(), exact, strict=True):
        e = float(e)
        scale = max(abs(e), eps) if floor_scale else abs(e)
        if not floor_scale and abs(e) < tiny:
            assert abs(a - e) <= subnormals * sub, (a, e)
            continue
        worst = max(worst, abs(a - e) / scale / eps)
    assert worst <= bound, f"{worst:.2f} eps > {bound} eps"
    return worst


# -- the paths: each returns (per-element value, gradient of their sum) as NumPy -------------------
def _numpy(impl):
    def run(loss, x, t):
        value, grad = loss.replace(impl=impl).value_and_grad(x, t)
        return np.asarray(value), np.asarray(grad)
    return run


def _torch_kernels(loss, x, t):
    torch = pytest.importorskip("torch")
    value, grad = loss.replace(impl="fused").value_and_grad(torch.from_numpy(x), torch.from_numpy(t))
    assert isinstance(grad, torch.Tensor)
    return value.numpy(), grad.numpy()


def _torch_native(loss, x, t):
    torch = pytest.importorskip("torch")
    from losskit.torch import _native

    loss = loss.replace(impl="xp")
    result = _native.value_and_grad(loss, loss.plan(torch.from_numpy(x), torch.from_numpy(t)), True)
    assert result is not None, "the torch-native path refused a finite grid"
    return result[0].numpy(), result[1].numpy()


def _xla(loss, x, t):
    jax = pytest.importorskip("jax")
    lj = pytest.importorskip("losskit.jax")
    fn = lj.loss_fn(loss.replace(impl="xp"))
    jx, jt = jax.numpy.asarray(x), jax.numpy.asarray(t)
    value = jax.jit(lambda z: fn(z, jt))(jx)
    grad = jax.jit(jax.grad(lambda z: fn(z, jt).sum()))(jx)
    assert value.dtype == x.dtype and grad.dtype == x.dtype
    return np.asarray(value), np.asarray(grad)


def _linear(loss, x, t):
    """The linear sweeps with hidden = x and classifier = I: logits x exactly, d hidden = d logits."""
    from losskit.losses.linear import linear_binary_cross_entropy_value_and_grad, linear_cross_entropy_value_and_grad

    if isinstance(loss, lk.SoftmaxCrossEntropy):
        value, (d_hidden, _, _) = linear_cross_entropy_value_and_grad(
            x, np.eye(x.shape[-1], dtype=x.dtype), t, reduction="none", chunk_size=8)
    else:
        value, (d_hidden, _, _) = linear_binary_cross_entropy_value_and_grad(
            x[:, None], np.ones((1, 1), dtype=x.dtype), t[:, None], pos_weight=loss.pos_weight,
            reduction="none", chunk_size=8)
        value, d_hidden = value.reshape(x.shape), d_hidden.reshape(x.shape)
    return np.asarray(value), np.asarray(d_hidden)


#: XLA on CPU flushes subnormal results to zero (docs/losses.md says so): an exact value below the
#: smallest normal number may come back as 0 there, an absolute error below that number
FLUSHES_SUBNORMALS = {"xla"}


def _subnormals(path, dtype):
    info = np.finfo(dtype)
    return float(info.tiny / info.smallest_subnormal) if path in FLUSHES_SUBNORMALS else SUBNORMALS


PATHS = {"xp": _numpy("xp"), "kernels-numpy": _numpy("fused"), "kernels-torch-cpu": _torch_kernels,
         "xla": _xla, "linear-sweep": _linear, "torch-native-cpu": _torch_native}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_bce_with_logits_within_the_documented_bound(path, dtype):
    z, values, grads = _bce_reference(dtype)
    loss = lk.BinaryCrossEntropyWithLogits(pos_weight=POS_WEIGHT, reduction="none")
    for target, exact_value, exact_grad in zip(TARGETS, values, grads, strict=True):
        value, grad = PATHS[path](loss, z, np.full_like(z, target))
        assert value.dtype == grad.dtype == dtype
        _check(value, exact_value, dtype, VALUE_EPS, subnormals=_subnormals(path, dtype))
        _check(grad, exact_grad, dtype, GRAD_EPS, subnormals=_subnormals(path, dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("path", sorted(PATHS))
def test_softmax_cross_entropy_within_the_documented_bound(path, dtype):
    rows, values, grads = _softmax_reference(dtype)
    loss = lk.SoftmaxCrossEntropy(reduction="none")
    for label in range(3):
        value, grad = PATHS[path](loss, rows, np.full(len(rows), label))
        assert value.dtype == grad.dtype == dtype
        _check(value, values[label], dtype, VALUE_EPS, subnormals=_subnormals(path, dtype))
        _check(grad, [g for row in grads[label] for g in row], dtype, GRAD_EPS, floor_scale=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_bce_from_probabilities_within_the_documented_bound(dtype):
    """The probability form has the array-API path only (no kernel takes it)."""
    from benchmarks.accuracy import PROBS

    p = np.array(PROBS, dtype=dtype)
    for target in TARGETS:
        value = lk.binary_cross_entropy(p, np.full_like(p, target), reduction="none", impl="xp")
        _check(value, [mp.bce_probs(float(pi), float(dtype(target))) for pi in p], dtype, VALUE_EPS)
