"""What one call in a formula costs inside a compiled kernel: one-line ElementwiseLosses, timed.

    python -m benchmarks.formula_pieces [--size 4000000]
    python -m benchmarks.formula_pieces --catalogue [LOSS ...]

Each row is a loss whose ``value`` is the formula shown (float64 input of ``--size`` elements,
``value_and_grad`` with ``impl="fused"``, the best of 3 calls after a warm-up): the difference
between rows is what that function costs per element in the compiled kernel. ``--catalogue``: the
catalogue's elementwise losses on float32 inputs drawn as ``benchmarks.catalogue`` draws them,
``value_and_grad`` with ``impl="fused"``, in CPU time (all threads) per element, the median of 5
calls: a figure that a machine shared with other jobs moves less than wall time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import losskit as lk

FORMULAS = ["z * z", "xp.where(z > 0, z, 0.0)", "xp.exp(z)", "xp.log(xp.abs(z) + 1)", "xp.log1p(xp.abs(z))",
            "xp.log1p_unit(xp.abs(z) * 0.1)", "xp.expm1(z)", "xp.tanh(z)", "xp.sinh(z)", "xp.abs(z) ** 1.5",
            "xp.pow(xp.abs(z), 1.5)"]


def _loss(formula: str):
    namespace: dict = {}
    exec(f"class Piece(lk.ElementwiseLoss):\n    def value(self, xp, z, y): return {formula}\n"
         f"    def derivative(self, xp, z, y): return z\n", {"lk": lk}, namespace)
    return namespace["Piece"](impl="fused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4_000_000)
    parser.add_argument("--catalogue", nargs="*", help="time these catalogue losses (default: all)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.catalogue is not None:
        _catalogue(args.catalogue, args.size, rng)
        return
    z, y = rng.normal(size=args.size), np.zeros(args.size)
    for formula in FORMULAS:
        loss = _loss(formula)
        loss.value_and_grad(z, y)
        best = min(_timed(loss, z, y) for _ in range(3))
        print(f"| `{formula}` | {best * 1e9 / args.size:.1f} ns per element |", flush=True)


def _catalogue(names, size, rng) -> None:
    from .catalogue import CASES, _inputs

    for name in names or CASES:
        loss = lk.REGISTRY[name][0](impl="fused", **CASES[name])
        z, y = _inputs(name, size, rng)
        loss.value_and_grad(z, y)
        times = []
        for _ in range(5):
            start = time.process_time()
            loss.value_and_grad(z, y)
            times.append(time.process_time() - start)
        print(f"| {name} | {sorted(times)[2] * 1e9 / size:.1f} ns per element (CPU) |", flush=True)


def _timed(loss, z, y) -> float:
    start = time.perf_counter()
    loss.value_and_grad(z, y)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
