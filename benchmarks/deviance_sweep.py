"""The Tweedie deviances off the precision grid (BENCHMARKS.md, "Tweedie deviances"): for each power and
dtype, on both paths, the worst relative error (eps) of the value and the gradient against 50-digit mpmath,
away from the optimum (and near it for y != 1, where log y's rounding bounds any formula), and how many
results are inf or NaN where the exact one is finite.

    python benchmarks/deviance_sweep.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

import losskit as lk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import mp_catalogue  # noqa: E402  (the test suite's mpmath references)

POWERS = [0.0, -1.0, 1.0, 1.2, 1.5, 1.8, 2.0, 2.5, 3.0, 4.0]


def _grid():
    rng = np.random.default_rng(0)
    etas = np.concatenate([rng.uniform(-12, 12, 300), rng.uniform(-0.5, 0.5, 100),
                           [-700, -300, -90, -30, 30, 90, 300, 700]])
    targets = np.array([0.0, 1e-30, 1e-5, 0.01, 0.5, 1, 2, 5, 30, 1e3, 1e6])
    return np.meshgrid(etas, targets)


def _errors(got, exact, z, y, info):
    ok = np.isfinite(exact) & (np.abs(exact) < info.max) & (np.abs(exact) > info.tiny)
    nonfinite = int((ok & ~np.isfinite(got)).sum())
    rel = np.where(ok & np.isfinite(got), np.abs(got - exact) / np.maximum(np.abs(exact), info.tiny) / info.eps, 0)
    t = np.abs(z - np.log(np.where(y > 0, y, 1.0)))
    near = (y > 0) & (y != 1) & (t < 1)
    return rel[~near].max(), (rel[near].max() if near.any() else 0.0), nonfinite


def main() -> None:
    warnings.simplefilter("ignore")
    eta_grid, target_grid = _grid()
    print("| power | dtype | path | value: away / near (eps) | non-finite | gradient: away / near (eps) | non-finite |")
    print("|---|---|---|---|---|---|---|")
    for power in POWERS:
        for dtype in (np.float64, np.float32):
            z, y = eta_grid.ravel().astype(dtype), target_grid.ravel().astype(dtype)
            if power >= 2:
                z, y = z[y > 0], y[y > 0]
            exact = [mp_catalogue.tweedie(float(a), float(b), power) for a, b in zip(z, y, strict=True)]
            exact_value = np.array([float(e[0]) for e in exact])
            exact_grad = np.array([float(e[1]) for e in exact])
            info = np.finfo(dtype)
            for impl in ("xp", "fused"):
                value, grad = lk.TweedieDeviance(power=power, reduction="none", impl=impl).value_and_grad(z, y)
                zf, yf = z.astype(float), y.astype(float)
                v = _errors(value.astype(float), exact_value, zf, yf, info)
                g = _errors(grad.astype(float), exact_grad, zf, yf, info)
                print(f"| {power:g} | {np.dtype(dtype).name} | {impl} | {v[0]:.3g} / {v[1]:.3g} | {v[2]} "
                      f"| {g[0]:.3g} / {g[1]:.3g} | {g[2]} |")


if __name__ == "__main__":
    main()
