"""Measured accuracy of losskit's losses and gradients against 50-digit mpmath.

    python benchmarks/accuracy.py            # prints a Markdown table

For each loss and dtype: the maximum relative error, in units of the dtype's epsilon too,
over a grid of extreme inputs (|z| from 1e-8 to 1e4, p down to 1e-300, targets 0, 0.3, 1).
Exact values below the dtype's smallest normal number are compared in absolute terms (they
are not representable to relative accuracy). The inputs are rounded to the dtype first and the
reference is computed from the rounded values, so only losskit's own arithmetic is measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import losskit as lk  # noqa: E402
import mp_reference as mp  # noqa: E402

MAGNITUDES = [0.0] + [s * 10.0**e for e in range(-8, 5) for s in (1, 3)]
LOGITS = sorted({sign * m for m in MAGNITUDES for sign in (-1.0, 1.0) if m <= 1e4})
PROBS = [0.0, 1e-300, 1e-40, 1e-12, 1e-8, 1e-3, 0.1, 0.3, 0.5, 0.7, 0.9, 1 - 1e-8, 1.0]
TARGETS = [0.0, 0.3, 1.0]


def _error(actual, exact, dtype):
    exact = float(exact)
    tiny = float(np.finfo(dtype).tiny)
    if abs(exact) < tiny:
        return 0.0 if abs(float(actual) - exact) <= 2 * float(np.finfo(dtype).smallest_subnormal) else np.inf
    return abs(float(actual) - exact) / abs(exact)


def bce_logits(dtype):
    z = np.array(LOGITS, dtype=dtype)
    worst_value = worst_grad = 0.0
    loss = lk.BinaryCrossEntropyWithLogits(pos_weight=1.5, reduction="none", impl="xp")
    for target in TARGETS:
        y = np.full_like(z, target)
        value, grad = loss(z, y), loss.grad(z, y)
        t = float(dtype(target))
        for zi, v, g in zip(z, value, grad, strict=True):
            worst_value = max(worst_value, _error(v, mp.bce_logits(float(zi), t, 1.5), dtype))
            worst_grad = max(worst_grad, _error(g, mp.bce_logits_grad(float(zi), t, 1.5), dtype))
    return worst_value, worst_grad


def bce_probs(dtype):
    p = np.array(PROBS, dtype=dtype)
    worst = 0.0
    for target in TARGETS:
        value = lk.binary_cross_entropy(p, np.full_like(p, target), reduction="none", impl="xp")
        for pi, v in zip(p, value, strict=True):
            worst = max(worst, _error(v, mp.bce_probs(float(pi), float(dtype(target))), dtype))
    return worst, None


def softmax_ce(dtype):
    rng = np.random.default_rng(0)
    rows = [[1e4, 0.0, -1e4], [-1e4, -1e4 + 1, -1e4 + 2], [0.0, 1e-8, -1e-8], [700, -700, 0], [30, 30, -5]]
    rows += (rng.normal(size=(20, 3)) * 10.0 ** rng.integers(-3, 4, size=(20, 1))).tolist()
    rows = np.array(rows, dtype=dtype)
    worst_value = worst_grad = 0.0
    loss = lk.SoftmaxCrossEntropy(reduction="none", impl="xp")
    for label in range(3):
        labels = np.full(len(rows), label)
        value, grad = loss(rows, labels), loss.grad(rows, labels)
        for row, v, g in zip(rows, value, grad, strict=True):
            floats = [float(r) for r in row]
            worst_value = max(worst_value, _error(v, mp.softmax_ce(floats, label), dtype))
            for gk, ek in zip(g, mp.softmax_ce_grad(floats, label), strict=True):
                # a gradient entry is p_k or p_k - 1: its error is judged against max(|exact|, eps)
                scale = max(abs(float(ek)), float(np.finfo(dtype).eps))
                worst_grad = max(worst_grad, abs(float(gk) - float(ek)) / scale)
    return worst_value, worst_grad


def main() -> None:
    print("| loss | dtype | max rel. error, loss | in eps | max rel. error, gradient | in eps |")
    print("|---|---|---|---|---|---|")
    for name, fn in (("binary_cross_entropy_with_logits", bce_logits), ("binary_cross_entropy", bce_probs),
                     ("softmax_cross_entropy", softmax_ce)):
        for dtype in (np.float64, np.float32):
            value, grad = fn(dtype)
            eps = float(np.finfo(dtype).eps)
            grad_cells = ("n/a", "n/a") if grad is None else (f"{grad:.2e}", f"{grad / eps:.1f}")
            print(f"| {name} | {np.dtype(dtype).name} | {value:.2e} | {value / eps:.1f} | "
                  f"{grad_cells[0]} | {grad_cells[1]} |")


if __name__ == "__main__":
    main()
