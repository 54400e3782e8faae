"""The compiled metric updates (losskit.fused.metrics) against the NumPy steps they replace, which
tests/test_evaluation_metrics.py holds equal to scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from losskit.evaluation import metrics  # noqa: E402
from losskit.evaluation.metrics import multiclass  # noqa: E402


def test_the_compiled_steps_are_the_default_from_a_size_on(monkeypatch):
    from losskit.evaluation.metrics import _common
    from losskit.fused import metrics as compiled

    monkeypatch.delenv("LOSSKIT_EVAL_KERNELS", raising=False)
    assert _common._compiled() is compiled and _common._compiled(_common.COMPILED_FROM) is compiled
    assert _common._compiled(_common.COMPILED_FROM - 1) is None  # a small batch: no compile to wait for
    monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", "1")
    assert _common._compiled(10) is compiled
    monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", "0")
    assert _common._compiled(_common.COMPILED_FROM) is None


def _both(monkeypatch, make, feed):
    """``make()`` fed by ``feed(acc)`` once with the NumPy steps and once compiled: both results."""
    from losskit.evaluation.metrics import _common

    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv("LOSSKIT_EVAL_KERNELS", flag)
        assert (_common._compiled() is None) == (flag == "0")  # each side really takes its path
        acc = make()
        feed(acc)
        out.append(acc)
    return out


def _close(a, b, rtol):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _close(a[key], b[key], rtol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, rtol)
    elif isinstance(a, float) and b is not None:
        assert b == pytest.approx(a, rel=rtol, abs=1e-300), (a, b)
    else:
        assert a == b


def _binary_data(rng, n, kind, dtype):
    if kind == "logits":
        pred = rng.normal(0, 3, n)
        pred[:5] = [0.0, -0.0, 40.0, -40.0, 1e-30]  # the sign of zero, saturated sigmoids, a denormal-ish logit
    else:
        pred = rng.uniform(0, 1, n)
        pred[:6] = [0.0, 1.0, 0.5, 1 / 15, 2 / 15, 1e-300]  # exact bin edges and the ends of [0, 1]
    pred = np.round(pred, 2) if n > 100 else pred  # ties for the AUC
    return pred.astype(dtype), (rng.random(n) < 0.4).astype(np.int8)


@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("exact", [True, False])
def test_binary_compiled_equals_numpy(monkeypatch, kind, weighted, exact):
    rng = np.random.default_rng(0)
    pred, y = _binary_data(rng, 3000, kind, np.float64)
    w = rng.uniform(0, 2, 3000) if weighted else None

    def feed(acc):
        for part in np.array_split(np.arange(3000), 4):
            acc.update(pred[part], y[part], None if w is None else w[part])

    numpy_side, compiled = _both(monkeypatch, lambda: metrics.BinaryMetrics(kind, auc_exact_limit=10**6 if exact else 0,
                                                                            auc_bins_log2=16), feed)
    _close(numpy_side.result(), compiled.result(), 1e-12)
    np.testing.assert_allclose(compiled._auc._hist, numpy_side._auc._hist, rtol=1e-12)


def test_binary_float32_logits_within_float32_accuracy(monkeypatch):
    rng = np.random.default_rng(1)
    pred, y = _binary_data(rng, 20000, "logits", np.float32)
    w = rng.uniform(0.5, 2, 20000).astype(np.float32)
    numpy_side, compiled = _both(monkeypatch, lambda: metrics.BinaryMetrics("logits", auc_exact_limit=0),
                                 lambda acc: acc.update(pred, y, w))
    a, b = numpy_side.result(), compiled.result()
    for key in ("accuracy", "roc_auc", "log_loss", "brier", "ece"):
        assert b[key] == pytest.approx(a[key], rel=1e-6), key
    # the same bins filled: both take the keys from the same float32 scores
    assert np.array_equal(np.flatnonzero(compiled._auc._hist), np.flatnonzero(numpy_side._auc._hist))


@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_multiclass_compiled_equals_numpy(monkeypatch, kind, weighted, layout):
    rng = np.random.default_rng(2)
    n, k = 2500, 9
    if kind == "logits":
        pred = np.round(rng.normal(0, 2, (n, k)), 1)  # rounded: ties between classes, for argmax and top-k
        pred[0] = 0.0
    else:
        pred = rng.dirichlet(np.full(k, 0.5), n)
        pred[0] = 1 / k
        pred[1] = np.eye(k)[3]
    pred = np.asfortranarray(pred) if layout == "F" else np.ascontiguousarray(pred)
    y = rng.integers(0, k, n).astype(np.int8)
    w = rng.uniform(0, 2, n) if weighted else None
    example = rng.uniform(0, 3, n)

    def feed(acc):
        for part in np.array_split(np.arange(n), 3):
            acc.update(pred[part], y[part], None if w is None else w[part], example[part])

    numpy_side, compiled = _both(monkeypatch, lambda: metrics.MulticlassMetrics(k, kind), feed)
    _close(numpy_side.result(), compiled.result(), 1e-12)


def test_multiclass_log_loss_as_the_example_loss(monkeypatch):
    rng = np.random.default_rng(3)
    pred = rng.normal(0, 2, (800, 6))
    y = rng.integers(0, 6, 800)
    numpy_side, compiled = _both(monkeypatch, lambda: metrics.MulticlassMetrics(6, "logits"),
                                 lambda acc: acc.update(pred, y, None, "log_loss"))
    a, b = numpy_side.result(), compiled.result()
    _close(a, b, 1e-12)
    # the per-class loss is the log-loss of that class's rows
    e = np.exp(pred - pred.max(1, keepdims=True))
    ce = np.log(e.sum(1)) - np.log(e[np.arange(800), y])
    np.testing.assert_allclose([r["loss"] for r in b["per_class"]], [ce[y == c].mean() for c in range(6)], rtol=1e-12)


def test_multiclass_without_confusion_matrix(monkeypatch):
    monkeypatch.setattr(multiclass, "_CONFUSION_MAX_CLASSES", 4)
    rng = np.random.default_rng(4)
    pred = rng.normal(0, 1, (600, 7))
    y = rng.integers(0, 7, 600)
    w = rng.uniform(0, 1, 600)
    numpy_side, compiled = _both(monkeypatch, lambda: metrics.MulticlassMetrics(7, "logits"),
                                 lambda acc: acc.update(pred, y, w))
    a, b = numpy_side.result(), compiled.result()
    assert "confusion" not in b and "confusion_omitted" in b
    _close(a, b, 1e-12)


@pytest.mark.parametrize("k", [5, 300])  # 300 > 256: the sweep recomputes exp(z - max) for the per-class bins
@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("exact_limit", [10**6, 1500])  # 1500: the equal-mass ECE goes binned at the second batch
def test_multiclass_calibration_in_the_same_sweep(monkeypatch, k, kind, exact_limit):
    rng = np.random.default_rng(5)
    n = 2000
    pred = rng.normal(0, 3, (n, k))
    if kind == "probs":
        pred = np.exp(pred - pred.max(1, keepdims=True))
        pred /= pred.sum(1, keepdims=True)
    pred = np.asfortranarray(pred.astype(np.float32))
    y = rng.integers(0, k, n)
    w = rng.uniform(0, 2, n)

    def feed(acc):
        for part in np.array_split(np.arange(n), 2):
            acc.update(pred[part], y[part], w[part])

    numpy_side, compiled = _both(monkeypatch, lambda: metrics.MulticlassMetrics(k, kind, exact_limit=exact_limit),
                                 feed)
    a, b = numpy_side.result(), compiled.result()
    _close(a, b, 1e-12)
    assert b["adaptive"]["method"] == ("exact" if exact_limit > n else "binned")
    np.testing.assert_allclose(compiled._class_cells, numpy_side._class_cells, rtol=1e-12)
    np.testing.assert_allclose(compiled._class_confidence, numpy_side._class_confidence, rtol=1e-12)
    np.testing.assert_allclose(compiled._adaptive.histogram, numpy_side._adaptive.histogram, rtol=1e-12)
